-- Reserve one slot on a node for one attempt of a job: validate first, write last. Capacity counts the
-- entries of two sorted sets (reserved, running) scored by their own expiry, so a slot whose holder vanished
-- frees itself: when the count says full, expired entries are swept and the count taken again (an expired
-- entry only ever over-counts, so a node with room needs no sweep).
-- KEYS: 1 meta, 2 capabilities, 3 cap, 4 reservations, 5 running, 6 unavailable services
-- ARGV: 1 member ("<job_id>#<attempt>"), 2 slot TTL ms (past any deadline of the attempt),
--       3 required service types (JSON array), 4 languages the job needs (JSON array)
-- Returns: {"OK", reserved, running, max, acks, channel, transport, dispatch_url, now_ms} (what dispatch needs)
--          | {"NOT_READY"} | {"DRAINING"} | {"LANGUAGES"} | {"SERVICE", type} | {"UNAVAILABLE", type}
--          | {"FULL", reserved, running, max} | {"STALLED"} | {"GONE"}
local m = redis.call('HMGET', KEYS[1], 'status', 'drained', 'languages', 'max_jobs', 'supports_job_ack', 'channel',
  'transport', 'dispatch_url', 'unavailable_until', 'stalled')
if not m[1] then return {'GONE'} end
if m[2] == '1' then return {'DRAINING'} end
if m[1] ~= 'ready' then return {'NOT_READY'} end
-- An attempt on it timed out and it has not shown life since (node_stalled.lua).
if m[10] == '1' then return {'STALLED'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local languages = {}
for _, lang in ipairs(cjson.decode(m[3] or '[]')) do languages[lang] = true end
for _, lang in ipairs(cjson.decode(ARGV[4])) do
  if not languages[lang] then return {'LANGUAGES'} end
end
local required = cjson.decode(ARGV[3])
if #required > 0 then
  local capabilities = redis.call('HMGET', KEYS[2], unpack(required))
  -- `unavailable_until` in meta is the latest expiry of any mark: past it, the marks need no read.
  local unavailable = {}
  if (tonumber(m[9] or '0') or 0) > now then unavailable = redis.call('HMGET', KEYS[6], unpack(required)) end
  for i, kind in ipairs(required) do
    if not capabilities[i] or not cjson.decode(capabilities[i])['ready'] then return {'SERVICE', kind} end
    if (tonumber(unavailable[i] or '0') or 0) > now then return {'UNAVAILABLE', kind} end
  end
end

-- Nodes registered before `max_jobs` was kept in meta have it only in the cap hash.
local max = tonumber(m[4] or redis.call('HGET', KEYS[3], 'max') or '0') or 0
local reserved = redis.call('ZCARD', KEYS[4])
local running = redis.call('ZCARD', KEYS[5])
if reserved + running >= max then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  reserved = redis.call('ZCARD', KEYS[4])
  running = redis.call('ZCARD', KEYS[5])
  -- A resent call for a slot this attempt already holds.
  local held = redis.call('ZSCORE', KEYS[4], ARGV[1]) or redis.call('ZSCORE', KEYS[5], ARGV[1])
  if held then return {'OK', reserved, running, max, m[5] or '0', m[6] or '', m[7] or '', m[8] or '', tostring(now)} end
  if reserved + running >= max then return {'FULL', reserved, running, max} end
end
-- A node that never acks never says it started: the job it is sent runs as far as anyone can tell, so its
-- slot is running from now (nodes that ack hold theirs reserved until the ack commits it). NX: a resent call
-- keeps the first expiry.
if m[5] == '1' then
  reserved = reserved + redis.call('ZADD', KEYS[4], 'NX', now + tonumber(ARGV[2]), ARGV[1])
else
  running = running + redis.call('ZADD', KEYS[5], 'NX', now + tonumber(ARGV[2]), ARGV[1])
end
return {'OK', reserved, running, max, m[5] or '0', m[6] or '', m[7] or '', m[8] or '', tostring(now)}
