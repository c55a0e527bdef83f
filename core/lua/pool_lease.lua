-- The pool leader's lease with a fencing epoch. The lease value is "<holder>|<epoch>"; the epoch counter
-- only ever grows (and is raised to the durable floor kept in the database after Redis lost its data).
-- KEYS: 1 lease, 2 epoch counter, 3 leader-change counter
-- ARGV: 1 holder, 2 TTL ms, 3 epoch floor, 4 mode ("acquire" | "renew" | "release"), 5 epoch held ("" when acquiring)
-- Returns: {"ACQUIRED", epoch} | {"RENEWED", epoch} | {"RELEASED"} | {"HELD", holder, epoch} | {"LOST", epoch}
local current = redis.call('GET', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[2]) or '0') or 0

if current then
  local holder, epoch = string.match(current, '^(.*)|(%d+)$')
  local mine = holder == ARGV[1] and (ARGV[5] == '' or epoch == ARGV[5])
  if mine and ARGV[4] == 'release' then
    redis.call('DEL', KEYS[1])
    return {'RELEASED'}
  end
  if mine then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    return {'RENEWED', epoch}
  end
  if ARGV[4] ~= 'acquire' then return {'LOST', tostring(counter)} end
  return {'HELD', holder, epoch}
end

-- A lease that expired is gone for good: its holder must acquire a new epoch, never carry on with the old.
if ARGV[4] ~= 'acquire' then return {'LOST', tostring(counter)} end
local floor = tonumber(ARGV[3]) or 0
if counter < floor then counter = floor end
counter = counter + 1
redis.call('SET', KEYS[2], counter)
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. counter, 'PX', tonumber(ARGV[2]))
redis.call('INCR', KEYS[3])
return {'ACQUIRED', tostring(counter)}
