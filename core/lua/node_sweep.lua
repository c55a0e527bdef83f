-- Check one node against its deadlines with Redis's clock, so any instance (or a beat task) can run it,
-- including for nodes whose socket lived in a process that died.
-- KEYS: 1 meta, 2 cap
-- ARGV: 1 heartbeat timeout ms, 2 warm-up timeout ms, 3 retention s of an offline node's keys
-- Returns: {"GONE"} | {"OFFLINE"} | {"ALIVE", next_deadline_ms} | {"CHANGED", old_status, new_status, next_deadline_ms or ""}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'GONE'} end
if status == 'offline' then return {'OFFLINE'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local drained = redis.call('HGET', KEYS[1], 'drained') == '1'
local old = status
if drained then old = 'draining' end
local last_seen = tonumber(redis.call('HGET', KEYS[1], 'last_seen_at') or '0') or 0
local live_until = last_seen + tonumber(ARGV[1])

if live_until <= now then
  redis.call('HSET', KEYS[1], 'status', 'offline', 'conn', '', 'channel', '', 'status_changed_at', now,
    'health_reason', 'heartbeat_timeout')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
  return {'CHANGED', old, 'offline', ''}
end

if status == 'registering' then
  local warm_until = tonumber(redis.call('HGET', KEYS[1], 'registered_at') or now) + tonumber(ARGV[2])
  if warm_until <= now then
    redis.call('HSET', KEYS[1], 'status', 'degraded', 'status_changed_at', now, 'health_reason', 'warmup_timeout')
    local new = 'degraded'
    if drained then new = 'draining' end
    return {'CHANGED', old, new, tostring(live_until)}
  end
  return {'ALIVE', tostring(math.min(live_until, warm_until))}
end
return {'ALIVE', tostring(live_until)}
