-- mixed.lua - wrk script for the worker-RSS run (SPEC §8: worker RSS after
-- 200k mixed requests).  Usage:
--
--     wrk ... -s bench/mixed.lua URL -- STATUS_KEY CACHE_KEY GEN_KEY
--
-- Rotates over four requests: GET /api/v1/health; GET /api/v1/quota/status
-- (STATUS_KEY); GET /api/v1/cache/content/bench-1k (CACHE_KEY, a 1 KiB hit);
-- POST /api/v1/generate {"task":"cover_letter","prompt":"bench prompt",
-- "cache_key":"bench-hit"} (GEN_KEY, a cache hit).  bench/run.sh creates the
-- entries first.  done() prints one "bench-note:" line with the requests and
-- non-2xx per kind and the /generate answers that were not cache hits.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local reqs = {}
local i = 0

sent_1, sent_2, sent_3, sent_4 = 0, 0, 0, 0
bad, gen_not_cached, statuses = 0, 0, ""

function init(args)
   local sk, ck, gk = args[1], args[2], args[3]
   if not (sk and ck and gk) then error("mixed.lua: STATUS_KEY CACHE_KEY GEN_KEY after --") end
   local function auth(k) return { ["Authorization"] = "Bearer " .. k } end
   reqs[1] = wrk.format("GET", "/api/v1/health")
   reqs[2] = wrk.format("GET", "/api/v1/quota/status", auth(sk))
   reqs[3] = wrk.format("GET", "/api/v1/cache/content/bench-1k", auth(ck))
   reqs[4] = wrk.format("POST", "/api/v1/generate",
      { ["Authorization"] = "Bearer " .. gk, ["Content-Type"] = "application/json" },
      '{"task":"cover_letter","prompt":"bench prompt","cache_key":"bench-hit"}')
   i = (tonumber(tindex) or 0) % 4
end

function request()
   i = i % 4 + 1
   _G["sent_" .. i] = _G["sent_" .. i] + 1
   return reqs[i]
end

-- answers of different connections interleave, so the kind of a response is
-- told from its body: only /generate answers carry "cached"
function response(status, headers, body)
   if status < 200 or status > 299 then
      bad = bad + 1
      note_status(status)
      return
   end
   if string.find(body, '"cached":false', 1, true) then
      gen_not_cached = gen_not_cached + 1
   end
end

function done(summary, latency, requests)
   local t, st = totals({ "sent_1", "sent_2", "sent_3", "sent_4", "bad", "gen_not_cached" })
   io.write(string.format(
      "bench-note: health=%d status=%d cache_get=%d generate_hit=%d non2xx=%d " ..
      "generate_not_cached=%d statuses=%s\n",
      t.sent_1, t.sent_2, t.sent_3, t.sent_4, t.bad, t.gen_not_cached, st))
end
