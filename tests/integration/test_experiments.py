"""test_experiments.py - A/B experiments with and without caching (SPEC §13,
issue 14, sql/013): admin routes and quotacachectl create, start and stop
them; users fall in arms by SHA-256 of (name NUL user id) mod 100 against
control_pct; the control arm's generations neither read nor write the cache;
per-arm requests, hits, upstream calls, latency, billed and saved dollars in
the experiment's figures and /metrics."""
import hashlib
import secrets
import time

from qc import check, ctl, done, get, is_problem, new_user, post, request, sql

admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="xadmin")
plain_id, plain_key, _ = new_user("pro_monthly", prefix="xplain")
tag = secrets.token_hex(4)
name = f"cache-ab-{tag}"
BASE = "/api/v1/admin/experiments"
SEEN_S = 2.5    # the workers' copy of the running experiment is at most 2 s old


def arm_of(uid, exp, pct):
    v = int(hashlib.sha256(exp.encode() + b"\0" + str(uid).encode()).hexdigest()[:8], 16) % 100
    return "control" if v < pct else "treatment"


def gen(key, prompt):
    return post("/api/v1/generate", {"task": "ab_test", "prompt": prompt}, key=key, timeout=60)


def metric(line_start):
    for line in get("/metrics").body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


# --- the routes: admin only, validated --------------------------------------------
check(is_problem(get(BASE, key=plain_key), 403), "a user's key may not list experiments")
check(is_problem(post(BASE, {"name": "x"}, key=plain_key), 403), "... nor create one")
for body, what in (({}, "no name"), ({"name": "a b"}, "a space in the name"),
                   ({"name": "<b>x</b>"}, "markup in the name"), ({"name": "x" * 65}, "65 characters"),
                   ({"name": "ok", "control_pct": 0}, "control_pct 0"),
                   ({"name": "ok", "control_pct": 100}, "control_pct 100"),
                   ({"name": "ok", "control_pct": "50"}, "control_pct as a string"),
                   ({"name": "ok", "arms": 3}, "an unknown field"),
                   ({"name": "ok", "description": "d" * 501}, "a description of 501 bytes"),
                   ({"name": 7}, "a number for the name")):
    check(is_problem(post(BASE, body, key=admin_key), 400), f"create with {what}: 400")
check(is_problem(request("POST", BASE, raw=b"{nope", key=admin_key), 400), "malformed JSON: 400")
r = post(BASE, {"name": name, "control_pct": 50, "description": "<script>alert(1)</script> cache on/off"},
         key=admin_key)
check(r.status == 201 and r.json["state"] == "draft" and r.json["control_pct"] == 50
      and r.json["description"] == "<script>alert(1)</script> cache on/off" and r.json["started_at"] is None,
      "create: 201, a draft, the description kept as text", r)
xid = r.json["id"] if r.status == 201 else 0
check(is_problem(post(BASE, {"name": name}, key=admin_key), 409), "the same name again: 409")
for bad in ("abc", "0", "-1", "99999999", "1e3"):
    check(is_problem(get(f"{BASE}/{bad}", key=admin_key), 404), f"experiment '{bad}': 404")
check(is_problem(request("POST", f"{BASE}/99999999/start", raw=b"", key=admin_key), 404),
      "start an unknown experiment: 404")
check(is_problem(request("POST", f"{BASE}/{xid}/stop", raw=b"", key=admin_key), 409), "stop a draft: 409")

# --- users of both arms ---------------------------------------------------------------
users = [new_user("pro_monthly", prefix=f"xab{i}") for i in range(24)]
arms = {uid: arm_of(uid, name, 50) for uid, _, _ in users}
n_control = sum(1 for a in arms.values() if a == "control")
check(0 < n_control < 24, "24 users fall in both arms", n_control)

