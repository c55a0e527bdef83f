-- The session slots of one API key (or of open access): members are session ids scored by when they expire,
-- so the slots of sessions whose instance died free themselves (swept here, before counting).
-- KEYS: 1 the key's sessions (sorted set)
-- ARGV: 1 session id, 2 op (acquire | refresh | release), 3 limit, 4 ttl ms
-- Returns {"OK", count} or {"FULL", count}; release returns {"OK", count}.
local session, op = ARGV[1], ARGV[2]
local limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'release' then
  redis.call('ZREM', KEYS[1], session)
  return {'OK', redis.call('ZCARD', KEYS[1])}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- A refresh re-adds a session that Redis lost (a restart): it is live and keeps its slot.
if op == 'acquire' and redis.call('ZSCORE', KEYS[1], session) == false then
  local count = redis.call('ZCARD', KEYS[1])
  if count >= limit then
    return {'FULL', count}
  end
end
redis.call('ZADD', KEYS[1], now + ttl, session)
redis.call('PEXPIRE', KEYS[1], ttl)
return {'OK', redis.call('ZCARD', KEYS[1])}
