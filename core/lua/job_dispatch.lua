-- Place one attempt on the node whose slot the caller reserved: SELECTING -> DISPATCHED in one fenced step,
-- before the frame leaves (a node may answer at once, through another instance). Only the holder of the
-- attempt's selection claim may do it, so two selectors of one job never both dispatch.
-- KEYS: 1 job hash, 2 shard deadline index, 3 shard audit stream
-- ARGV: 1 attempt, 2 claim token, 3 node id, 4 pool ("" when pinned), 5 node acks ("1"/"0"), 6 ack timeout ms,
--       7 job timeout ms when the job has none, 8 Redis time (ms) the reservation read
-- The dispatch is stamped with the reservation's Redis time, one round trip earlier, instead of a TIME of its
-- own: its deadlines start that much early, never late.
-- Returns: {"OK", seq, now_ms, deadline_ms} | {"STALE", state, attempt, node}
--#include job
local f = redis.call('HMGET', KEYS[1], 'state', 'attempt_id', 'claim', 'seq', 'timeout_ms', 'deadline', 'job_id',
  'node_id')
if f[1] ~= 'SELECTING' or f[2] ~= ARGV[1] or f[3] ~= ARGV[1] .. '|' .. ARGV[2] then
  return {'STALE', f[1] or '', f[2] or '', f[8] or ''}
end
local now = tonumber(ARGV[8])
-- The real node never acks: only the job timeout applies to it.
local deadline, kind, mode = now + (tonumber(f[5]) or tonumber(ARGV[7])), 'job', 'first_message'
if ARGV[5] == '1' then deadline, kind, mode = now + tonumber(ARGV[6]), 'ack', 'ack' end
local seq = tonumber(f[4]) + 1
local attempt = {attempt_id = tonumber(ARGV[1]), node_id = ARGV[3], state = 'DISPATCHED', reason = cjson.null,
  started_at = now, ended_at = cjson.null}
redis.call('HSET', KEYS[1], 'state', 'DISPATCHED', 'node_id', ARGV[3], 'pool', ARGV[4], 'seq', seq,
  'updated_at', now, 'dispatched_at', now, 'deadline', deadline, 'deadline_kind', kind, 'ack_mode', mode,
  'claim', '', 'claim_until', 0, 'attempt:' .. ARGV[1], cjson.encode(attempt))
index_deadline(f[7], deadline, f[6])
audit({attempt_entry(f[7], attempt, seq)})
return {'OK', seq, tostring(now), tostring(deadline)}
