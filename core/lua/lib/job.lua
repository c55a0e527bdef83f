-- Shared by the job transition scripts (`--#include job`, expanded by scheduler/scripts.py).
-- Every including script takes KEYS 1 job hash, 2 its shard's deadline index, 3 its shard's audit stream,
-- so a transition, its deadline and its audit entry are one atomic step in one hash slot.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function as_table(flat)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- Write the fields of table `t` to the job hash.
local function hset_job(t)
  local flat = {}
  for k, v in pairs(t) do
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  redis.call('HSET', KEYS[1], unpack(flat))
end

local function number_or_null(value)
  if value == nil or value == '' then return cjson.null end
  return tonumber(value)
end

-- The job's audit entry (applied by jobs/audit.py) from its hash as the transition left it.
local function job_entry(h)
  local timings = {}
  for _, name in ipairs({'dispatched_at', 'acked_at', 'ended_at'}) do
    if h[name] and h[name] ~= '' then timings[name] = tonumber(h[name]) end
  end
  local error = cjson.null
  if h.error and h.error ~= '' then error = cjson.decode(h.error) end
  return {type = 'job', job_id = h.job_id, seq = tonumber(h.seq), state = h.state, reason = h.reason or '',
    src_lang = h.src_lang or '', tgt_lang = h.tgt_lang or '', pool = h.pool or '', node_id = h.node_id or '',
    attempt_id = tonumber(h.attempt_id) or 1, session_id = h.session_id or '',
    utterance_index = number_or_null(h.utterance_index), trace_id = h.trace_id or '', pinned_node = h.pinned or '',
    created_at = tonumber(h.created_at), ended_at = number_or_null(h.ended_at), error = error, timings = timings}
end

-- An attempt lives in the job hash as field `attempt:<id>` (one JSON object), so one HGETALL reads it all.
local function attempt_of(h, attempt)
  local raw = h['attempt:' .. attempt]
  if raw then return cjson.decode(raw) end
  return {attempt_id = tonumber(attempt), node_id = '', state = '', reason = cjson.null, started_at = cjson.null,
    ended_at = cjson.null}
end

local function attempt_entry(job_id, attempt, seq)
  local reason = attempt.reason
  if reason == cjson.null or reason == nil then reason = '' end
  return {type = 'attempt', job_id = job_id, attempt_id = attempt.attempt_id, seq = seq, node_id = attempt.node_id,
    state = attempt.state, reason = reason, started_at = attempt.started_at, ended_at = attempt.ended_at}
end

-- One stream entry per transition, holding every audit entry of it (a JSON list).
local function audit(entries)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000000, '*', 'category', 'jobs', 'data', cjson.encode(entries))
end

-- The deadline index may hold an earlier score than the job's deadline (the sweeper then moves it on), never a
-- later one: so only a deadline earlier than the one the hash had needs an index write.
local function index_deadline(job_id, deadline, before)
  local previous = tonumber(before or '')
  if not previous or deadline < previous then redis.call('ZADD', KEYS[2], deadline, job_id) end
end
