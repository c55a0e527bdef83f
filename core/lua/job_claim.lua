-- One selector at a time per attempt: a claim with its own expiry, taken before reserving a slot and
-- given back when no slot was found. Two instances pumping the same waiting job would otherwise both
-- reserve, and the loser's clean-up could free the slot the winner dispatched on.
-- KEYS: 1 job hash
-- ARGV: 1 attempt, 2 token, 3 claim TTL ms, 4 mode ("claim" | "release")
-- Returns: 1 when claimed (or released), 0 otherwise
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'SELECTING' or redis.call('HGET', KEYS[1], 'attempt_id') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A claim belongs to one attempt: one left behind by an earlier attempt's selector never blocks this one.
local mine = ARGV[1] .. '|' .. ARGV[2]
local holder = redis.call('HGET', KEYS[1], 'claim') or ''
local expires = tonumber(redis.call('HGET', KEYS[1], 'claim_until') or '0') or 0
if string.sub(holder, 1, #ARGV[1] + 1) ~= ARGV[1] .. '|' then holder = '' end
if ARGV[4] == 'release' then
  if holder == mine then
    redis.call('HSET', KEYS[1], 'claim', '', 'claim_until', 0)
    return 1
  end
  return 0
end
if holder ~= '' and holder ~= mine and expires > now then return 0 end
redis.call('HSET', KEYS[1], 'claim', mine, 'claim_until', now + tonumber(ARGV[3]))
return 1
