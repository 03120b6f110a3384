-- GCRA over every rate-limit rule of one request, atomically: the request is admitted only if
-- every rule admits it, and only then is any rule charged (a refused request costs nothing).
-- Time is Redis's own clock, so every ingest instance agrees on it.
--
-- KEYS[i]       the theoretical arrival time (TAT, microseconds) of rule i for this client
-- ARGV[2i-1]    emission interval of rule i, microseconds (period / limit)
-- ARGV[2i]      burst of rule i (requests that may arrive at once)
-- Returns { 0, 0 } when admitted, or { i, wait } with the first refusing rule and the
-- microseconds until it would admit.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_tat = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then
    tat = now
  end
  local allow_at = tat + interval - interval * burst
  if allow_at > now then
    return { i, allow_at - now }
  end
  next_tat[i] = tat + interval
end
for i, key in ipairs(KEYS) do
  -- The key is gone once the client would be back to a full burst.
  redis.call('SET', key, string.format('%d', next_tat[i]), 'PX', math.ceil((next_tat[i] - now) / 1000) + 1)
end
return { 0, 0 }
