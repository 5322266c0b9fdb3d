"""test_billing.py - billing that cannot be lost or forged (issue 11, SPEC
§11): savings come only from what the billing transaction wrote, only
configured models are called, every fresh answer in the cache was billed in
the same transaction, a late commit records the truth, least privilege."""
import json
import os
import subprocess
import time
import urllib.request

from qc import check, done, get, is_problem, new_user, post, put, sql

MOCK = os.environ["QC_MOCK_URL"]


def mock(path, data=None):
    req = urllib.request.Request(MOCK + path, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def usage(key):
    time.sleep(1.3)   # hits' ledger rows reach the database within a second from every worker
    return get("/api/v1/usage", key=key).json["tasks"]


uid, key, _ = new_user("pro_monthly", prefix="bill")

# --- a hostile user's metadata feeds no figure ------------------------------------
forged = {"total_tokens": 999999, "cost_micro": 123456789, "prompt_tokens": -5, "model": "gpt-5-ultra"}
r = put("/api/v1/cache/content/forged-entry", {"value": "my own text", "metadata": forged}, key=key)
check(r.status in (200, 201), "a user stores an entry with forged cost metadata", r)
r = post("/api/v1/generate", {"task": "forgery", "prompt": "x", "cache_key": "forged-entry"}, key=key)
check(r.status == 200 and r.json["cached"] is True and r.json["cost_usd"] == 0, "generate serves it as a hit", r)
t = usage(key).get("forgery", {})
check(t.get("saved_tokens") == 0 and t.get("saved_usd") == 0 and t.get("cost_usd") == 0,
      "the hit's ledger row saves 0: the metadata is not believed", t)

# a generated entry saves what its generation cost; a user's PUT over it resets that
mock("/_reset", b"")
r1 = post("/api/v1/generate", {"task": "honest", "prompt": "bill me once"}, key=key)
r2 = post("/api/v1/generate", {"task": "honest", "prompt": "bill me once"}, key=key)
t = usage(key).get("honest", {})
billed = r1.json["usage"]["total_tokens"] if r1.status == 200 else -1
check(r2.status == 200 and r2.json["cached"] and t.get("saved_tokens") == billed and billed > 0,
      "a hit on a generated entry saves exactly the tokens its generation was billed", (t, billed))
# --- the billing transaction: every generated entry has its billed ledger row -----
rows = sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {uid} AND gen_tokens > 0")[0][0]
okrows = sql(f"SELECT COUNT(*) FROM usage_events WHERE user_id = {uid} AND outcome = 'ok'")[0][0]
used = sql(f"SELECT used FROM quota_counters WHERE user_id = {uid} AND window_kind = 'month'")[0][0]
ledger = sql(f"SELECT SUM(prompt_tokens + completion_tokens) FROM usage_events WHERE user_id = {uid}")[0][0]
check(rows == okrows == "1" and int(used) == int(ledger),
      "one generated entry, one billed ledger row, counters equal the ledger", (rows, okrows, used, ledger))

ck = r1.json.get("cache_key") if r1.status == 200 else None
put(f"/api/v1/cache/content/{ck}", {"value": "overwritten", "metadata": forged}, key=key)
post("/api/v1/generate", {"task": "honest", "prompt": "bill me once"}, key=key)
t2 = usage(key).get("honest", {})
check(t2.get("saved_tokens") == t.get("saved_tokens"),
      "after the user overwrites it, hits save nothing more", (t, t2))

# --- the same hits with and without forged metadata: every figure equal -------------
def figures(k):
    """savings and counts a user sees: the usage report and the cache stats"""
    tasks = usage(k)
    st = get("/api/v1/cache/stats", key=k).json or {}

    def strip(o):   # bytes differ with the metadata's size; nothing else may
        if isinstance(o, dict):
            return {a: strip(b) for a, b in o.items() if a not in ("bytes", "scope", "generated_at")}
        if isinstance(o, list):
            return [strip(x) for x in o]
        return o
    return tasks, strip(st)


pair = []
for meta in (forged, {"note": "plain"}):
    _, k, _ = new_user("pro_monthly", prefix="twin")
    put("/api/v1/cache/content/twin", {"value": "the same text", "metadata": meta}, key=k)
    put("/api/v1/cache/session/twin", {"value": "the same text", "metadata": meta}, key=k)
    for path in ("/api/v1/cache/content/twin", "/api/v1/cache/session/twin", "/api/v1/cache/content/none"):
        get(path, key=k)
    post("/api/v1/generate", {"task": "twin", "prompt": "x", "cache_key": "twin"}, key=k)
    post("/api/v1/generate", {"task": "twin", "prompt": "x", "cache_key": "twin", "cache_tier": "session"}, key=k)
    pair.append(figures(k))
check(pair[0] == pair[1] and pair[0][0].get("twin", {}).get("calls") == 2,
      "a user with forged metadata and one without, same hits: /usage and the cache stats "
      "(hits, misses, savings) are identical", pair)

# --- only configured models are called ------------------------------------------------
mock("/_reset", b"")
before = get("/api/v1/quota/status", key=key).json["hourly_calls"]["used"]
r = post("/api/v1/generate", {"task": "m", "prompt": "p", "model": "the-most-expensive-model"}, key=key)
check(is_problem(r, 400) and "'model'" in r.json["detail"], "an unconfigured model: 400 naming the field", r)
after = get("/api/v1/quota/status", key=key).json["hourly_calls"]["used"]
check(after == before and mock("/_calls")["total"] == 0, "... nothing reserved, nothing called", (before, after))
r = post("/api/v1/generate", {"task": "m", "prompt": "a second model", "model": "gpt-4o-mini"}, key=key)
u = r.json["usage"] if r.status == 200 else {}
# dollars per 1K tokens, answered in whole micro-dollars
want = round((u.get("prompt_tokens", 0) * 0.00015 + u.get("completion_tokens", 0) * 0.0006) * 1000) / 1e6
check(r.status == 200 and abs(r.json["cost_usd"] - want) < 1e-9,
      "a second configured model is called and priced at its own price", (r, want))
m = get("/api/v1/models", key=key)
ids = [x["id"] for x in m.json["data"]] if m.status == 200 else []
check(ids == ["mock-model", "gpt-4o-mini"] and m.json["data"][0]["default"] is True,
      "GET /api/v1/models lists the configured models with prices", m)
r = get("/api/v1/models")
check(is_problem(r, 401), "GET /api/v1/models without a key: 401", r)
r = get("/api/v1/models", key="qck_" + "x" * 32)
check(is_problem(r, 401), "GET /api/v1/models with a bad key: 401", r)
r = post("/api/v1/models", {}, key=key)
check(is_problem(r, 405), "POST /api/v1/models: 405", r)
# a plan restricted to one model
sql("INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
    " session_ttl_seconds, content_ttl_seconds, sort_order, models)"
    " VALUES ('test_onemodel', 'One model', NULL, NULL, NULL, 1800, 3600, 98, 'mock-model')")
rid, rkey, _ = new_user("test_onemodel", prefix="onemodel")
m = get("/api/v1/models", key=rkey)
check(m.status == 200 and [x["id"] for x in m.json["data"]] == ["mock-model"],
      "a plan restricted to one model lists only it", m)
r = post("/api/v1/generate", {"task": "m", "prompt": "p", "model": "gpt-4o-mini"}, key=rkey)
check(is_problem(r, 400) and "plan" in r.json["detail"], "... and another model is a 400 for it", r)
sql(f"UPDATE users SET plan = 'payg' WHERE id = {rid}; DELETE FROM plans WHERE name = 'test_onemodel'")

# --- least privilege: the workers' database user has no DDL -------------------------
var = os.environ["QC_VAR"]
pw = open(os.path.join(var, "secrets", "db_password")).read().strip()
p = subprocess.run(["mariadb", "--no-defaults", "-u", "quotacache", f"-p{pw}",
                    f"--socket={var}/mariadb/mysqld.sock", os.environ.get("QC_DB_NAME", "quotacache"),
                    "-e", "CREATE TABLE evil (i INT)"], capture_output=True, text=True)
check(p.returncode != 0 and "denied" in p.stderr, "the workers' user cannot create a table", p.stderr)
p = subprocess.run(["mariadb", "--no-defaults", "-u", "quotacache", f"-p{pw}",
                    f"--socket={var}/mariadb/mysqld.sock", "-N", "-e", "SHOW GRANTS"],
                   capture_output=True, text=True)
check(p.returncode == 0 and "ALL PRIVILEGES" not in p.stdout and "EXECUTE" in p.stdout,
      "its grants: rows and EXECUTE only", p.stdout)

# --- a late commit records the truth ----------------------------------------------------
lid, lkey, _ = new_user("payg", prefix="late")
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=lkey)
res_id = r.json.get("reservation_id") if r.status == 201 else None
sql(f"UPDATE quota_reservations SET expires_at = expires_at - 100000 WHERE id = '{res_id}'")
sql("CALL qc_expire_all(UNIX_TIMESTAMP())")
r = post("/api/v1/quota/commit", {"reservation_id": res_id, "actual_tokens": 777}, key=lkey)
s = get("/api/v1/quota/status", key=lkey).json
check(r.status == 200 and s["daily"]["used"] == 777 and s["daily"]["reserved"] == 0,
      "a commit after its reservation expired still records the 777 tokens", (r, s["daily"]))
