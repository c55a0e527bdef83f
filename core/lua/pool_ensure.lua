-- Dynamic creation: add the pool of a language set if it is absent, with the next pool id and version + 1,
-- in one step, so two instances registering nodes of new sets at once can neither mint the same id nor
-- lose each other's pool.
-- KEYS: 1 config hash, 2 epoch counter, 3 history list
-- ARGV: 1 name, 2 languages (JSON array), 3 required services (JSON array), 4 max pools, 5 created_by,
--       6 version floor ("" when unknown), 7 history length, 8 epoch floor
-- Returns: {"EXISTS", pool_id} | {"FULL"} | {"NO_CONFIG"} | {"CREATED", pool_id, version, generated_at_ms}
local raw = redis.call('HGET', KEYS[1], 'json')
if not raw and ARGV[6] == '' then return {'NO_CONFIG'} end
local pools = {}
if raw then pools = cjson.decode(raw)['pools'] end
local highest = 0
for _, pool in ipairs(pools) do
  if pool['name'] == ARGV[1] then return {'EXISTS', tostring(pool['pool_id'])} end
  if pool['pool_id'] > highest then highest = pool['pool_id'] end
end
if #pools >= tonumber(ARGV[4]) then return {'FULL'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
version = math.max(version, tonumber(ARGV[6]) or 0) + 1
-- After Redis lost its data the counter restarts at 0; the floor (the database's mark, passed when the
-- configuration is missing) and the configuration's own epoch keep it from going backwards until a
-- leader acquires above them.
local epoch = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') or 0, tonumber(ARGV[8]) or 0,
  tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') or 0)
local pool_id = math.max(tonumber(redis.call('HGET', KEYS[1], 'next_pool_id') or '1') or 1, highest + 1)
pools[#pools + 1] = {
  pool_id = pool_id, name = ARGV[1], languages = cjson.decode(ARGV[2]), required_services = cjson.decode(ARGV[3])
}
local document = '{"version":' .. version .. ',"epoch":' .. epoch .. ',"generated_at":' .. now ..
  ',"generated_by":' .. cjson.encode(ARGV[5]) .. ',"pools":' .. cjson.encode(pools) .. '}'
redis.call('HSET', KEYS[1], 'version', version, 'epoch', epoch, 'json', document, 'next_pool_id', pool_id + 1)
redis.call('LPUSH', KEYS[3], '{"version":' .. version .. ',"epoch":' .. epoch .. ',"at":' .. now ..
  ',"by":' .. cjson.encode(ARGV[5]) .. ',"change":{"added":[' .. cjson.encode(ARGV[1]) .. '],"removed":[]}}')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[7]) - 1)
return {'CREATED', tostring(pool_id), tostring(version), tostring(now)}
