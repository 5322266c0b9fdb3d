"""test_quota.py - quotas through lighttpd + MariaDB (issue 3): exact
admission under concurrency, 429 shape, commit/release, admin routes and
hostile input that must change no counter."""
from qc import (check, delete, done, get, is_problem, new_user, parallel, post,
                put, request, sql)

W = ("daily", "monthly", "hourly_calls")


def counters(uid):
    """(day reserved+used, calls this hour) straight from the database."""
    rows = sql(f"SELECT window_kind, used, reserved, calls FROM quota_counters "
               f"WHERE user_id = {int(uid)} ORDER BY window_start")
    out = {}
    for kind, used, reserved, calls in rows:
        out[kind] = (int(used), int(reserved), int(calls))
    return out


def snapshot(key):
    r = get("/api/v1/quota/status", key=key)
    return {w: (r.json[w]["used"], r.json[w]["reserved"]) for w in W}


# --- concurrency: tokens ---------------------------------------------------
# operators tune task_estimates; these two tasks make the arithmetic exact
sql("INSERT INTO task_estimates (task, tokens) VALUES ('race_1000', 1000), ('race_tiny', 1) "
    "ON DUPLICATE KEY UPDATE tokens = VALUES(tokens)")
uid, key, _ = new_user("freemium", prefix="race")
N = 300
res = parallel(N, lambda i: post("/api/v1/quota/reserve", {"task_type": "race_1000"}, key=key))
statuses = [r.status if hasattr(r, "status") else repr(r) for r in res]
ok = [r for r in res if getattr(r, "status", 0) == 201]
refused = [r for r in res if getattr(r, "status", 0) == 429]
check(len(ok) == 10, f"{N} concurrent reserves of 1000 (freemium 10000/day): exactly 10 admitted",
      {s: statuses.count(s) for s in set(statuses)})
check(len(refused) == N - 10, "every other request got 429")
check(ok and all(r.json["estimate"] == 1000 for r in ok), "every admitted estimate is 1000")
c = counters(uid)
check(c.get("day") == (0, 10000, 10) and c.get("month") == (0, 10000, 10) and c.get("hour") == (0, 0, 10),
      "database counters hold exactly the 10 admitted reservations", c)
n_res = sql(f"SELECT COUNT(*) FROM quota_reservations WHERE user_id = {uid} AND state = 'active'")
check(int(n_res[0][0]) == len(ok), "one reservation row per 201", n_res)
check(len({r.json["reservation_id"] for r in ok}) == len(ok), "reservation ids are distinct")
r429 = refused[0] if refused else None
check(r429 is not None and is_problem(r429, 429) and r429.json.get("window") == "daily"
      and r429.json.get("violated-policies") == ["daily"], "429 problem names the daily window", r429)
check(r429 is not None and r429.header("retry-after") and int(r429.header("retry-after")) > 0
      and int(r429.header("retry-after")) <= 86400, "429 carries Retry-After up to the day's end", r429 and r429.headers)
check(r429 is not None and r429.header("ratelimit-policy", ) and '"daily";q=10000;w=86400' in r429.header("ratelimit-policy"),
      "429 carries RateLimit-Policy", r429 and r429.headers)

# --- concurrency: hourly calls, tiny estimates ---------------------------------------
admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="qadmin")
uid2, key2, _ = new_user("freemium", prefix="calls")
res = parallel(N, lambda i: post("/api/v1/quota/reserve", {"task_type": "race_tiny"}, key=key2))
n_ok = sum(1 for r in res if getattr(r, "status", 0) == 201)
n_429 = [r for r in res if getattr(r, "status", 0) == 429]
check(n_ok == 100, f"{N} concurrent reserves against 100 calls/hour: exactly 100 admitted", n_ok)
check(len(n_429) == N - 100 and n_429[0].json["window"] == "hourly_calls",
      "the rest refused by the hourly_calls window")
c = counters(uid2)
check(c.get("hour", (0, 0, 0))[2] == 100 and c.get("day") == (0, 100, 100),
      "hour counter says 100 calls, day holds 100 x 1 token", c)
r = put(f"/api/v1/quota/users/{uid2}/override",
        {"calls_per_hour": 150, "reason": "call-limit test"}, key=admin_key)
check(r.status == 200 and r.json["hourly_calls"]["limit"] == 150 and r.json["daily"]["limit"] == 10000,
      "admin override raises only the call limit", r)
res = parallel(100, lambda i: post("/api/v1/quota/reserve", {"task_type": "race_tiny"}, key=key2))
n_ok = sum(1 for r in res if getattr(r, "status", 0) == 201)
check(n_ok == 50, "with the override exactly 50 more are admitted", n_ok)

# --- status, commit, release ---------------------------------------------------
uid3, key3, _ = new_user("payg", prefix="flow")
r = get("/api/v1/quota/status", key=key3)
check(r.status == 200 and r.json["plan"] == "payg" and r.json["level"] == "ok"
      and all(r.json[w]["resets_at"].endswith("Z") for w in W), "status: plan, level, resets_at", r)
