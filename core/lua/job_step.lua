-- One fenced transition of a job: applied only when the job is in one of the expected states, on the
-- expected attempt (and, when given, held by the expected node). A message for an older attempt, or from
-- a node that does not hold the job, changes nothing.
-- The attempt's entry in the job's attempt list changes in the same step, so a reader never sees a job DONE
-- whose attempt still says DISPATCHED.
-- KEYS: 1 job hash, 2 attempts hash (attempt id -> JSON)
-- ARGV: 1 attempt ("" = any), 2 expected states (comma separated), 3 new state, 4 fields (JSON object of
--       strings), 5 node that must hold the job ("" = any), 6 retention s once terminal ("" = none)
-- Returns: {"OK", seq, now_ms, state_before} | {"STALE", state, attempt, node} | {"GONE"}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'GONE'} end
local attempt = redis.call('HGET', KEYS[1], 'attempt_id') or ''
local node = redis.call('HGET', KEYS[1], 'node_id') or ''
local expected = false
for candidate in string.gmatch(ARGV[2], '[^,]+') do
  if candidate == state then expected = true end
end
if not expected or (ARGV[1] ~= '' and ARGV[1] ~= attempt) or (ARGV[5] ~= '' and ARGV[5] ~= node) then
  return {'STALE', state, attempt, node}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = {}
for k, v in pairs(cjson.decode(ARGV[4])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'updated_at', now, unpack(flat))
if ARGV[6] ~= '' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6])) end

local raw = redis.call('HGET', KEYS[2], attempt)
local entry = raw and cjson.decode(raw) or {attempt_id = tonumber(attempt), reason = cjson.null,
  started_at = cjson.null, ended_at = cjson.null}
entry['state'] = ARGV[3]
entry['node_id'] = redis.call('HGET', KEYS[1], 'node_id') or ''
if ARGV[3] == 'DISPATCHED' then entry['started_at'] = now end
if ARGV[3] == 'DONE' or ARGV[3] == 'CANCELLED' then entry['ended_at'] = now end
if ARGV[3] == 'CANCELLED' then entry['reason'] = 'CANCELLED' end
redis.call('HSET', KEYS[2], attempt, cjson.encode(entry))
return {'OK', seq, tostring(now), state}
