-- The session slots of one API key (or of open access): members are session ids scored by when they expire,
-- so the slots of sessions whose instance died free themselves (swept here, before counting).
-- KEYS: 1 the key's sessions (sorted set)
-- ARGV: 1 session id, 2 op (acquire | refresh | release), 3 limit, 4 ttl ms
-- Returns {"OK", count} or {"FULL", count}; release returns {"OK", count}.
local key, session, op = KEYS[1], ARGV[1], ARGV[2]
local limit, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'release' then
  redis.call('ZREM', key, session)
  return {'OK', redis.call('ZCARD', key)}
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
-- A refresh re-adds a session that Redis lost (a restart): it is live and keeps its slot.
if op == 'acquire' and redis.call('ZSCORE', key, session) == false then
  local count = redis.call('ZCARD', key)
  if count >= limit then
    return {'FULL', count}
  end
end
redis.call('ZADD', key, now + ttl, session)
redis.call('PEXPIRE', key, ttl)
return {'OK', redis.call('ZCARD', key)}
