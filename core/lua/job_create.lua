-- Create a job in SELECTING (attempt 1) with its audio, or find the job an idempotency key already made:
-- a job id derived from the key makes "exists?" and "create" one atomic step.
-- KEYS: 1 job hash, 2 audio
-- ARGV: 1 job id, 2 body hash, 3 fields (JSON object of strings), 4 audio (base64), 5 pending timeout ms,
--       6 claim token for attempt 1 ("" = none; see job_claim.lua), 7 claim TTL ms
-- The creator may take the selection claim of attempt 1 in the same step, so it places the job it just made
-- without a claim round trip of its own.
-- Returns: {"CREATED", now_ms} | {"EXISTS", same_body ("1"/"0")}
local existing = redis.call('HGET', KEYS[1], 'body_hash')
if existing then
  return {'EXISTS', existing == ARGV[2] and '1' or '0'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local flat = {}
for k, v in pairs(cjson.decode(ARGV[3])) do
  flat[#flat + 1] = k
  flat[#flat + 1] = v
end
redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'body_hash', ARGV[2], 'state', 'SELECTING', 'attempt_id', 1,
  'node_id', '', 'tried', '', 'seq', 1, 'created_at', now, 'updated_at', now,
  'deadline', now + tonumber(ARGV[5]), 'deadline_kind', 'pending', unpack(flat))
if ARGV[6] and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'claim', '1|' .. ARGV[6], 'claim_until', now + tonumber(ARGV[7]))
end
redis.call('SET', KEYS[2], ARGV[4])
return {'CREATED', tostring(now)}