# --- a ledger row the database refuses never blocks the rows behind it --------------
pid_, pkey, _ = new_user("pro_monthly", prefix="poison")
put("/api/v1/cache/content/p1", {"value": "v"}, key=pkey)
# (a NOT NULL column set to NULL: an error the database raises for that row only)
sql("CREATE TRIGGER qc_test_poison BEFORE INSERT ON usage_events FOR EACH ROW"
    " SET NEW.cached = IF(NEW.task = 'poison', NULL, NEW.cached)")
try:
    for task in ("fine", "poison", "fine", "fine"):
        post("/api/v1/generate", {"task": task, "prompt": "x", "cache_key": "p1"}, key=pkey)
    get("/api/v1/usage", key=pkey)   # flushes this worker's rows now
    import time  # noqa: E402
    time.sleep(1.6)                  # and the other workers' within a second
    n = {r[0]: int(r[1]) for r in sql(f"SELECT task, COUNT(*) FROM usage_events WHERE user_id = {pid_} GROUP BY task")}
finally:
    sql("DROP TRIGGER IF EXISTS qc_test_poison")
check(n.get("fine") == 3 and "poison" not in n,
      "a refused ledger row is dropped (logged, counted) and the 3 rows batched with it are written", n)

# --- every procedure rolls back on an error inside it ----------------------------------
var_cnf = os.path.join(var, "mariadb", "my.cnf")
dbname = os.environ.get("QC_DB_NAME", "quotacache")


