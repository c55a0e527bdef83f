-- Reserve one slot on a node for one attempt of a job: validate first, write last. Capacity counts live
-- entries of two sorted sets (reserved, running) scored by their own expiry, so a slot whose holder
-- vanished frees itself: expired entries are swept here, lazily, before counting.
-- KEYS: 1 meta, 2 capabilities, 3 cap, 4 reservations, 5 running, 6 unavailable services
-- ARGV: 1 member ("<job_id>#<attempt>"), 2 reservation TTL ms, 3 required service types (JSON array),
--       4 languages the job needs (JSON array)
-- Returns: {"OK", reserved, running, max} | {"NOT_READY"} | {"DRAINING"} | {"LANGUAGES"} | {"SERVICE", type}
--          | {"UNAVAILABLE", type} | {"FULL", reserved, running, max} | {"STALLED"} | {"GONE"}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'GONE'} end
if redis.call('HGET', KEYS[1], 'drained') == '1' then return {'DRAINING'} end
if status ~= 'ready' then return {'NOT_READY'} end
-- An attempt on it timed out and it has not shown life since (node_stalled.lua).
if redis.call('HGET', KEYS[1], 'stalled') == '1' then return {'STALLED'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local languages = {}
for _, lang in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'languages') or '[]')) do languages[lang] = true end
for _, lang in ipairs(cjson.decode(ARGV[4])) do
  if not languages[lang] then return {'LANGUAGES'} end
end
for _, kind in ipairs(cjson.decode(ARGV[3])) do
  local raw = redis.call('HGET', KEYS[2], kind)
  if not raw or not cjson.decode(raw)['ready'] then return {'SERVICE', kind} end
  local until_ms = tonumber(redis.call('HGET', KEYS[6], kind) or '0') or 0
  if until_ms > now then return {'UNAVAILABLE', kind} end
end

redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local reserved = redis.call('ZCARD', KEYS[4])
local running = redis.call('ZCARD', KEYS[5])
local max = tonumber(redis.call('HGET', KEYS[3], 'max') or '0') or 0
if redis.call('ZSCORE', KEYS[4], ARGV[1]) or redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  return {'OK', reserved, running, max}
end
if reserved + running >= max then return {'FULL', reserved, running, max} end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[1])
return {'OK', reserved + 1, running, max}
