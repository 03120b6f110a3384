-- wrk script: POST a poll vote, stop after BURST_COUNT responses in all, count 202s.
-- Usage: BURST_COUNT=20000 wrk -t2 -c100 -d60s -s burst.lua http://127.0.0.1:8080/v1/polls/<poll>/votes
local threads = {}
local per_thread = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local total = tonumber(os.getenv("BURST_COUNT") or "20000")
  per_thread = math.ceil(total / #threads_count_hint())
  accepted, answered = 0, 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"voter":"wrk","options":["red"]}'
end

function threads_count_hint()
  -- wrk runs init per thread; the thread count comes from the environment (set by bench.sh).
  local n = tonumber(os.getenv("WRK_THREADS") or "2")
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

function response(status, headers, body)
  answered = answered + 1
  if status == 202 then accepted = accepted + 1 end
  if answered >= per_thread then wrk.thread:stop() end
end

function done(summary, latency, requests)
  local a, n = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    n = n + t:get("answered")
  end
  -- wrk's own Requests/sec divides by -d even when the threads stopped early.
  local seconds = summary.duration / 1e6
  io.write(string.format("wrk: %d answered in %.2f s = %.0f req/s, %d of them 202; latency p50 %.2f ms, p99 %.2f ms\n",
    n, seconds, n / seconds, a, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
