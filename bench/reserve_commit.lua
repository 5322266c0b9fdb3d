-- reserve_commit.lua - wrk script for the "reserve + commit pair" subjects of
-- SPEC §8.  Usage:
--
--     wrk ... -s bench/reserve_commit.lua URL -- @KEYFILE     (one API key a line)
--     wrk ... -s bench/reserve_commit.lua URL -- KEY [KEY...]
--
-- (only URL's host and port are used; the two paths are set here).
--
-- Every HTTP request is one operation: POST /api/v1/quota/reserve, then POST
-- /api/v1/quota/commit {"reservation_id": ID, "actual_tokens": 10} for the ID
-- the reserve returned, sent with the SAME key that reserved it.  Reserves
-- pick the keys round-robin (each wrk thread starts at a different offset),
-- so with N keys the load is spread over N users' counter rows; with one key
-- it is the single-user (one hot row set) case.
--
-- wrk 4.1 gives a script no connection identity: request() and response()
-- of the connections of one thread interleave in its event loop, so a
-- response cannot be matched to the request (and key) that caused it.  The
-- reserve therefore carries the key's index in its body, as max_tokens =
-- 100000 + index: the answer's "estimate" is max(task table value, prompt
-- characters / 4 + max_tokens) = 100000 + index (task "bench" uses the
-- 'default' row, 1,500), and response() reads the index back from it.  The
-- users have no-limit overrides, so the larger estimate never refuses.
--
-- Each thread (its own Lua state) keeps a FIFO of {id, key index} seen in
-- response(); request() commits the oldest pending one if there is one and
-- reserves otherwise.  Every id a reserve returns is committed by some
-- connection of the same thread, with its own key; only the ids still in
-- flight or queued when wrk stops stay active (at most about one per
-- connection; bench/run.sh reports how many).  Counters are read back per
-- thread in done() and printed as one "bench-note:" line.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local EST_BASE = 100000
local keys = {}
nkeys = 0                         -- global: done() reads it from a thread
local rr = 0                      -- round-robin position of this thread
local queue, qhead, qtail = {}, 1, 0
local hdrs = {}                   -- per key index: the request headers

reserves, commits, ok_reserves, ok_commits = 0, 0, 0, 0
non2xx, no_id, unmapped, statuses = 0, 0, 0, ""

local function add_key(k)
   k = k and string.match(k, "^%s*(.-)%s*$")
   if k and k ~= "" then
      nkeys = nkeys + 1
      keys[nkeys] = k
   end
end

function init(args)
   for _, a in ipairs(args) do
      if string.sub(a, 1, 1) == "@" then
         local f = assert(io.open(string.sub(a, 2), "r"))
         for line in f:lines() do add_key(line) end
         f:close()
      else
         add_key(a)
      end
   end
   if nkeys == 0 then add_key(os.getenv("QC_BENCH_KEY")) end
   if nkeys == 0 then
      error("reserve_commit.lua: pass API keys (or @FILE) after --")
   end
   for i = 1, nkeys do
      hdrs[i] = {
         ["Authorization"] = "Bearer " .. keys[i],
         ["Content-Type"] = "application/json",
      }
   end
   -- threads start at different points of the key list
   rr = ((tonumber(tindex) or 0) * 13) % nkeys
end

function request()
   if qhead <= qtail then
      local e = queue[qhead]
      queue[qhead] = nil
      qhead = qhead + 1
      commits = commits + 1
      return wrk.format("POST", "/api/v1/quota/commit", hdrs[e[2]],
         '{"reservation_id":"' .. e[1] .. '","actual_tokens":10}')
   end
   local i = rr + 1                 -- 1-based key index
   rr = (rr + 1) % nkeys
   reserves = reserves + 1
   return wrk.format("POST", "/api/v1/quota/reserve", hdrs[i],
      '{"task_type":"bench","max_tokens":' .. (EST_BASE + i - 1) .. '}')
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      note_status(status)
      return
   end
   if status == 201 then
      local id = body and string.match(body, '"reservation_id"%s*:%s*"(%x+)"')
      -- the top-level "estimate" comes before the nested "quota" object
      local est = body and tonumber(string.match(body, '"estimate"%s*:%s*(%d+)'))
      if not id then
         no_id = no_id + 1
         return
      end
      local i = est and (est - EST_BASE + 1)
      if not i or i < 1 or i > nkeys then
         unmapped = unmapped + 1
         return
      end
      ok_reserves = ok_reserves + 1
      qtail = qtail + 1
      queue[qtail] = { id, i }
   else
      ok_commits = ok_commits + 1
   end
end

function done(summary, latency, requests)
   local t, st = totals({ "reserves", "commits", "ok_reserves", "ok_commits", "non2xx",
                          "no_id", "unmapped" })
   -- one line that bench/run.sh copies into the report
   io.write(string.format(
      "bench-note: keys=%d reserves_sent=%d commits_sent=%d reserved_201=%d committed_200=%d " ..
      "non2xx=%d reserve_without_id=%d estimate_unmapped=%d statuses=%s\n",
      tonumber(thread_value("nkeys")) or 0, t.reserves, t.commits, t.ok_reserves, t.ok_commits,
      t.non2xx, t.no_id, t.unmapped, st))
end