check(r.header("ratelimit-limit") and r.header("ratelimit-remaining") and r.header("ratelimit-reset")
      and r.header("ratelimit"), "status carries RateLimit headers", r.headers)
r = post("/api/v1/quota/check", {"task_type": "cv_drafting"}, key=key3)
check(r.status == 200 and r.json["allowed"] is True and r.json["estimate"] == 4000, "check: dry run allowed", r)
check(snapshot(key3)["daily"] == (0, 0), "check reserved nothing")
r = post("/api/v1/quota/check", {"task_type": "cv_drafting", "max_tokens": 60000}, key=key3)
check(r.status == 200 and r.json["allowed"] is False and r.json["window"] == "daily",
      "check: 60000 would not fit the 50000 day", r)
r = post("/api/v1/quota/reserve", {"task_type": "cover_letter", "prompt": "x" * 400, "max_tokens": 3000}, key=key3)
check(r.status == 201 and r.json["estimate"] == 3100 and len(r.json["reservation_id"]) == 32
      and r.json["status"] == "reserved" and r.json["expires_at"].endswith("Z"),
      "reserve: 201, estimate max(2500, 400/4+3000)=3100", r)
rid = r.json["reservation_id"]
r = post("/api/v1/quota/commit", {"reservation_id": rid, "actual_tokens": 1000}, key=key3)
check(r.status == 200 and r.json["status"] == "committed" and r.json["over_estimate"] is False, "commit", r)
check(snapshot(key3)["daily"] == (1000, 0), "commit of less frees the difference")
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=key3)
rid2 = r.json["reservation_id"]
r = post("/api/v1/quota/release", {"reservation_id": rid2}, key=key3)
check(r.status == 200 and r.json["status"] == "released", "release", r)
check(snapshot(key3)["daily"] == (1000, 0), "release frees all")

# --- hostile input: a clear 4xx and no counter change ----------------------------------
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=key3)
live = r.json["reservation_id"]
before = snapshot(key3)
uid4, key4, _ = new_user("payg", prefix="other")
cases = [
    ("malformed json", dict(raw=b'{"task_type": "x"', ctype="application/json"), 400),
    ("json array body", dict(raw=b'["task_type"]'), 400),
    ("json string body", dict(raw=b'"hello"'), 400),
    ("empty body", dict(raw=b''), 400),
    ("text/plain content type", dict(raw=b'{"task_type":"x"}', ctype="text/plain"), 415),
    ("no content type", dict(raw=b'{"task_type":"x"}', ctype=None), 415),
    ("form content type", dict(raw=b'task_type=x', ctype="application/x-www-form-urlencoded"), 415),
    ("invalid utf-8", dict(raw=b'{"task_type":"\xff"}'), 400),
]
for name, kw, want in cases:
    r = request("POST", "/api/v1/quota/reserve", key=key3, **kw)
    check(is_problem(r, want), f"reserve with {name}: {want}", r)
r = request("POST", "/api/v1/quota/reserve", key=key3, raw=b'{"task_type":"' + b"a" * (10 << 20) + b'"}')
check(is_problem(r, 413), "10 MiB body: 413", r)
bad = [
    ("missing task_type", {}, "task_type"),
    ("task_type not a string", {"task_type": 5}, "task_type"),
    ("task_type with SQL", {"task_type": "x'; DROP TABLE users; --"}, "task_type"),
    ("unknown field", {"task_type": "x", "tokens": 5}, "tokens"),
    ("max_tokens negative", {"task_type": "x", "max_tokens": -5}, "max_tokens"),
    ("max_tokens huge", {"task_type": "x", "max_tokens": 10 ** 20}, "max_tokens"),
    ("max_tokens float", {"task_type": "x", "max_tokens": 1.5}, "max_tokens"),
    ("max_tokens string", {"task_type": "x", "max_tokens": "100"}, "max_tokens"),
]
for name, body, field in bad:
    r = post("/api/v1/quota/reserve", body, key=key3)
    check(is_problem(r, 400) and field in r.json.get("detail", ""), f"reserve {name}: 400 naming '{field}'", r)
commits = [
    ("negative actual", {"reservation_id": live, "actual_tokens": -1}, 400),
    ("huge actual", {"reservation_id": live, "actual_tokens": 10 ** 12}, 400),
    ("float actual", {"reservation_id": live, "actual_tokens": 10.5}, 400),
    ("string actual", {"reservation_id": live, "actual_tokens": "10"}, 400),
    ("boolean actual", {"reservation_id": live, "actual_tokens": True}, 400),
    ("missing actual", {"reservation_id": live}, 400),
    ("id with SQL", {"reservation_id": "' OR 1=1 --", "actual_tokens": 1}, 400),
    ("unknown id", {"reservation_id": "0" * 32, "actual_tokens": 1}, 404),
    ("committed id again", {"reservation_id": rid, "actual_tokens": 1}, 409),
    ("released id", {"reservation_id": rid2, "actual_tokens": 1}, 409),
]
for name, body, want in commits:
    r = post("/api/v1/quota/commit", body, key=key3)
    check(is_problem(r, want), f"commit with {name}: {want}", r)
