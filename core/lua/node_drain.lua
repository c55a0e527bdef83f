-- Set or clear the operator's drain flag. Draining overlays the health status: the node keeps its health
-- bookkeeping but takes no new jobs; the flag survives reconnects because it is the operator's intent.
-- KEYS: 1 meta
-- ARGV: 1 drained ("1"/"0"), 2 actor, 3 reason
-- Returns: {"UNKNOWN"} | {"OK", old_status, new_status}
local function effective(status, drained)
  if status == 'offline' then return 'offline' end
  if drained == '1' then return 'draining' end
  return status
end
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'UNKNOWN'} end
local old = effective(status, redis.call('HGET', KEYS[1], 'drained'))
redis.call('HSET', KEYS[1], 'drained', ARGV[1], 'drained_by', ARGV[2], 'drain_reason', ARGV[3])
return {'OK', old, effective(status, ARGV[1])}
