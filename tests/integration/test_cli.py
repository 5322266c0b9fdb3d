"""test_cli.py - quotacachectl against the test database: users, keys,
plans, quota overrides and reports; SQL metacharacters are plain data."""
from qc import check, ctl, done, get, new_user, post

rc, out, err = ctl("user", "add", "--email", "x@y.z", "--plan", "platinum", check_rc=False)
check(rc == 1 and "unknown plan" in err, "user add with an unknown plan fails clearly", err)
rc, out, err = ctl("user", "add", "--email", "not-an-email", "--plan", "payg", check_rc=False)
check(rc == 1, "user add with a bad email fails", err)
evil = "o'brien\";--@x.example"
rc, out, err = ctl("user", "add", "--email", evil, "--plan", "payg", check_rc=False)
key = out.strip()
check(rc == 0 and key.startswith("qck_"), "email with SQL metacharacters is stored as data", err)
r = get("/api/v1/me", key=key)
check(r.status == 200 and r.json["email"] == evil, "and read back byte for byte", r)
rc, out, err = ctl("user", "add", "--email", evil, "--plan", "payg", check_rc=False)
check(rc == 1 and "exists" in err, "duplicate email refused", err)
_, lst, _ = ctl("user", "list")
check(evil in lst, "user list shows it")
uid = r.json["id"]

rc, out, err = ctl("user", "set-plan", "--id", str(uid), "--plan", "freemium")
check(rc == 0 and get("/api/v1/quota/status", key=key).json["plan"] == "freemium", "user set-plan")
rc, out, err = ctl("quota", "set-override", "--id", str(uid), "--day", "2000", "--hour", "unlimited",
                   "--expires", "2099-01-01T00:00:00Z", "--reason", "it's a test")
s = get("/api/v1/quota/status", key=key).json
check(rc == 0 and s["daily"]["limit"] == 2000 and s["hourly_calls"]["limit"] is None
      and s["monthly"]["limit"] == 100000, "quota set-override via the CLI", s)
r = post("/api/v1/quota/reserve", {"task_type": "extraction"}, key=key)
check(r.status == 201, "2000 of 2000 admitted")
_, out, _ = ctl("quota", "status", "--id", str(uid))
check("limit 2000, remaining 0 (100%, exceeded)" in out and "it's a test" in out, "quota status via the CLI", out)
_, out, _ = ctl("quota", "nearest", "--limit", "5")
check(out.splitlines()[1].split("\t")[0] == str(uid), "quota nearest puts the exhausted user first", out)
rc, out, err = ctl("quota", "clear-override", "--id", str(uid))
check(rc == 0 and get("/api/v1/quota/status", key=key).json["daily"]["limit"] == 10000, "clear-override")
rc, out, err = ctl("quota", "set-override", "--id", str(uid), check_rc=False)
check(rc == 2, "set-override without limits is a usage error", err)
rc, out, err = ctl("quota", "expire")
check(rc == 0, "quota expire runs")
rc, out, err = ctl("quota", "prune", "--days", "1")
check(rc == 0 and "pruned" in out, "quota prune runs", out)

_, out, _ = ctl("key", "list", "--id", str(uid))
check(key[:12] in out and key not in out, "key list shows the prefix, never the key")
rc, out, err = ctl("key", "revoke", "qck_doesnotexist", check_rc=False)
check(rc == 1, "revoking an unknown prefix fails", err)
rc, out, err = ctl("bogus", check_rc=False)
check(rc == 2 and "usage" in err, "unknown command prints usage", err)
done()
