-- The benchmark's REST job load for wrk: what jobs.loadgen does, without Python on the client side.
-- Each request is POST /api/v1/jobs?wait=W with one job body; a job not finished within the wait (202) is
-- followed by GET /api/v1/jobs/{id}?wait=W long-polls on the same thread until it ends. Jobs that end DONE,
-- jobs that end otherwise and HTTP errors are counted per thread and printed as one JSON line at the end.
-- Set by bench/wrk.py through the environment: WRK_API_KEY, WRK_BODY_FILE, WRK_WAIT_S.

local api_key = os.getenv("WRK_API_KEY")
local wait_s = os.getenv("WRK_WAIT_S") or "10"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
  body = file:read("*a")
  file:close()
  post_path = "/api/v1/jobs?wait=" .. wait_s
  headers = {["Authorization"] = "Bearer " .. api_key, ["Content-Type"] = "application/json"}
  get_headers = {["Authorization"] = "Bearer " .. api_key}
  pending = {}
  done, other, errors, polls = 0, 0, 0, 0
end

function request()
  local job_id = table.remove(pending)
  if job_id then
    polls = polls + 1
    return wrk.format("GET", "/api/v1/jobs/" .. job_id .. "?wait=" .. wait_s, get_headers)
  end
  return wrk.format("POST", post_path, headers, body)
end

function response(status, headers, answer)
  if status == 200 then
    local state = answer:match('"state": "(%u+)"')
    if state == "DONE" then
      done = done + 1
    elseif state == "FAILED" or state == "CANCELLED" then
      other = other + 1
    else
      table.insert(pending, answer:match('"job_id": "([^"]+)"'))
    end
  elseif status == 202 then
    table.insert(pending, answer:match('"job_id": "([^"]+)"'))
  else
    errors = errors + 1
  end
end

function total(name)
  local sum = 0
  for _, thread in ipairs(threads) do
    sum = sum + thread:get(name)
  end
  return sum
end

function done(summary, latency, requests)
  local line = string.format(
    '{"done": %d, "other": %d, "errors": %d, "polls": %d, "requests": %d, "duration_us": %d, '
      .. '"latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d}, "socket_errors": %d}',
    total("done"), total("other"), total("errors"), total("polls"),
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout)
  io.write("WRK_RESULT " .. line .. "\n")
end
