-- End the current attempt of a job as failed: retry on another node (back to SELECTING, attempt + 1, the
-- node remembered so it is never tried again) while attempts remain and the reason allows it; otherwise
-- the job is FAILED. Fenced by attempt (and node), so a late timeout or message for an older attempt
-- changes nothing.
-- The ended attempt's entry in the job's attempt list changes in the same step.
-- KEYS: 1 job hash, 2 attempts hash (attempt id -> JSON)
-- ARGV: 1 attempt, 2 reason, 3 max attempts, 4 retryable ("1"/"0"), 5 node that must hold it ("" = any),
--       6 message, 7 retention s once terminal, 8 pending timeout ms for the retry,
--       9 the node's own error report (JSON {code, message, details}, bounded by the caller; "" = none),
--         kept in the job hash as `node_error:<attempt>`
-- Returns: {"RETRY", new_attempt, seq, now_ms, node} | {"FAILED", seq, now_ms, node} | {"STALE", state, attempt}
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'STALE', '', ''} end
local attempt = redis.call('HGET', KEYS[1], 'attempt_id') or ''
local node = redis.call('HGET', KEYS[1], 'node_id') or ''
if state == 'DONE' or state == 'FAILED' or state == 'CANCELLED' or attempt ~= ARGV[1]
    or (ARGV[5] ~= '' and ARGV[5] ~= node) then
  return {'STALE', state, attempt}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tried = redis.call('HGET', KEYS[1], 'tried') or ''
if node ~= '' then tried = tried .. node .. ',' end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local raw = redis.call('HGET', KEYS[2], attempt)
local entry = raw and cjson.decode(raw) or {attempt_id = tonumber(attempt), started_at = cjson.null}
entry['state'] = 'FAILED'
entry['reason'] = ARGV[2]
entry['node_id'] = node
entry['ended_at'] = now
-- Kept as the caller encoded it, beside the entry: decoding it here would turn its empty lists into objects.
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'node_error:' .. attempt, ARGV[9]) end
redis.call('HSET', KEYS[2], attempt, cjson.encode(entry))
local error_json = cjson.encode({code = ARGV[2], message = ARGV[6]})
local last = tonumber(attempt) or 0
if ARGV[4] == '1' and last < tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'SELECTING', 'attempt_id', last + 1, 'node_id', '', 'tried', tried,
    'updated_at', now, 'last_error', error_json, 'deadline', now + tonumber(ARGV[8]), 'deadline_kind', 'pending')
  return {'RETRY', tostring(last + 1), seq, tostring(now), node}
end
redis.call('HSET', KEYS[1], 'state', 'FAILED', 'reason', ARGV[2], 'error', error_json, 'tried', tried,
  'updated_at', now, 'ended_at', now, 'deadline', '', 'deadline_kind', '')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
return {'FAILED', seq, tostring(now), node}
