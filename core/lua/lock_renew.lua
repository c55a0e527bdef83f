-- Extend a named lock only if we still hold it (its value is our token).
-- KEYS: 1 lock key
-- ARGV: 1 token, 2 ttl in milliseconds
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
