-- Move or free one attempt's slot on a node; idempotent per member, so a retried call changes nothing.
--   commit:  reserved -> running (the node took the job), running entry expiring at ARGV[3]
--   release: gone from both (dispatch failed, attempt ended, job finished)
-- KEYS: 1 reservations, 2 running
-- ARGV: 1 mode ("commit" | "release"), 2 member, 3 running expiry ms (commit)
-- Returns: 1 when something changed, 0 otherwise
if ARGV[1] == 'commit' then
  local had = redis.call('ZREM', KEYS[1], ARGV[2])
  if had == 0 and not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[2])
  return 1
end
return redis.call('ZREM', KEYS[1], ARGV[2]) + redis.call('ZREM', KEYS[2], ARGV[2])
