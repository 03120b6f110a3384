-- Applies a batch of events to Redis and records the highest stream sequence applied, in one
-- atomic step: a redelivered event (sequence <= the recorded one) changes nothing.
--
-- Key names are made in Rust (schema/src/redis_keys.rs, through aggregator/src/effects.rs)
-- and passed in; nothing is named here.
--
-- KEYS[1]  the applied-sequence key of this sink
-- ARGV[1]  Elo K-factor   ARGV[2] initial rating   ARGV[3] personal-ranking TTL in seconds
-- ARGV[4]  how long the id of a keyed event is remembered, in seconds
-- then one record of 7 fields per event: seq, seen, kind, key, key2, a, b
--   seen  : for events whose id a client chose, a key that marks the id as applied (a retry
--           after JetStream's duplicate window is a second stream message with the same id);
--           '' for server-made ids, which are unique by construction
--   poll  : key = tally hash, key2 = voter -> options hash, a = options joined by ',',
--           b = voter; the voter's previous options (if any) lose the vote they had
--   score_add | score_replace | score_max | score_min :
--           key = standings sorted set, key2 = the match's sorted set, a = team, b = points;
--           both combine the points the same way
--   reg   : key = counts hash, key2 = registrant -> position hash, a = group ('' for none),
--           b = user; a user counts once, at the position of their first registration in
--           stream order (first-come places are positions up to the capacity)
--   rstatus : key = status hash (user -> JSON), key2 = promoted user ('' for none), a = user,
--           b = {"event": <change>, "user": <status>, "promoted": <status>|null, "deadlines": <key>,
--           "waitlist": <key>, "vacated": <key>, "positions": <key>, "withdrawn": <key>,
--           "due": <deadline in ms>}; stream order decides races: the draw sets a status
--           once, a claim applies only to a won place, a release only to a place still
--           unclaimed; a withdrawal applies once to anything but a release, and frees a won
--           or claimed place (as does a win arriving after its user withdrew); a hand-on
--           applies only to a freed place. A release or hand-on promotes its user only if
--           that user is still waitlisted, and otherwise frees the place again. Beside the
--           hash, sorted sets hold what the release step needs: the deadlines of won,
--           unclaimed places, the users still waitlisted by position, the freed places by
--           sequence, and (for first-come positions) the withdrawn by registration position.
--   pair  : key = arena ratings, key2 = the session's ratings, a = winner, b = loser
--   none  : no effect (the sequence still counts as applied)
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local k, initial, ttl, seen_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local applied, skipped, high = 0, 0, last

local function elo(key, winner, loser)
  local rw = tonumber(redis.call('ZSCORE', key, winner) or initial)
  local rl = tonumber(redis.call('ZSCORE', key, loser) or initial)
  local expected = 1 / (1 + 10 ^ ((rl - rw) / 400))
  local delta = k * (1 - expected)
  redis.call('ZADD', key, string.format('%.17g', rw + delta), winner)
  redis.call('ZADD', key, string.format('%.17g', rl - delta), loser)
end

for i = 5, #ARGV, 7 do
  local seq, seen = tonumber(ARGV[i]), ARGV[i + 1]
  if seq <= last or (seen ~= '' and not redis.call('SET', seen, '1', 'NX', 'EX', seen_ttl)) then
    skipped = skipped + 1
    if seq > high then
      high = seq
    end
  else
    local kind, key, key2, a, b = ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    if kind == 'poll' then
      local previous = redis.call('HGET', key2, b)
      if previous then
        for option in string.gmatch(previous, '[^,]+') do
          redis.call('HINCRBY', key, option, -1)
        end
      end
      redis.call('HSET', key2, b, a)
      for option in string.gmatch(a, '[^,]+') do
        redis.call('HINCRBY', key, option, 1)
      end
    elseif string.sub(kind, 1, 6) == 'score_' then
      for _, board in ipairs({key, key2}) do
        if board ~= '' then
          if kind == 'score_add' then
            redis.call('ZINCRBY', board, b, a)
          elseif kind == 'score_replace' then
            redis.call('ZADD', board, b, a)
          elseif kind == 'score_max' then
            redis.call('ZADD', board, 'GT', b, a)
          elseif kind == 'score_min' then
            redis.call('ZADD', board, 'LT', b, a)
          end
        end
      end
    elseif kind == 'reg' then
      if redis.call('HEXISTS', key2, b) == 0 then
        local position = redis.call('HINCRBY', key, '_total', 1)
        redis.call('HSET', key2, b, position)
        if a ~= '' then
          redis.call('HINCRBY', key, a, 1)
        end
      end
    elseif kind == 'rstatus' then
      local v = cjson.decode(b)
      local function status_of(user)
        local current = redis.call('HGET', key, user)
        return current and cjson.decode(current).status or nil
      end
      -- Gives a freed place to key2 if still waitlisted; frees it again if not.
      local function promote()
        if key2 == '' then
          return
        end
        if status_of(key2) == 'waitlisted' then
          redis.call('HSET', key, key2, cjson.encode(v.promoted))
          redis.call('ZREM', v.waitlist, key2)
          if v.due then
            redis.call('ZADD', v.deadlines, v.due, key2)
          end
        else
          redis.call('ZADD', v.vacated, seq, a)
        end
      end
      local change, current = v.event, status_of(a)
      if change == 'handed_on' then
        if redis.call('ZREM', v.vacated, a) == 1 then
          promote()
        end
      elseif change == 'promoted' then
        -- First-come: the place follows from positions; the event is the notice.
      elseif change == 'withdrawn' then
        if current ~= 'withdrawn' and current ~= 'released' then
          redis.call('HSET', key, a, cjson.encode(v.user))
          local position = redis.call('HGET', v.positions, a)
          if position then
            redis.call('ZADD', v.withdrawn, position, a)
          end
          if current == 'won' or current == 'claimed' then
            redis.call('ZREM', v.deadlines, a)
            redis.call('ZADD', v.vacated, seq, a)
          elseif current == 'waitlisted' then
            redis.call('ZREM', v.waitlist, a)
          end
        end
      elseif change == 'won' or change == 'waitlisted' then
        if not current then
          redis.call('HSET', key, a, cjson.encode(v.user))
          if change == 'waitlisted' then
            redis.call('ZADD', v.waitlist, v.user.position, a)
          elseif v.due then
            redis.call('ZADD', v.deadlines, v.due, a)
          end
        elseif current == 'withdrawn' and change == 'won' then
          redis.call('ZADD', v.vacated, seq, a)
        end
      elseif change == 'claimed' then
        if current == 'won' then
          redis.call('HSET', key, a, cjson.encode(v.user))
          redis.call('ZREM', v.deadlines, a)
        end
      elseif change == 'released' then
        if current == 'won' then
          redis.call('HSET', key, a, cjson.encode(v.user))
          redis.call('ZREM', v.deadlines, a)
          promote()
        end
      end
    elseif kind == 'pair' then
      elo(key, a, b)
      elo(key2, a, b)
      redis.call('EXPIRE', key2, ttl)
    end
    applied = applied + 1
    if seq > high then
      high = seq
    end
  end
end
redis.call('SET', KEYS[1], high)
return { applied, skipped, high }
