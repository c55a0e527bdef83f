-- Compare-and-set on one member of a deadline index: reschedule (or drop) it only if nobody moved it since
-- the sweeper read it, so a heartbeat's fresh deadline is never overwritten by a stale sweep.
-- KEYS: 1 sorted set
-- ARGV: 1 member, 2 expected score, 3 new score ("" removes the member)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[1])
end
return 1
