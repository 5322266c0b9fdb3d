"""test_admin.py - the admin console's routes and the audit log (SPEC §14,
issue 15 items 1 and 2): create users (the key shown once), search them,
change plans, issue keys (with an expiry) and revoke them, disable and enable
users, overrides, purge a user's cache, edit the system tier; every change
through the API or quotacachectl leaves an audit row (who, what, when, before
-> after); hostile input gets problem+json."""
import json
import os
import secrets
import time
import urllib.parse
from datetime import datetime, timezone

from qc import check, ctl, done, get, is_problem, new_user, post, put, request, sql_write

admin_id, admin_key, admin_email = new_user("enterprise", admin=True, prefix="cadmin")
plain_id, plain_key, _ = new_user("pro_monthly", prefix="cplain")
tag = secrets.token_hex(4)
A = "/api/v1/admin"


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def delete(path, key=admin_key):
    return request("DELETE", path, key=key)


def post0(path, key=admin_key):
    return request("POST", path, raw=b"", key=key)


def audit(**q):
    return get(f"{A}/audit?" + urllib.parse.urlencode(q), key=admin_key).json


def authed(key):
    return get("/api/v1/me", key=key).status == 200


# --- only admins ------------------------------------------------------------------
for method, path in (("GET", f"{A}/users"), ("GET", f"{A}/users/{plain_id}"), ("GET", f"{A}/audit"),
                     ("GET", f"{A}/system-prompts"), ("POST", f"{A}/users/{plain_id}/disable")):
    r = request(method, path, raw=b"" if method == "POST" else None, key=plain_key)
    check(is_problem(r, 403), f"{method} {path} with a user's key: 403")

# --- create: the key once, in the answer ----------------------------------------------
hostile = f'<img/src=x/onerror=alert(1)>{tag}@example.com'
r = post(f"{A}/users", {"email": hostile, "plan": "payg"}, key=admin_key)
check(r.status == 201 and r.json["email"] == hostile and r.json["plan"] == "payg" and r.json["key"].startswith("qck_")
      and r.header("cache-control") == "no-store", "create a user: 201, the key once, no-store", r)
uid, ukey = (r.json["id"], r.json["key"]) if r.status == 201 else (0, "")
check(authed(ukey), "the new key authenticates")
check(get(f"{A}/users/{uid}", key=admin_key).json.get("key") is None, "the key is never shown again")
for body, what in (({"email": "x", "plan": "payg"}, "a bad email"), ({"email": f"a{tag}@b.c", "plan": "gold"}, "no such plan"),
                   ({"email": f"a{tag}@b.c"}, "no plan"), ({"email": f"a{tag}@b.c", "plan": "payg", "admin": "yes"}, "admin as text"),
                   ({"email": f"a{tag}@b.c", "plan": "payg", "role": "admin"}, "an unknown member"),
                   ({"email": f"a{tag}@b.c", "plan": "payg", "key_expires_at": "2001-01-01T00:00:00Z"}, "a past expiry"),
                   ({"email": "a b@c.d", "plan": "payg"}, "a space in the email"),
                   ({"email": "x" * 300 + "@example.com", "plan": "payg"}, "an email of 312 bytes"),
                   ({"email": f"n{tag}@b.c", "plan": "payg", "key_expires_at": "soon"}, "a key end that is no time"),
                   ({"email": 5, "plan": "payg"}, "a number for the email")):
    check(is_problem(post(f"{A}/users", body, key=admin_key), 400), f"create with {what}: 400")
check(is_problem(post(f"{A}/users", {"email": hostile, "plan": "payg"}, key=admin_key), 409), "the same email: 409")
for path, method in ((f"{A}/users", "POST"), (f"{A}/users/{uid}/keys", "POST"), (f"{A}/system-prompts/x", "PUT")):
    check(is_problem(request(method, path, raw=b"{not json", key=admin_key), 400)
          and is_problem(request(method, path, raw=b"[1, 2]", key=admin_key), 400),
          f"{method} {path.replace(str(uid), '{id}')} with malformed JSON or not an object: 400")
