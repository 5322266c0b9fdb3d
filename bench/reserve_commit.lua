-- reserve_commit.lua - wrk script for the "reserve + commit pair" subject of
-- SPEC §8.  Usage:  wrk ... -s bench/reserve_commit.lua URL -- API_KEY
-- (only URL's host and port are used; the two paths are set here).
--
-- Every HTTP request is one operation: POST /api/v1/quota/reserve
-- {"task_type":"bench"}, then POST /api/v1/quota/commit
-- {"reservation_id": ID, "actual_tokens": 10} for the ID the reserve returned.
--
-- wrk 4.1 gives a script no connection identity: request() and response()
-- of the connections of one thread interleave in its event loop.  So each
-- thread (its own Lua state) keeps a FIFO of reservation ids seen in
-- response(); request() commits the oldest pending id if there is one and
-- reserves otherwise.  Every id a reserve returns is committed by some
-- connection of the same thread; only the ids still in flight or queued
-- when wrk stops stay active (at most about one per connection; bench/run.sh
-- reports how many).  Counters are read back per thread in done().

local key = nil
local queue, qhead, qtail = {}, 1, 0
reserves, commits, ok_reserves, ok_commits = 0, 0, 0, 0
non2xx, no_id, statuses = 0, 0, ""
local status_seen = {}

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   key = args[1] or os.getenv("QC_BENCH_KEY")
   if not key or key == "" then
      error("reserve_commit.lua: pass the API key after --")
   end
end

local function headers()
   return {
      ["Authorization"] = "Bearer " .. key,
      ["Content-Type"] = "application/json",
   }
end

function request()
   local body, path
   if qhead <= qtail then
      local id = queue[qhead]
      queue[qhead] = nil
      qhead = qhead + 1
      path = "/api/v1/quota/commit"
      body = '{"reservation_id":"' .. id .. '","actual_tokens":10}'
      commits = commits + 1
   else
      path = "/api/v1/quota/reserve"
      body = '{"task_type":"bench"}'
      reserves = reserves + 1
   end
   -- responses of different connections interleave: response() tells a
   -- reserve (201 with an id) from a commit (200) by its status
   return wrk.format("POST", path, headers(), body)
end

function response(status, hdrs, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if not status_seen[status] then
         status_seen[status] = true
         statuses = statuses .. (statuses == "" and "" or ",") .. status
      end
      return
   end
   if status == 201 then
      local id = body and string.match(body, '"reservation_id"%s*:%s*"(%x+)"')
      if id then
         ok_reserves = ok_reserves + 1
         qtail = qtail + 1
         queue[qtail] = id
      else
         no_id = no_id + 1
      end
   else
      ok_commits = ok_commits + 1
   end
end

function done(summary, latency, requests)
   local t = { reserves = 0, commits = 0, ok_reserves = 0, ok_commits = 0, non2xx = 0, no_id = 0 }
   local st = {}
   for _, thread in ipairs(threads) do
      for k, _ in pairs(t) do
         t[k] = t[k] + (tonumber(thread:get(k)) or 0)
      end
      local s = thread:get("statuses")
      if s and s ~= "" then table.insert(st, s) end
   end
   -- one line that bench/run.sh parses
   io.write(string.format(
      "reserve_commit: reserves_sent=%d commits_sent=%d reserved_201=%d committed_200=%d " ..
      "non2xx=%d reserve_without_id=%d statuses=%s\n",
      t.reserves, t.commits, t.ok_reserves, t.ok_commits, t.non2xx, t.no_id,
      #st > 0 and table.concat(st, ",") or "-"))
end
