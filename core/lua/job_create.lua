-- Create a job in SELECTING (attempt 1) with its audio, its pending deadline and its audit entry, or find the
-- job an idempotency key already made: a job id derived from the key makes "exists?" and "create" one step.
-- KEYS: 1 job hash, 2 shard deadline index, 3 shard audit stream, 4 audio
-- ARGV: 1 job id, 2 body hash, 3 fields (JSON object of strings), 4 audio (base64), 5 pending timeout ms,
--       6 claim token for attempt 1 ("" = none; see job_claim.lua), 7 claim TTL ms, 8 audio TTL s,
--       9 ms until the sweeper first looks at the job (as the creator's claim runs out: a job whose creator
--         died is taken over then; the index entry is earlier than the pending deadline, as it may be)
-- The creator may take the selection claim of attempt 1 in the same step, so it places the job it just made
-- without a claim round trip of its own. The audio expires by itself, after any life the job can have.
-- Returns: {"CREATED", now_ms} | {"EXISTS", same_body ("1"/"0")}
--#include job
local existing = redis.call('HGET', KEYS[1], 'body_hash')
if existing then
  return {'EXISTS', existing == ARGV[2] and '1' or '0'}
end
local now = now_ms()
local deadline = now + tonumber(ARGV[5])
local h = cjson.decode(ARGV[3])
h.job_id, h.body_hash, h.state, h.attempt_id, h.node_id, h.tried = ARGV[1], ARGV[2], 'SELECTING', '1', '', ''
h.seq, h.created_at, h.updated_at = '1', tostring(now), tostring(now)
h.deadline, h.deadline_kind = tostring(deadline), 'pending'
if ARGV[6] ~= '' then
  h.claim, h.claim_until = '1|' .. ARGV[6], tostring(now + tonumber(ARGV[7]))
end
hset_job(h)
redis.call('SET', KEYS[4], ARGV[4], 'EX', tonumber(ARGV[8]))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[9]), ARGV[1])
audit({job_entry(h)})
return {'CREATED', tostring(now)}
