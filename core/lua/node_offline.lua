-- Mark a node offline because its connection ended or an operator disconnected it. A close of an older,
-- superseded connection changes nothing (the conn id no longer matches).
-- KEYS: 1 meta, 2 cap
-- ARGV: 1 conn_id ("" = whatever connection holds it), 2 reason, 3 retention s of an offline node's keys
-- Returns: {"UNKNOWN"} | {"STALE"} | {"NOOP"} | {"OK", old_status, "offline"}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'UNKNOWN'} end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'conn') ~= ARGV[1] then return {'STALE'} end
if status == 'offline' then return {'NOOP'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = status
if redis.call('HGET', KEYS[1], 'drained') == '1' then old = 'draining' end
redis.call('HSET', KEYS[1], 'status', 'offline', 'conn', '', 'channel', '', 'status_changed_at', now,
  'health_reason', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return {'OK', old, 'offline'}
