-- End the current attempt of a job as failed: retry on another node (back to SELECTING, attempt + 1, the
-- node remembered so it is never tried again) while attempts remain and the reason allows it; otherwise
-- the job is FAILED. Fenced by attempt (and node), so a late timeout or message for an older attempt
-- changes nothing. The attempt's entry, the deadline index, the audit entries and (once FAILED) the
-- retention and the notice to long-polling clients change in the same step.
-- KEYS: 1 job hash, 2 shard deadline index, 3 shard audit stream
-- ARGV: 1 attempt, 2 reason, 3 max attempts, 4 retryable ("1"/"0"), 5 node that must hold it ("" = any),
--       6 message, 7 retention s once terminal, 8 pending timeout ms for the retry, 9 ended-jobs channel,
--       10 the node's own error report (JSON {code, message, details}, bounded by the caller; "" = none), kept
--          as the caller encoded it in the job hash as `node_error:<attempt>` and in the attempt's audit entry as
--          the string `node_error_json`: decoding it here would turn its empty lists into objects,
--       11 ms until the sweeper first looks at a retry (as its placer's claim would run out: a retry whose
--          placer died is taken over then)
-- Returns: {"RETRY", new_attempt, seq, now_ms, node, trace_id} | {"FAILED", seq, now_ms, node, trace_id}
--          | {"STALE", state, attempt}
--#include job
local h = as_table(redis.call('HGETALL', KEYS[1]))
local state = h.state
if not state then return {'STALE', '', ''} end
local attempt_id = h.attempt_id or ''
local node = h.node_id or ''
if state == 'DONE' or state == 'FAILED' or state == 'CANCELLED' or attempt_id ~= ARGV[1]
    or (ARGV[5] ~= '' and ARGV[5] ~= node) then
  return {'STALE', state, attempt_id}
end
local now = now_ms()
local tried = h.tried or ''
if node ~= '' then tried = tried .. node .. ',' end
local seq = tonumber(h.seq or '0') + 1
local attempt = attempt_of(h, attempt_id)
attempt.state, attempt.reason, attempt.node_id, attempt.ended_at = 'FAILED', ARGV[2], node, now
local error_json = cjson.encode({code = ARGV[2], message = ARGV[6]})
local last = tonumber(attempt_id) or 0
local changes = {seq = tostring(seq), tried = tried, updated_at = tostring(now)}
changes['attempt:' .. attempt_id] = cjson.encode(attempt)
local node_error = ARGV[10] or ''
if node_error ~= '' then changes['node_error:' .. attempt_id] = node_error end
local retry = ARGV[4] == '1' and last < tonumber(ARGV[3])
if retry then
  local deadline = now + tonumber(ARGV[8])
  changes.state, changes.attempt_id, changes.node_id, changes.last_error = 'SELECTING', tostring(last + 1), '', error_json
  changes.deadline, changes.deadline_kind = tostring(deadline), 'pending'
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[11]), h.job_id)
else
  changes.state, changes.reason, changes.error, changes.ended_at = 'FAILED', ARGV[2], error_json, tostring(now)
  changes.deadline, changes.deadline_kind = '', ''
end
hset_job(changes)
for k, v in pairs(changes) do h[k] = v end
local ended = attempt_entry(h.job_id, attempt, seq)
if node_error ~= '' then ended.node_error_json = node_error end
local entries = {ended, job_entry(h)}
audit(entries)
if retry then
  return {'RETRY', tostring(last + 1), seq, tostring(now), node, h.trace_id or ''}
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
redis.call('ZREM', KEYS[2], h.job_id)
redis.call('PUBLISH', ARGV[9], h.job_id)
return {'FAILED', seq, tostring(now), node, h.trace_id or ''}