check(is_problem(request("POST", f"{A}/users", raw=b'{"email":"' + b"e" * (5 << 20) + b'"}', key=admin_key), 413),
      "a body over max_body: 413")
check(is_problem(request("POST", "/api/v1/admin/warming/run", raw=b"", key=plain_key), 403),
      "the warming sweep with a user's key: 403")

# --- search and page ----------------------------------------------------------------------
for i in range(3):
    post(f"{A}/users", {"email": f"page{i}-{tag}@example.com", "plan": "freemium"}, key=admin_key)
r = get(f"{A}/users?q={tag}&per_page=2", key=admin_key)
check(r.status == 200 and r.json["total"] == 4 and len(r.json["users"]) == 2 and r.json["page"] == 1,
      "search by email fragment, 2 a page: 4 in all", r.json)
r2 = get(f"{A}/users?q={tag}&per_page=2&page=2", key=admin_key).json
check(len(r2["users"]) == 2 and not {u["id"] for u in r2["users"]} & {u["id"] for u in r.json["users"]},
      "page 2 holds the other two")
check(get(f"{A}/users?q=%25&per_page=1", key=admin_key).json["total"] == 0,
      "the search text is literal: '%' matches no email")
for bad in ("page=0", "per_page=500", "page=x", "q=" + "a" * 300):
    check(is_problem(get(f"{A}/users?{bad}", key=admin_key), 400), f"users?{bad[:20]}: 400")
# bytes that are not UTF-8: lighttpd refuses the URL itself; Apache passes it to the worker
check(get(f"{A}/users?q=%ff%fe", key=admin_key).status == 400, "users?q=%ff%fe (not UTF-8): 400")

# --- plan, disable, enable ------------------------------------------------------------------
r = put(f"/api/v1/quota/users/{uid}/plan", {"plan": "pro_monthly"}, key=admin_key)
check(r.status == 200, "change the plan", r)
r = post0(f"{A}/users/{uid}/disable")
check(r.status == 200 and r.json["disabled"] is True, "disable", r)
time.sleep(1.2)   # the workers' key cache (auth_cache_seconds = 1 here)
check(not authed(ukey), "a disabled user's key no longer authenticates")
check(is_problem(post0(f"{A}/users/{admin_id}/disable"), 409), "an admin cannot disable their own account")
r = post0(f"{A}/users/{uid}/enable")
check(r.status == 200 and r.json["disabled"] is False and authed(ukey), "enable: the key works again", r)
check(is_problem(post0(f"{A}/users/99999999/disable"), 404) and is_problem(get(f"{A}/users/abc", key=admin_key), 404),
      "an unknown user: 404")

# --- keys: issue with an expiry, revoke -----------------------------------------------------
r = post(f"{A}/users/{uid}/keys", {"expires_at": iso(int(time.time()) + 3)}, key=admin_key)
check(r.status == 201 and r.json["key"].startswith(r.json["prefix"]) and r.json["expires_at"],
      "issue a key that ends in 3 s", r)
k2, p2 = (r.json["key"], r.json["prefix"]) if r.status == 201 else ("", "")
check(authed(k2), "it authenticates before its end")
time.sleep(4.2)
check(not authed(k2), "and not after it (its end plus the key cache)")
r = post(f"{A}/users/{uid}/keys", {}, key=admin_key)
k3, p3 = r.json["key"], r.json["prefix"]
check(r.status == 201 and r.json["expires_at"] is None and authed(k3), "issue a key without an end", r)
keys = get(f"{A}/users/{uid}", key=admin_key).json["keys"]
check(len(keys) == 3 and all("key" not in k for k in keys) and any(k["expires_at"] for k in keys),
      "the user's keys: prefixes and ends only", keys)