def session(stmts):
    # statements on stdin, one session: --force goes on after an error
    p = subprocess.run(["mariadb", f"--defaults-file={var_cnf}", "--force", "-N", "-B", dbname],
                       input="DROP TRIGGER IF EXISTS qc_test_fail;\n" + stmts.replace("; ", ";\n") +
                       "\nDROP TRIGGER IF EXISTS qc_test_fail;\n", capture_output=True, text=True)
    return p.stdout.split(), p.stderr


sid_, skey, _ = new_user("pro_monthly", prefix="rollback")
put("/api/v1/cache/content/r1", {"value": "keep me"}, key=skey)
out, err = session("CREATE TRIGGER qc_test_fail BEFORE UPDATE ON cache_usage FOR EACH ROW"
                   f" SET NEW.bytes = IF(NEW.user_id = {sid_}, NULL, NEW.bytes);"
                   f" CALL qc_cache_remove({sid_}, 1, UNIX_TIMESTAMP()); SELECT @@in_transaction;"
                   " DROP TRIGGER qc_test_fail;")
left = sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id = {sid_}")[0][0]
check("cannot be null" in err and out[-1:] == ["0"] and left == "1",
      "qc_cache_remove: an error inside rolls back, no transaction left open, nothing deleted", (out, err, left))
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=skey)
rid2 = r.json.get("reservation_id") if r.status == 201 else "x"
sql(f"UPDATE quota_reservations SET expires_at = 1 WHERE id = '{rid2}'")
out, err = session("CREATE TRIGGER qc_test_fail BEFORE UPDATE ON quota_reservations FOR EACH ROW"
                   f" SET NEW.state = IF(NEW.user_id = {sid_}, NULL, NEW.state);"
                   " CALL qc_expire_all(UNIX_TIMESTAMP()); SELECT @@in_transaction;"
                   f" CALL qc_settle('{rid2}', {sid_}, 5, UNIX_TIMESTAMP(), NULL, NULL); SELECT @@in_transaction;"
                   " DROP TRIGGER qc_test_fail;")
state = sql(f"SELECT state FROM quota_reservations WHERE id = '{rid2}'")[0][0]
res = sql(f"SELECT reserved FROM quota_counters WHERE user_id = {sid_} AND window_kind = 'day'")
check(err.count("cannot be null") >= 2 and out.count("0") >= 2 and out[-2:] == ["0", "0"] and state == "active"
      and res and int(res[0][0]) > 0,
      "qc_expire_all and qc_settle: an error inside rolls back, no transaction left open, nothing settled",
      (out, err, state, res))
sql(f"CALL qc_expire_all(UNIX_TIMESTAMP())")

# --- the database is never waited on forever: a held row lock -> 503 ----------------
if os.environ.get("QC_SERVER", "lighttpd") == "lighttpd":
    wid, wkey, _ = new_user("pro_monthly", prefix="lockwait")
    post("/api/v1/quota/reserve", {"task_type": "x"}, key=wkey)   # its counter rows exist
    holder = subprocess.Popen(["mariadb", f"--defaults-file={var_cnf}", dbname],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              text=True)
    holder.stdin.write(f"BEGIN; SELECT * FROM quota_counters WHERE user_id = {wid} FOR UPDATE;"
                       " SELECT SLEEP(12); ROLLBACK;\n")
    holder.stdin.flush()
    import time  # noqa: E402
    time.sleep(0.5)
    r = post("/api/v1/quota/reserve", {"task_type": "x"}, key=wkey, timeout=60)
    holder.stdin.close()
    holder.wait(30)
    check(is_problem(r, 503) and r.header("retry-after") is not None,
          "a row lock held elsewhere: the reserve gives up within its retry budget with 503 + Retry-After", r)
    r = post("/api/v1/quota/reserve", {"task_type": "x"}, key=wkey)
    check(r.status == 201, "once the lock is gone the same reserve is admitted", r)
done()
