"""test_overrides.py - loyal-customer overrides about to expire (SPEC §2, §13;
issue 14 item 7): GET /api/v1/admin/overrides?within_days=N and
quotacachectl quota expiring list the overrides in force that end within N
days, soonest first, with their limits and reason (hostile text kept as
text); other overrides are not listed."""
import time
from datetime import datetime, timezone

from qc import check, ctl, done, get, is_problem, new_user, put


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="oadmin")
now = int(time.time())
hostile = '<img src=x onerror="window.__xss=1"> loyal & "enterprise"'
soon, later, never = (new_user("pro_monthly", prefix=f"ovr{i}") for i in range(3))
for (uid, _, _), body in ((soon, {"tokens_per_day": 50000, "tokens_per_month": None,
                                     "expires_at": iso(now + 2 * 86400), "reason": hostile}),
                          (later, {"tokens_per_day": 60000, "expires_at": iso(now + 20 * 86400),
                                      "reason": "renewal in three weeks"}),
                          (never, {"tokens_per_day": 70000, "reason": "no end"})):
    r = put(f"/api/v1/quota/users/{uid}/override", body, key=admin_key)
    check(r.status == 200, f"override for user {uid} set", r)

r = get("/api/v1/admin/overrides", key=admin_key)
mine = [o for o in (r.json or []) if o["user_id"] in (soon[0], later[0], never[0])]
check(r.status == 200 and [o["user_id"] for o in mine] == [soon[0]],
      "within 7 days (the default): only the override ending in 2 days", mine)
o = mine[0] if mine else {}
check(o.get("reason") == hostile and o.get("email") == soon[2] and o.get("plan") == "pro_monthly"
      and o.get("expires_at") == iso(now + 2 * 86400), "its user, plan, end and reason, as given", o)
check(o.get("tokens_per_day") == 50000 and "tokens_per_month" in o and o["tokens_per_month"] is None
      and "calls_per_hour" not in o, "its limits: 50,000 a day, unlimited a month, the plan's calls", o)
r = get("/api/v1/admin/overrides?within_days=30", key=admin_key)
ids = [o["user_id"] for o in r.json if o["user_id"] in (soon[0], later[0], never[0])]
check(ids == [soon[0], later[0]], "within 30 days: both, soonest first; one without an end never", ids)
for bad in ("0", "366", "x", "", "7.5"):
    check(is_problem(get(f"/api/v1/admin/overrides?within_days={bad}", key=admin_key), 400),
          f"within_days={bad!r}: 400")
check(is_problem(get("/api/v1/admin/overrides", key=soon[1]), 403), "a user's key: 403")
rc, out, _ = ctl("quota", "expiring", "--days", "30")
lines = [line.split("\t") for line in out.splitlines()[1:] if line.split("\t")[0] in (str(soon[0]), str(later[0]))]
check(rc == 0 and [x[0] for x in lines] == [str(soon[0]), str(later[0])] and lines[0][4:7] == ["50000", "unlimited", "plan"]
      and lines[0][7] == hostile, "quotacachectl quota expiring --days 30: the same list", out[:400])
done()