check(delete(f"{A}/keys/{p3}").status == 204, "revoke by prefix")
time.sleep(1.2)
check(not authed(k3), "a revoked key no longer authenticates")
check(is_problem(delete(f"{A}/keys/{p3}"), 404), "revoke twice: 404")
check(is_problem(delete(f"{A}/keys/{urllib.parse.quote(k2)}"), 404), "a whole key in the URL is refused (404)")
for bad in ({"expires_at": "yesterday"}, {"expires_at": "2001-01-01T00:00:00Z"}, {"valid": 1}):
    check(is_problem(post(f"{A}/users/{uid}/keys", bad, key=admin_key), 400), f"issue a key with {bad}: 400")

# --- overrides and cache purge ------------------------------------------------------------
r = put(f"/api/v1/quota/users/{uid}/override", {"tokens_per_day": 123456, "reason": "loyal <b>customer</b>",
                                                "expires_at": iso(int(time.time()) + 86400)}, key=admin_key)
check(r.status == 200, "set an override", r)
check(delete(f"/api/v1/quota/users/{uid}/override").status == 204, "clear it")
put("/api/v1/cache/session/one", {"value": "x"}, key=ukey)
put("/api/v1/cache/content/two", {"value": "y"}, key=ukey)
lst = get(f"{A}/users/{uid}/cache", key=admin_key)
check(lst.status == 200 and sorted((e["tier"], e["key"]) for e in lst.json) == [("content", "two"), ("session", "one")]
      and all(e["bytes"] > 0 and "value" not in e for e in lst.json), "the user's cache entries, without values", lst)
check(is_problem(get(f"{A}/users/99999999/cache", key=admin_key), 404)
      and is_problem(get(f"{A}/users/{uid}/cache?limit=0", key=admin_key), 400), "unknown user 404, bad limit 400")
r = delete(f"{A}/users/{uid}/cache")
check(r.status == 200 and r.json["deleted"] == 2 and get(f"{A}/users/{uid}/cache", key=admin_key).json == [],
      "purge the user's cache: 2 entries, none left", r)
check(get("/api/v1/cache/session/one", key=ukey).status == 404, "gone")

# --- the system tier ------------------------------------------------------------------------
sk = f"prompt-{tag}"
r = put(f"{A}/system-prompts/{sk}", {"value": "You write <b>CVs</b>."}, key=admin_key)
check(r.status == 200 and r.json["bytes"] == 21, "store a system prompt", r)
r = put(f"{A}/system-prompts/{sk}", {"value": "You write CVs, briefly."}, key=admin_key)
lst = get(f"{A}/system-prompts", key=admin_key).json
check(any(e["key"] == sk and e["value"] == "You write CVs, briefly." for e in lst), "the list shows the new value")
check(is_problem(put(f"{A}/system-prompts/{sk}", {"value": 5}, key=admin_key), 400)
      and is_problem(put(f"{A}/system-prompts/{sk}", {"value": "x", "ttl": 5}, key=admin_key), 400),
      "a value that is not text, an unknown member: 400")
check(is_problem(put(f"{A}/system-prompts/{sk}", {"value": "z" * (2 << 20)}, key=admin_key), 413),
      "larger than cache_max_entry: 413")
check(delete(f"{A}/system-prompts/{sk}").status == 204 and is_problem(delete(f"{A}/system-prompts/{sk}"), 404),
      "delete it; again: 404")

# --- the audit log ------------------------------------------------------------------------
log = audit(user_id=uid, per_page=100)["entries"]
acts = [e["action"] for e in reversed(log)]
check(acts == ["user.create", "user.plan", "user.disable", "user.enable", "key.issue", "key.issue", "key.revoke",
               "override.set", "override.clear", "cache.purge"],
      "every change to the user is in the audit log, in order", acts)
