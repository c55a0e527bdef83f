-- Merge one change into a job's live attempt list (what GET /jobs/{id} shows). A node can answer before
-- the dispatcher has recorded the dispatch, so state and reason follow the newest `seq`; times are kept
-- once known.
-- KEYS: 1 attempts hash (field: attempt id -> JSON)
-- ARGV: 1 attempt, 2 seq, 3 state, 4 reason, 5 node, 6 started_at ("" unknown), 7 ended_at ("" unknown)
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local entry = raw and cjson.decode(raw) or {attempt_id = tonumber(ARGV[1]), seq = 0, reason = cjson.null,
  started_at = cjson.null, ended_at = cjson.null, node_id = ARGV[5]}
if tonumber(ARGV[2]) > (tonumber(entry['seq']) or 0) then
  entry['seq'] = tonumber(ARGV[2])
  entry['state'] = ARGV[3]
  if ARGV[4] ~= '' then entry['reason'] = ARGV[4] end
end
if ARGV[5] ~= '' then entry['node_id'] = ARGV[5] end
if ARGV[6] ~= '' then entry['started_at'] = tonumber(ARGV[6]) end
if ARGV[7] ~= '' then entry['ended_at'] = tonumber(ARGV[7]) end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return 1
