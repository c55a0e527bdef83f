-- Count one failed authentication of an address in a fixed window; the window starts with its first failure.
-- KEYS: 1 counter of (kind, address)
-- ARGV: 1 window in milliseconds
-- Returns the count within the window and the milliseconds left of it.
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- A counter left without expiry (written by hand, or PEXPIRE lost to a failover) must not block for good.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
