-- Bring the deadline of a node's live attempt forward, e.g. when the node came back on a new connection and
-- its old socket (with the web process that served it, perhaps) is gone: the attempt gets a short grace for
-- its result instead of the whole job timeout. Never pushes a deadline later.
-- KEYS: 1 job hash
-- ARGV: 1 attempt, 2 node that must hold it, 3 grace ms from now, 4 deadline kind to record
-- Returns: the new deadline (ms), or 0 when the attempt is not live on that node or is due sooner already
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'RESERVED' and state ~= 'DISPATCHED' and state ~= 'ACKED' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt_id') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'node_id') ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[3])
local current = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '')
if current and current <= deadline then return 0 end
redis.call('HSET', KEYS[1], 'deadline', deadline, 'deadline_kind', ARGV[4])
return deadline
