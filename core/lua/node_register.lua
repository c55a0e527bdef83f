-- Register (or re-register) one node: validates ownership of the id, then writes meta, capabilities and
-- capacity together. The newer connection always wins; the caller closes the previous one (returned here).
-- KEYS: 1 meta, 2 capabilities, 3 cap
-- ARGV: 1 node_id, 2 token_id, 3 conn_id, 4 fresh ("1": id just minted, must not exist), 5 heartbeat timeout ms,
--       6 warm-up timeout ms, 7 capabilities TTL s, 8 max_concurrent_jobs, 9 meta fields (JSON object of strings),
--       10 capability fields (JSON object of strings)
-- Returns: {"EXISTS"} | {"CONFLICT"} |
--          {"OK", old_conn, old_channel, old_status, new_status, deadline_ms, now_ms, member_of}
local function effective(status, drained)
  if not status then return '' end
  if status == 'offline' then return 'offline' end
  if drained == '1' then return 'draining' end
  return status
end

local old_status = redis.call('HGET', KEYS[1], 'status')
if old_status then
  if ARGV[4] == '1' then return {'EXISTS'} end
  if redis.call('HGET', KEYS[1], 'token_id') ~= ARGV[2] then return {'CONFLICT'} end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local drained = redis.call('HGET', KEYS[1], 'drained') or '0'
local old_effective = effective(old_status, drained)
local old_conn = redis.call('HGET', KEYS[1], 'conn') or ''
local old_channel = redis.call('HGET', KEYS[1], 'channel') or ''

local flat = {}
for k, v in pairs(cjson.decode(ARGV[9])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', KEYS[1],
  'node_id', ARGV[1], 'token_id', ARGV[2], 'conn', ARGV[3], 'status', 'registering', 'drained', drained,
  'registered_at', now, 'last_seen_at', now, 'status_changed_at', now, 'fail_streak', 0, 'window', '',
  'health_reason', '', 'token_revoked', '0', 'stalled', '0', 'max_jobs', ARGV[8], unpack(flat))
redis.call('HSETNX', KEYS[1], 'first_seen_at', now)
redis.call('PERSIST', KEYS[1])

redis.call('DEL', KEYS[2])
local caps = {}
for k, v in pairs(cjson.decode(ARGV[10])) do
  caps[#caps + 1] = k
  caps[#caps + 1] = v
end
if #caps > 0 then
  redis.call('HSET', KEYS[2], unpack(caps))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
end

-- Capacity: the declared maximum is the node's to state (also in meta as `max_jobs`, read there by
-- node_reserve.lua with the rest); what runs belongs to the scheduler (the reserved and running sets of
-- node_reserve.lua) and is never taken from what a node reports (the old system's heartbeat overwrite
-- leaked and oversubscribed).
redis.call('HSET', KEYS[3], 'max', ARGV[8])
redis.call('PERSIST', KEYS[3])

-- A registering node is due for a check at whichever comes first: missed heartbeats or warm-up expiry.
local deadline = now + math.min(tonumber(ARGV[5]), tonumber(ARGV[6]))
return {'OK', old_conn, old_channel, old_effective, effective('registering', drained), tostring(deadline), tostring(now),
  redis.call('HGET', KEYS[1], 'member_of') or ''}