r = post("/api/v1/quota/commit", {"reservation_id": live, "actual_tokens": 1}, key=key4)
check(is_problem(r, 404), "another user's reservation id: 404", r)
r = post("/api/v1/quota/release", {"reservation_id": live}, key=key4)
check(is_problem(r, 404), "another user cannot release it either: 404", r)
check(snapshot(key3) == before, "no counter changed by any refused request", (before, snapshot(key3)))
check(snapshot(key4)["daily"] == (0, 0), "nor the other user's")
r = post("/api/v1/quota/commit", {"reservation_id": live, "actual_tokens": 2000}, key=key3)
check(r.status == 200, "the owner can still commit it", r)

# SQL metacharacters in the one free-text field are data, not SQL
r = post("/api/v1/quota/check", {"task_type": "x", "prompt": "'; DROP TABLE users; -- \" \\ %_"}, key=key3)
check(r.status == 200 and r.json["estimate"] == 1500, "prompt with SQL metacharacters is plain data", r)
check(get("/api/v1/me", key=key3).status == 200, "users table still there")

# --- admin routes ---------------------------------------------------------------
r = get(f"/api/v1/quota/users/{uid3}", key=key3)
check(is_problem(r, 403), "non-admin on an admin route: 403", r)
r = put(f"/api/v1/quota/users/{uid3}/plan", {"plan": "enterprise"}, key=key3)
check(is_problem(r, 403), "non-admin cannot change plans: 403", r)
r = put(f"/api/v1/quota/users/{uid3}/override", {"tokens_per_day": 1}, key=key3)
check(is_problem(r, 403), "non-admin cannot set overrides: 403", r)
r = get(f"/api/v1/quota/users/{uid3}", key=admin_key)
check(r.status == 200 and r.json["user_id"] == uid3 and r.json["daily"]["used"] == 3000,
      "admin reads a user's quota", r)
r = get("/api/v1/quota/users/999999999", key=admin_key)
check(is_problem(r, 404), "admin: unknown user 404", r)
r = get("/api/v1/quota/users/abc", key=admin_key)
check(is_problem(r, 404), "admin: non-numeric user id 404", r)
r = put(f"/api/v1/quota/users/{uid3}/plan", {"plan": "platinum"}, key=admin_key)
check(is_problem(r, 400) and "plan" in r.json["detail"], "unknown plan: 400", r)
r = put(f"/api/v1/quota/users/{uid3}/plan", {"plan": "pro_annual"}, key=admin_key)
check(r.status == 200 and r.json["plan"] == "pro_annual", "admin sets a plan", r)
r = get("/api/v1/quota/status", key=key3)
check(r.json["plan"] == "pro_annual" and r.json["daily"]["limit"] == 2000000, "new plan applies to status", r)
r = put(f"/api/v1/quota/users/{uid3}/override", {"reason": "nothing"}, key=admin_key)
check(is_problem(r, 400), "override without a limit: 400", r)
r = put(f"/api/v1/quota/users/{uid3}/override", {"tokens_per_day": 5, "expires_at": "yesterday"}, key=admin_key)
check(is_problem(r, 400) and "expires_at" in r.json["detail"], "bad expires_at: 400", r)
r = put(f"/api/v1/quota/users/{uid3}/override", {"tokens_per_day": 5, "expires_at": "2001-01-01T00:00:00Z"}, key=admin_key)
check(is_problem(r, 400), "expires_at in the past: 400", r)
r = put(f"/api/v1/quota/users/{uid3}/override",
        {"tokens_per_day": 4000, "expires_at": "2099-01-01T00:00:00Z", "reason": "test"}, key=admin_key)
check(r.status == 200 and r.json["daily"]["limit"] == 4000 and r.json["override"]["expires_at"] == "2099-01-01T00:00:00Z",
      "override with expiry set", r)
check(get("/api/v1/quota/status", key=key3).json["override_active"] is True, "the user sees that an override applies")
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=key3)
check(is_problem(r, 429), "override takes effect: 3000 used + 2000 > 4000", r)
r = delete(f"/api/v1/quota/users/{uid3}/override", key=admin_key)
check(r.status == 204, "override removed", r)
r = delete(f"/api/v1/quota/users/{uid3}/override", key=admin_key)
check(is_problem(r, 404), "removing it again: 404", r)
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=key3)
check(r.status == 201, "plan limit applies again", r)

# enterprise never refused
eid, ekey, _ = new_user("enterprise", prefix="ent")
res = parallel(50, lambda i: post("/api/v1/quota/reserve", {"task_type": "cv_drafting", "max_tokens": 1000000}, key=ekey))
check(all(getattr(r, "status", 0) == 201 for r in res), "enterprise: 50 concurrent huge reserves all admitted")
r = get("/api/v1/quota/status", key=ekey)
check(r.json["daily"]["limit"] is None and r.json["level"] == "ok" and r.header("ratelimit") is None,
      "enterprise: unlimited windows, no RateLimit headers", r)
r = get("/api/v1/quota/plans")
check(r.status == 200 and [p["name"] for p in r.json["plans"]] ==
      ["freemium", "payg", "pro_monthly", "pro_annual", "enterprise"], "plans listed in order", r)
done()