try:
    r = request("POST", f"{BASE}/{xid}/start", raw=b"", key=admin_key)
    check(r.status == 200 and r.json["state"] == "running" and r.json["started_at"], "start: running", r)
    other = post(BASE, {"name": f"other-{tag}"}, key=admin_key)
    r = request("POST", f"{BASE}/{other.json['id']}/start", raw=b"", key=admin_key)
    check(is_problem(r, 409), "a second experiment cannot start while one runs", r)
    check(is_problem(request("POST", f"{BASE}/{xid}/start", raw=b"", key=admin_key), 409),
          "starting a running one again: 409")
    time.sleep(SEEN_S)

    results = {}
    for uid, key, _ in users:
        a = gen(key, f"draft for user {uid}")
        b = gen(key, f"draft for user {uid}")
        results[uid] = (a.status, a.json and a.json["cached"], b.status, b.json and b.json["cached"])
    control_ok = all(results[u] == (200, False, 200, False) for u in arms if arms[u] == "control")
    treat_ok = all(results[u] == (200, False, 200, True) for u in arms if arms[u] == "treatment")
    check(control_ok, "control arm: the repeat is a miss again (no cache read)",
          {u: results[u] for u in arms if arms[u] == "control"})
    check(treat_ok, "treatment arm: the repeat is a hit", {u: results[u] for u in arms if arms[u] == "treatment"})
    ids = ",".join(str(u) for u in arms if arms[u] == "control")
    check(int(sql(f"SELECT COUNT(*) FROM ai_cache WHERE user_id IN ({ids})")[0][0]) == 0,
          "control arm: nothing written to the cache either")

    # the figures: sums over the ledger (hits reach it within about a second)
    want = {"control": (2 * n_control, 0, 2 * n_control), "treatment": (2 * (24 - n_control), 24 - n_control,
                                                                      24 - n_control)}
    got = None
    for _ in range(40):
        e = get(f"{BASE}/{xid}", key=admin_key).json
        got = {a: (e["arms"][a]["requests"], e["arms"][a]["hits"], e["arms"][a]["upstream_calls"])
               for a in ("control", "treatment")}
        if got == want:
            break
        time.sleep(0.25)
    check(got == want, "per arm: requests, hits and upstream calls", (got, want))
    ea = e["arms"]
    check(ea["control"]["hit_ratio"] == 0 and abs(ea["treatment"]["hit_ratio"] - 0.5) < 1e-9,
          "hit ratios 0 and 0.5", ea)
    check(ea["control"]["billed_usd"] > ea["treatment"]["billed_usd"] * n_control / (24 - n_control) * 1.5
          and ea["treatment"]["saved_usd"] > 0 and ea["control"]["saved_usd"] == 0,
          "control pays for every repeat; treatment saves", ea)
    check(ea["control"]["latency_ms_mean"] >= 0 and ea["treatment"]["latency_ms_mean"] >= 0, "mean latencies", ea)
    ledger = sql(f"SELECT arm, COUNT(*) FROM usage_events WHERE experiment_id = {xid} GROUP BY arm ORDER BY arm")
    check(ledger == [["control", str(2 * n_control)], ["treatment", str(48 - 2 * n_control)]],
          "every ledger row says its experiment and arm", ledger)
    check(any(x["id"] == xid for x in get(BASE, key=admin_key).json), "the list has it")
    m = metric(f'qc_experiment_requests_total{{experiment="{name}",arm="control"}}')
    check(m == 2 * n_control, "/metrics: qc_experiment_requests_total per arm", m)
    check(metric(f'qc_experiment_hits_total{{experiment="{name}",arm="treatment"}}') == 24 - n_control,
          "/metrics: qc_experiment_hits_total per arm")

    # stop: everyone is served from the cache again, no more arms in the ledger
    r = request("POST", f"{BASE}/{xid}/stop", raw=b"", key=admin_key)
    check(r.status == 200 and r.json["state"] == "stopped" and r.json["stopped_at"], "stop: stopped", r)
    check(is_problem(request("POST", f"{BASE}/{xid}/stop", raw=b"", key=admin_key), 409), "stop twice: 409")
    check(is_problem(request("POST", f"{BASE}/{xid}/start", raw=b"", key=admin_key), 409),
          "a stopped experiment does not restart")
    time.sleep(SEEN_S)
    cuid, ckey, _ = next(u for u in users if arms[u[0]] == "control")
    a, b = gen(ckey, "after the experiment"), gen(ckey, "after the experiment")
    check(a.json["cached"] is False and b.json["cached"] is True, "after stop, a control user gets hits again")
    check(get(f"{BASE}/{xid}", key=admin_key).json["arms"]["control"]["requests"] == 2 * n_control,
          "after stop, nothing more is counted in its arms")

    # quotacachectl: the same actions
    out = ctl("experiment", "list")[1]
    check(name in out and "stopped" in out and "control" in out and "treatment" in out,
          "quotacachectl experiment list shows it with its arms", out[:300])
    out = ctl("experiment", "create", f"cli-{tag}", "--control-pct", "20", "--description", "from the CLI")[1]
    check(f"cli-{tag}" in out and "draft" in out and "control 20%" in out, "quotacachectl experiment create", out)
    out = ctl("experiment", "start", f"cli-{tag}")[1]
    check("running" in out, "quotacachectl experiment start NAME", out)
    rc, _, err = ctl("experiment", "start", f"other-{tag}", check_rc=False)
    check(rc == 1 and "only a draft starts" in err, "the CLI refuses a second running one", err)
    out = ctl("experiment", "stop", f"cli-{tag}")[1]
    check("stopped" in out, "quotacachectl experiment stop", out)
    rc, _, err = ctl("experiment", "show", "no-such-experiment", check_rc=False)
    check(rc == 1, "show an unknown experiment: exit 1", err)
    # every change is in the audit log: who, and the state before and after
    log = get(f"/api/v1/admin/audit?action=experiment.&per_page=200", key=admin_key).json["entries"]
    mine = [(e["action"], e["source"], e["before"], e["after"]) for e in reversed(log) if e["target"] in (name, f"cli-{tag}")]
    check(mine == [("experiment.create", "api", None, {"control_pct": 50, "state": "draft"}),
                   ("experiment.start", "api", {"state": "draft"}, {"state": "running"}),
                   ("experiment.stop", "api", {"state": "running"}, {"state": "stopped"}),
                   ("experiment.create", "cli", None, {"control_pct": 20, "state": "draft"}),
                   ("experiment.start", "cli", {"state": "draft"}, {"state": "running"}),
                   ("experiment.stop", "cli", {"state": "running"}, {"state": "stopped"})],
          "experiments' creation, start and stop are audited (API and CLI)", mine)
finally:
    sql(f"UPDATE experiments SET state = 'stopped' WHERE name LIKE '%{tag}'")
done()
