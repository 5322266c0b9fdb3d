-- cache_put.lua - wrk script for the cache_put_1k subject.  Usage:
--
--     wrk ... -s bench/cache_put.lua URL -- API_KEY [NKEYS [BYTES [TIER]]]
--
-- PUT /api/v1/cache/TIER/bench-put-N (TIER content by default) with
-- {"value": "<BYTES characters>"} (1024 by default), N cycling over NKEYS
-- keys (1000 by default); the threads start at different points of the
-- cycle.  The first round inserts, later ones overwrite.  Statuses other
-- than 2xx are counted and printed as one "bench-note:" line in done().

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local key, nkeys, bytes, tier
local hdrs, body
local n = 0

puts, ok, non2xx, statuses = 0, 0, 0, ""

function init(args)
   key = args[1]
   if not key or key == "" then error("cache_put.lua: pass the API key after --") end
   nkeys = tonumber(args[2]) or 1000
   bytes = tonumber(args[3]) or 1024
   tier = args[4] or "content"
   hdrs = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
   -- a printable 1 KiB value that compresses like text, not one repeated byte
   local pat = "quotacache bench value 0123456789 abcdefghijklmnopqrstuvwxyz. "
   local v = string.rep(pat, math.floor(bytes / #pat) + 1)
   body = '{"value":"' .. string.sub(v, 1, bytes) .. '"}'
   n = ((tonumber(tindex) or 0) * math.floor(nkeys / 2)) % nkeys
end

function request()
   local path = "/api/v1/cache/" .. tier .. "/bench-put-" .. n
   n = (n + 1) % nkeys
   puts = puts + 1
   return wrk.format("PUT", path, hdrs, body)
end

function response(status, headers, b)
   if status >= 200 and status <= 299 then
      ok = ok + 1
      return
   end
   non2xx = non2xx + 1
   note_status(status)
end

function done(summary, latency, requests)
   local t, st = totals({ "puts", "ok", "non2xx" })
   io.write(string.format("bench-note: puts_sent=%d ok_2xx=%d non2xx=%d statuses=%s\n",
      t.puts, t.ok, t.non2xx, st))
end
