-- common.lua - what every bench/*.lua wrk script shares; each loads it with
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
-- It defines setup() (wrk calls it per thread), note_status() for answers
-- outside the 2xx a script expects, and totals() for done().

statuses = ""                 -- global: done() reads it from every thread
local status_seen = {}
local threads = {}

function setup(thread)
   thread:set("tindex", #threads)
   table.insert(threads, thread)
end

-- Remember an unexpected status once per thread (run.sh reports them).
function note_status(status)
   if not status_seen[status] then
      status_seen[status] = true
      statuses = statuses .. (statuses == "" and "" or ",") .. status
   end
end

-- Sum the named per-thread counters; returns the sums and the statuses seen
-- ("-" when none).
function totals(names)
   local t, st = {}, {}
   for _, k in ipairs(names) do t[k] = 0 end
   for _, thread in ipairs(threads) do
      for _, k in ipairs(names) do t[k] = t[k] + (tonumber(thread:get(k)) or 0) end
      local s = thread:get("statuses")
      if s and s ~= "" then table.insert(st, s) end
   end
   return t, #st > 0 and table.concat(st, ",") or "-"
end

-- The first value of var over the threads that set it (e.g. a key count).
function thread_value(var)
   for _, thread in ipairs(threads) do
      local v = thread:get(var)
      if v ~= nil then return v end
   end
end

-- One "bench-stats:" line for done(): wrk's own totals and the exact mean
-- latency (wrk prints it rounded to 3 digits); bench/run.sh reads mean_us for
-- the in-flight subjects' c / mean latency.
function print_stats(summary, latency)
   local e = summary.errors
   io.write(string.format(
      "bench-stats: requests=%d duration_us=%d mean_us=%.1f max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, summary.duration, latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
