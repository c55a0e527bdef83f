-- One fenced transition of a job: applied only when the job is in one of the expected states, on the
-- expected attempt (and, when given, held by the expected node). A message for an older attempt, or from
-- a node that does not hold the job, changes nothing.
-- In the same step: the attempt's entry in the job hash (a reader never sees a job DONE whose attempt still
-- says DISPATCHED), the deadline index, the audit entries, and for a terminal state the retention and the
-- notice to long-polling clients (jobs/waiters.py).
-- ACKED takes its deadline from the job itself: its timeout counted from the dispatch.
-- KEYS: 1 job hash, 2 shard deadline index, 3 shard audit stream
-- ARGV: 1 attempt ("" = any), 2 expected states (comma separated), 3 new state, 4 fields (JSON object of
--       strings), 5 node that must hold the job ("" = any), 6 retention s once terminal ("" = not terminal),
--       7 channel announcing ended jobs, 8 "1" to return the whole job hash as it now is (the ending process
--       has a client waiting on it: it answers from this reply instead of reading the job back)
-- Returns: {"OK", seq, now_ms, state_before, node, attempt, deadline, trace_id[, {field, value, ...}]}
--          | {"STALE", state, attempt, node} | {"GONE"}
--#include job
local h = as_table(redis.call('HGETALL', KEYS[1]))
local state = h.state
if not state then return {'GONE'} end
local attempt_id = h.attempt_id or ''
local node = h.node_id or ''
local expected = false
for candidate in string.gmatch(ARGV[2], '[^,]+') do
  if candidate == state then expected = true end
end
if not expected or (ARGV[1] ~= '' and ARGV[1] ~= attempt_id) or (ARGV[5] ~= '' and ARGV[5] ~= node) then
  return {'STALE', state, attempt_id, node}
end
local now = now_ms()
local changes = cjson.decode(ARGV[4])
changes.state, changes.updated_at, changes.seq = ARGV[3], tostring(now), tostring(tonumber(h.seq or '0') + 1)
if ARGV[3] == 'ACKED' then
  changes.acked_at, changes.deadline_kind = tostring(now), 'job'
  changes.deadline = tostring(tonumber(h.dispatched_at or now) + tonumber(h.timeout_ms or '0'))
end
local terminal = ARGV[6] ~= ''
if terminal then changes.ended_at, changes.deadline, changes.deadline_kind = tostring(now), '', '' end
for k, v in pairs(changes) do h[k] = v end

local attempt = attempt_of(h, attempt_id)
attempt.state = ARGV[3]
attempt.node_id = node
if terminal then attempt.ended_at = now end
if ARGV[3] == 'CANCELLED' then attempt.reason = 'CANCELLED' end
changes['attempt:' .. attempt_id] = cjson.encode(attempt)
h['attempt:' .. attempt_id] = changes['attempt:' .. attempt_id]
hset_job(changes)

local entries = {}
if node ~= '' then entries[1] = attempt_entry(h.job_id, attempt, tonumber(h.seq)) end
if terminal then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
  redis.call('ZREM', KEYS[2], h.job_id)
  entries[#entries + 1] = job_entry(h)
elseif ARGV[3] == 'ACKED' then
  -- Later than the ack deadline the index holds: moved now rather than by a sweeper pass.
  redis.call('ZADD', KEYS[2], tonumber(h.deadline), h.job_id)
end
audit(entries)
if terminal then redis.call('PUBLISH', ARGV[7], h.job_id) end
local reply = {'OK', tonumber(h.seq), tostring(now), state, node, attempt_id, h.deadline or '', h.trace_id or ''}
if ARGV[8] == '1' then
  local flat = {}
  for k, v in pairs(h) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  reply[9] = flat
end
return reply
