-- portkey.lua - wrk script for portkey_miss: OpenAI chat completions through
-- the Portkey gateway (bench/portkey.sh) to the mock upstream.  Usage:
--
--     wrk ... -s bench/portkey.lua http://127.0.0.1:PKPORT/v1/chat/completions \
--         -- http://127.0.0.1:MOCKPORT/v1 [API_KEY]
--
-- Every request: POST /v1/chat/completions with x-portkey-provider: openai,
-- x-portkey-custom-host: the mock's base URL, Authorization: Bearer API_KEY
-- ("sk-mock" by default), body {"model":"mock-model","messages":[{"role":
-- "user","content":PROMPT}]} where PROMPT is new each request ("bench
-- portkey" + $BENCH_PHASE + start time + thread + counter), as generate_miss
-- does, so no cache anywhere could answer (Portkey's cache is off anyway:
-- x-portkey-cache-status DISABLED).
--
-- response() counts 200 answers carrying the mock's echo of a prompt of this
-- script ("echo: bench portkey") and the other statuses; done() prints one
-- "bench-note:" line and the "bench-stats:" line of common.lua.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local hdrs, prefix, path
local n = 0

sent, echo_200, other_200, non2xx, statuses = 0, 0, 0, 0, ""

function init(args)
   local host, key = args[1], args[2] or "sk-mock"
   if not host or host == "" then error("portkey.lua: pass the mock's base URL after --") end
   hdrs = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. key,
      ["x-portkey-provider"] = "openai",
      ["x-portkey-custom-host"] = host,
   }
   path = wrk.path
   local nonce = (os.getenv("BENCH_PHASE") or "run") .. "-" .. os.time()
   prefix = '{"model":"mock-model","messages":[{"role":"user","content":"bench portkey ' ..
      nonce .. " t" .. (tonumber(tindex) or 0) .. " n"
end

function request()
   sent = sent + 1
   n = n + 1
   return wrk.format("POST", path, hdrs, prefix .. n .. '"}]}')
end

function response(status, headers, body)
   if status == 200 then
      if string.find(body, '"echo: bench portkey', 1, true) then
         echo_200 = echo_200 + 1
      else
         other_200 = other_200 + 1
      end
      return
   end
   if status < 200 or status > 299 then non2xx = non2xx + 1 end
   note_status(status)
end

function done(summary, latency, requests)
   local t, st = totals({ "sent", "echo_200", "other_200", "non2xx" })
   io.write(string.format("bench-note: sent=%d echo_200=%d other_200=%d non2xx=%d statuses=%s\n",
      t.sent, t.echo_200, t.other_200, t.non2xx, st))
   print_stats(summary, latency)
end