by = {e["action"]: e for e in log}
check(all(e["actor"] == admin_email and e["source"] == "api" for e in log), "each says who (the admin, through the API)")
check(by["user.plan"]["before"] == {"plan": "payg"} and by["user.plan"]["after"] == {"plan": "pro_monthly"},
      "before -> after of a plan change", by["user.plan"])
check(by["override.set"]["before"] is None and by["override.set"]["after"]["tokens_per_day"] == 123456
      and by["override.set"]["after"]["reason"] == "loyal <b>customer</b>"
      and by["override.clear"]["before"]["tokens_per_day"] == 123456 and by["override.clear"]["after"] is None,
      "overrides: before and after, the reason as given", (by["override.set"], by["override.clear"]))
check(by["user.create"]["after"]["email"] == hostile and "key" not in by["user.create"]["after"]
      and by["user.create"]["after"]["key_prefix"].startswith("qck_"),
      "the creation: the user and the key's prefix, never the key")
check(by["cache.purge"]["after"] == {"deleted": 2}, "the purge: how many")
sysl = audit(action="system.", per_page=10)["entries"]
mine = [e for e in sysl if e["target"] == sk]
check([e["action"] for e in reversed(mine)] == ["system.put", "system.put", "system.delete"]
      and mine[2]["before"] is None and mine[2]["after"]["value"] == "You write <b>CVs</b>."
      and mine[1]["before"]["value"] == "You write <b>CVs</b>." and mine[1]["after"]["value"] == "You write CVs, briefly."
      and mine[0]["before"]["value"] == "You write CVs, briefly." and mine[0]["after"] is None,
      "system prompts: each edit with the value before and after (filter by action family)", mine)
page = audit(actor=admin_email, per_page=3)
check(page["total"] >= 13 and len(page["entries"]) == 3, "filter by actor, paged", page["total"])
for bad in ("action=DROP%20TABLE", "since=yesterday", "user_id=0", "per_page=1000", "action=" + "a" * 100,
            "actor=" + "b" * 400):
    check(is_problem(get(f"{A}/audit?{bad}", key=admin_key), 400), f"audit?{bad[:24]}: 400")
r = get(f"{A}/audit?since={iso(int(time.time()) + 3600)}", key=admin_key)
check(r.status == 200 and r.json["total"] == 0, "since an hour ahead: nothing")

# --- quotacachectl: the same actions, audited as the CLI ------------------------------------
_, out, _ = ctl("user", "add", "--email", f"cli-{tag}@example.com", "--plan", "payg")
_, lst, _ = ctl("user", "list")
cid = next(int(line.split("\t")[0]) for line in lst.splitlines() if f"cli-{tag}@" in line)
ctl("user", "set-plan", "--id", str(cid), "--plan", "pro_annual")
ctl("user", "disable", "--id", str(cid))
ctl("user", "enable", "--id", str(cid))
_, kout, _ = ctl("key", "add", "--id", str(cid), "--expires", iso(int(time.time()) + 86400))
ctl("key", "revoke", kout.strip()[:12])
ctl("quota", "set-override", "--id", str(cid), "--day", "999", "--reason", "cli test")
ctl("quota", "clear-override", "--id", str(cid))
ctl("cache", "purge", "--id", str(cid))
clog = audit(user_id=cid, per_page=50)["entries"]
check([e["action"] for e in reversed(clog)] == ["user.create", "user.plan", "user.disable", "user.enable", "key.issue",
                                                "key.revoke", "override.set", "override.clear", "cache.purge"]
      and all(e["source"] == "cli" and e["actor"].startswith("cli:") for e in clog),
      "quotacachectl's changes are audited too, as cli:LOGIN", [(e["action"], e["actor"]) for e in clog])
_, aout, _ = ctl("audit", "--id", str(cid), "--limit", "3")
check(aout.splitlines()[0].startswith("id\tat\tactor") and len(aout.splitlines()) == 4
      and "cache.purge" in aout.splitlines()[1], "quotacachectl audit lists them, newest first", aout)
