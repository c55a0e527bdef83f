-- Apply one heartbeat: refresh liveness and capabilities, then step the health state machine
-- (registering/degraded -> ready on a good check; registering -> ready also on a check that failed only
-- on load; ready -> degraded after N consecutive failed checks or M failures among the last W checks).
-- KEYS: 1 meta, 2 capabilities, 3 cap
-- ARGV: 1 conn_id, 2 token_id, 3 check ("1" ok, "0" failed, "load" failed only on load),
--       4 heartbeat timeout ms, 5 warm-up timeout ms,
--       6 consecutive failures, 7 window size, 8 failures in window, 9 capabilities TTL s,
--       10 meta fields (JSON object of strings), 11 capability fields (JSON object, "" keeps the stored ones),
--       12 reason of the check result
-- Returns: {"UNKNOWN"} | {"STALE"} | {"OFFLINE"} | {"REVOKED"} |
--          {"OK", old_status, new_status, deadline_ms, now_ms, member_of}
-- The node's deadline in the global index is not touched here (another slot): the sweep reschedules it
-- from `last_seen_at` when it comes due, which costs one check per node per timeout instead of a write per
-- heartbeat.
local function effective(status, drained)
  if status == 'offline' then return 'offline' end
  if drained == '1' then return 'draining' end
  return status
end

-- Every field this script reads, in one command (nothing below writes any of them before it is used).
local m = redis.call('HMGET', KEYS[1], 'status', 'conn', 'token_id', 'token_expires_at', 'token_revoked', 'drained',
  'fail_streak', 'window', 'registered_at', 'member_of')
local status = m[1]
if not status then return {'UNKNOWN'} end
if m[2] ~= ARGV[1] or m[3] ~= ARGV[2] then
  return {'STALE'}
end
if status == 'offline' then return {'OFFLINE'} end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expires = tonumber(m[4] or '0') or 0
if m[5] == '1' or (expires > 0 and expires <= now) then
  return {'REVOKED'}
end
local drained = m[6] or '0'
local ok = ARGV[3] == '1'
local streak = tonumber(m[7] or '0') or 0
local window = (m[8] or '') .. (ok and '1' or '0')
local size = tonumber(ARGV[7])
if #window > size then window = string.sub(window, -size) end
local _, failures = string.gsub(window, '0', '')

local new_status = status
if ok then
  streak = 0
  new_status = 'ready'
else
  streak = streak + 1
  if status == 'ready' and (streak >= tonumber(ARGV[6]) or failures >= tonumber(ARGV[8])) then
    new_status = 'degraded'
  elseif status == 'registering' and ARGV[3] == 'load' then
    -- Services ready, machine busy: typically the load of starting the node itself. Waiting for the next
    -- heartbeat (15 s on the real node) would keep it out of service that long; the failure still counts
    -- in the window, so sustained overload degrades it by the usual rule.
    new_status = 'ready'
  end
end

local flat = {}
for k, v in pairs(cjson.decode(ARGV[10])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', KEYS[1], 'status', new_status, 'fail_streak', streak, 'window', window,
  'last_heartbeat_at', now, 'last_seen_at', now, 'health_reason', ARGV[12], 'stalled', '0', unpack(flat))
if new_status ~= status then redis.call('HSET', KEYS[1], 'status_changed_at', now) end

if ARGV[11] ~= '' then
  redis.call('DEL', KEYS[2])
  local caps = {}
  for k, v in pairs(cjson.decode(ARGV[11])) do
    caps[#caps + 1] = k
    caps[#caps + 1] = v
  end
  if #caps > 0 then redis.call('HSET', KEYS[2], unpack(caps)) end
end
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[9]))

local deadline = now + tonumber(ARGV[4])
if new_status == 'registering' then
  local registered = tonumber(m[9] or now)
  deadline = math.min(deadline, registered + tonumber(ARGV[5]))
end
return {'OK', effective(status, drained), effective(new_status, drained), tostring(deadline), tostring(now),
  m[10] or ''}
