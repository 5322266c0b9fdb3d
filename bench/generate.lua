-- generate.lua - wrk script for the /generate subjects.  Usage:
--
--     wrk ... -s bench/generate.lua URL -- API_KEY hit  [CACHE_KEY]
--     wrk ... -s bench/generate.lua URL -- API_KEY miss [TIER]
--
-- hit:  every request is POST /api/v1/generate
--       {"task":"cover_letter","prompt":"bench prompt","cache_key":CACHE_KEY}
--       (CACHE_KEY "bench-hit" by default; bench/run.sh fills that entry
--       first), so each one should be a cache hit.
-- miss: every request sends a prompt no one sent before ("bench miss" + a
--       nonce of this wrk run + thread + counter) in TIER ("session" by
--       default), so each one is a miss that reserves quota, calls the
--       upstream, stores the answer and commits.  The nonce is
--       $BENCH_PHASE (bench/run.sh sets it per wrk run) and the start time,
--       so the measurement never hits what its warm-up stored.
--
-- response() counts 200 answers with "cached":true and "cached":false and
-- the other statuses; done() prints one "bench-note:" line and the
-- "bench-stats:" line of common.lua.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local key, mode
local hdrs, fixed
local prefix, tiertxt
local n = 0

sent, cached_true, cached_false, other_200, non2xx, statuses = 0, 0, 0, 0, 0, ""

function init(args)
   key, mode = args[1], args[2] or "hit"
   if not key or key == "" then error("generate.lua: pass the API key after --") end
   hdrs = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
   if mode == "hit" then
      fixed = '{"task":"cover_letter","prompt":"bench prompt","cache_key":"' ..
         (args[3] or "bench-hit") .. '"}'
   elseif mode == "miss" then
      local nonce = (os.getenv("BENCH_PHASE") or "run") .. "-" .. os.time()
      prefix = '{"task":"cover_letter","cache_tier":"' .. (args[3] or "session") ..
         '","prompt":"bench miss ' .. nonce .. " t" .. (tonumber(tindex) or 0) .. " n"
   else
      error("generate.lua: mode is hit or miss")
   end
end

function request()
   sent = sent + 1
   if fixed then
      return wrk.format("POST", "/api/v1/generate", hdrs, fixed)
   end
   n = n + 1
   return wrk.format("POST", "/api/v1/generate", hdrs, prefix .. n .. '"}')
end

function response(status, headers, body)
   if status == 200 then
      if string.find(body, '"cached":true', 1, true) or string.find(body, '"cached": true', 1, true) then
         cached_true = cached_true + 1
      elseif string.find(body, '"cached":false', 1, true) or string.find(body, '"cached": false', 1, true) then
         cached_false = cached_false + 1
      else
         other_200 = other_200 + 1
      end
      return
   end
   if status < 200 or status > 299 then non2xx = non2xx + 1 end
   note_status(status)
end

function done(summary, latency, requests)
   local t, st = totals({ "sent", "cached_true", "cached_false", "other_200", "non2xx" })
   io.write(string.format(
      "bench-note: sent=%d cached_true=%d cached_false=%d other_200=%d non2xx=%d statuses=%s\n",
      t.sent, t.cached_true, t.cached_false, t.other_200, t.non2xx, st))
   print_stats(summary, latency)
end
