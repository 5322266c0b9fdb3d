"""test_foundation.py - health, auth, routing and hostile input through the
real lighttpd + MariaDB stack (issue 2)."""
import os
import subprocess
import time

from qc import (check, ctl, delete, done, get, is_problem, new_user, post,
                put, request, VAR)

admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="admin")
uid, key, email = new_user("freemium")

# --- health and me -------------------------------------------------------
r = get("/api/v1/health")
check(r.status == 200 and r.json["database"] is True, "health: 200 and database reachable", r)
check(r.json and r.json.get("version") and r.json.get("schema_version", 0) >= 1,
      "health: version and schema version", r)
check(r.header("content-type") == "application/json", "health: json content type", r.headers)

r = get("/api/v1/me", key=key)
check(r.status == 200 and r.json == {"id": uid, "email": email, "plan": "freemium", "role": "user"},
      "me: the caller's user, plan and role", r)
r = get("/api/v1/me", key=admin_key)
check(r.status == 200 and r.json["role"] == "admin", "me: admin role", r)

# --- authentication ------------------------------------------------------
r = get("/api/v1/me")
check(is_problem(r, 401) and "bearer" in (r.header("www-authenticate") or "").lower(),
      "no key: 401 problem with WWW-Authenticate", r)
r = get("/api/v1/me", key="qck_" + "A" * 32)
check(is_problem(r, 401), "well-formed unknown key: 401", r)
r = get("/api/v1/me", key="garbage")
check(is_problem(r, 401), "garbage key: 401", r)
r = get("/api/v1/me", key="sk-proj-" + "a" * 48)
check(is_problem(r, 401), "a key of another product's format: 401", r)
r = get("/api/v1/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
check(is_problem(r, 401), "basic auth: 401", r)
r = get("/api/v1/me", key=key[:-1] + ("A" if key[-1] != "A" else "B"))
check(is_problem(r, 401), "key with one character changed: 401", r)
r = get("/api/v1/me", key="qck_' OR '1'='1'; --aaaaaaaaaaaaaaa")
check(is_problem(r, 401), "sql-ish key: 401", r)

# revocation (the worker read cache holds a key at most auth_cache_seconds)
_, k2, _ = ctl("key", "add", "--id", str(uid))
k2 = k2.strip()
check(get("/api/v1/me", key=k2).status == 200, "second key works")
ctl("key", "revoke", k2)
time.sleep(float(os.environ.get("QC_AUTH_CACHE_SECONDS", "1")) + 0.5)
r = get("/api/v1/me", key=k2)
check(is_problem(r, 401), "revoked key: 401 after the cache bound", r)
check(get("/api/v1/me", key=key).status == 200, "the user's other key still works")

# keys are stored hashed: the plaintext never appears in the database
rows = subprocess.run(["mariadb", f"--defaults-file={VAR}/mariadb/my.cnf", "-N", "-B",
                       os.environ.get("QC_DB_NAME", "quotacache"), "-e",
                       "SELECT key_hash, key_prefix FROM api_keys"],
                      capture_output=True, text=True).stdout
check(key not in rows and key[:12] in rows and len(rows.split()[0]) == 64,
      "keys stored as sha-256 hex plus display prefix only")

# --- routing ---------------------------------------------------------------
r = get("/api/v1/nope", key=key)
check(is_problem(r, 404), "unknown route: 404 problem", r)
r = get("/api/v1/quota/nope/deeper/still")
check(is_problem(r, 404), "unknown deep route: 404", r)
r = post("/api/v1/health", {})
check(is_problem(r, 405) and r.header("allow") == "GET", "wrong method: 405 with Allow", r)
r = delete("/api/v1/me", key=key)
check(is_problem(r, 405) and r.header("allow") == "GET", "DELETE on me: 405", r)
r = get("/api/v1/me%00", key=key)
check(r.status in (400, 404) and r.status != 500, "%00 in path: 400/404, no crash", r)
r = get("/api/v1/cache/content/a%00b", key=key)
check(r.status in (400, 404), "%00 inside a parameter: refused", r)
r = get("/api/v1/" + "a" * 5000, key=key)
check(r.status in (400, 404, 414), "5000-byte path: clear 4xx", r)
r = get("/api/v1/" + "a" * 60000, key=key)
check(400 <= r.status < 500 or r.status == 431, "60 KB path: clear 4xx", r)
check(get("/api/v1/health").status == 200, "worker alive after hostile paths")

# the test clock: only a --enable-test-clock build reads X-QC-Test-Now, and
# then only as epoch seconds in 2000..2100; any other worker ignores it
import os  # noqa: E402
test_clock = os.environ.get("QC_TEST_CLOCK_BUILD") == "1"
future = 4000000000   # 2096: a fresh month for quota windows
r = get("/api/v1/quota/status", key=key, headers={"X-QC-Test-Now": str(future)})
moved = r.status == 200 and r.json["daily"]["resets_at"].startswith("2096")
if test_clock:
    check(moved, "test build: X-QC-Test-Now moves the request clock", r)
    for bad in ("garbage", "12abc", "-5", "99999999999999999999", "1", "4102444801"):
        r = get("/api/v1/quota/status", key=key, headers={"X-QC-Test-Now": bad})
        check(is_problem(r, 400) and "X-QC-Test-Now" in r.json.get("detail", ""),
              f"test build: X-QC-Test-Now '{bad}' is a 400, never a clock", r)
else:
    check(r.status == 200 and not moved, "a worker built without the test clock ignores X-QC-Test-Now", r)
done()