_, sout, _ = ctl("user", "show", "--id", str(cid))
shown = json.loads(sout)

# --- the console's charts: spend per day and plan, users nearest their limits ---------------
if os.environ.get("QC_TEST_CLOCK_BUILD") == "1":
    T = 2002000000 + 3600               # a day of its own (2033-06-10)
    sql_write(f"INSERT IGNORE INTO plans (name, display_name, tokens_per_day, tokens_per_month, calls_per_hour,"
              f" session_ttl_seconds, content_ttl_seconds, sort_order) VALUES ('spend_{tag}', 'Spend test',"
              f" 1000000, NULL, NULL, 3600, 3600, 91), ('tiny_{tag}', 'Tiny test', 30, NULL, NULL, 3600, 3600, 90)")
    try:
        sid, skey, _ = new_user(f"spend_{tag}", prefix="spend")
        tid, tkey, _ = new_user(f"tiny_{tag}", prefix="tiny")
        hdr = {"X-QC-Test-Now": str(T)}
        gens = [post("/api/v1/generate", {"task": "cv", "prompt": p}, key=skey, headers=hdr)
                for p in ("spend one", "spend two", "spend one")]
        refused = post("/api/v1/generate", {"task": "cv", "prompt": "too big " * 40}, key=tkey, headers=hdr)
        check([g.status for g in gens] == [200] * 3 and gens[2].json["cached"] and refused.status == 429,
              "two misses and a hit on one plan, a refusal on another", (gens, refused))
        want_billed = sum(g.json["cost_usd"] for g in gens[:2])
        rows = {}
        for _ in range(40):   # hits and refusals reach the ledger within about a second
            got = get("/api/v1/admin/spend?days=3", key=admin_key, headers=hdr).json
            rows = {x["plan"]: x for x in got["days"] if x["plan"] in (f"spend_{tag}", f"tiny_{tag}")}
            if rows.get(f"spend_{tag}", {}).get("calls") == 3 and rows.get(f"tiny_{tag}", {}).get("refusals") == 1:
                break
            time.sleep(0.25)
        sp = rows.get(f"spend_{tag}", {})
        check(got["to"] == "2033-06-10" and got["from"] == "2033-06-08" and sp.get("day") == "2033-06-10"
              and sp.get("calls") == 3 and abs(sp.get("billed_usd", 0) - want_billed) < 1e-9
              and abs(sp.get("saved_usd", 0) - gens[0].json["cost_usd"]) < 1e-9,
              "spend per day and plan: calls, billed and saved dollars", (got.get("from"), got.get("to"), sp))
        check(rows.get(f"tiny_{tag}", {}).get("refusals") == 1, "... and quota refusals", rows.get(f"tiny_{tag}"))
        check(is_problem(get("/api/v1/admin/spend?days=0", key=admin_key), 400)
              and is_problem(get("/api/v1/admin/spend", key=plain_key), 403), "spend: bad days 400, a user's key 403")
        near = get("/api/v1/admin/nearest?limit=500", key=admin_key).json
        check(isinstance(near, list) and all({"user_id", "email", "percent", "override_expires_at"} <= set(x) for x in near)
              and [x["percent"] for x in near] == sorted((x["percent"] for x in near), reverse=True),
              "users nearest their limits, most used first", near[:3])
        check(is_problem(get("/api/v1/admin/nearest?limit=0", key=admin_key), 400), "nearest: bad limit 400")
    finally:
        sql_write(f"UPDATE users SET plan = 'payg' WHERE plan IN ('spend_{tag}', 'tiny_{tag}')")
        sql_write(f"DELETE FROM plans WHERE name IN ('spend_{tag}', 'tiny_{tag}')")
check(shown["plan"] == "pro_annual" and shown["disabled"] is False and len(shown["keys"]) == 2,
      "quotacachectl user show", sout[:300])
done()
