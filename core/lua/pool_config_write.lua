-- The leader's write of a whole pool configuration: refused when a newer epoch exists (fencing) or when the
-- version moved since the leader read it (compare-and-set: a pool created meanwhile is never erased).
-- Version and document are written together, with a history entry.
-- KEYS: 1 config hash, 2 epoch counter, 3 history list
-- ARGV: 1 epoch, 2 expected version, 3 pools (JSON array), 4 generated_by, 5 version floor, 6 next pool id,
--       7 change summary (JSON object), 8 history length
-- Returns: {"OK", version, generated_at_ms} | {"STALE_EPOCH", newest epoch} | {"VERSION_MOVED", current version}
local mine = tonumber(ARGV[1])
local newest = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local config_epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') or 0
if config_epoch > newest then newest = config_epoch end
if mine < newest then
  redis.call('HINCRBY', KEYS[1], 'stale_refusals', 1)
  return {'STALE_EPOCH', tostring(newest)}
end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
if version ~= tonumber(ARGV[2]) then return {'VERSION_MOVED', tostring(version)} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local new_version = math.max(version, tonumber(ARGV[5]) or 0) + 1
local document = '{"version":' .. new_version .. ',"epoch":' .. mine .. ',"generated_at":' .. now ..
  ',"generated_by":' .. cjson.encode(ARGV[4]) .. ',"pools":' .. ARGV[3] .. '}'
local next_id = math.max(tonumber(redis.call('HGET', KEYS[1], 'next_pool_id') or '1') or 1, tonumber(ARGV[6]))
redis.call('HSET', KEYS[1], 'version', new_version, 'epoch', mine, 'json', document, 'next_pool_id', next_id)
redis.call('LPUSH', KEYS[3], '{"version":' .. new_version .. ',"epoch":' .. mine .. ',"at":' .. now ..
  ',"by":' .. cjson.encode(ARGV[4]) .. ',"change":' .. ARGV[7] .. '}')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[8]) - 1)
return {'OK', tostring(new_version), tostring(now)}
