"""test_regions.py - regional partitioning (SPEC §13, issue 14, sql/014): two
more lighttpd front ends on the same database, their workers configured with
region = eu and region = us.  A worker stores and serves the user tiers'
entries of its own region; the system tier is shared by every region;
generation misses and hits stay per region; the statistics split by region;
the region is in ai_cache's unique key and a lookup is one const read of it."""
import http.client
import os
import secrets
import socket
import subprocess

from qc import VAR, check, done, get, is_problem, new_user, post, put, request, sql

BUILD, SRC = os.environ["QC_BUILD"], os.environ["QC_SRC"]
WORKER = os.path.join(BUILD, "src", "quotacache-fcgi")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def front(region):
    """A lighttpd with 2 workers of region on a free port: (port, vardir)."""
    var = os.path.join(VAR, f"region-{region}")
    os.makedirs(var, exist_ok=True)
    conf = os.path.join(var, "quotacache.conf")
    with open(os.environ["QC_CONFIG"]) as f, open(conf, "w") as g:
        # the Apache passes give their workers a database of their own (QC_DB_NAME)
        db = f"db_name = {os.environ['QC_DB_NAME']}\n" if os.environ.get("QC_DB_NAME") else ""
        g.write(f.read() + f"\nregion = {region}\n" + db)
    port = free_port()
    subprocess.run(["bash", os.path.join(SRC, "scripts", "lighttpd.sh"), "start", var, str(port), "2", WORKER,
                    conf, os.path.join(SRC, "www")], check=True, capture_output=True)
    return port, var


def at(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def path(key, tier="session"):
    return f"/api/v1/cache/{tier}/{key}"


# a worker refuses a region that is not 1-16 of a-z 0-9 -
bad_conf = os.path.join(VAR, "region-bad.conf")
with open(os.environ["QC_CONFIG"]) as f, open(bad_conf, "w") as g:
    g.write(f.read() + "\nregion = EU<1>\n")
p = subprocess.run([WORKER, "-c", bad_conf], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
check(p.returncode == 1 and "region must be" in p.stderr, "a worker with a bad region refuses to start", p.stderr[-200:])

fronts = {}
try:
    for r in ("eu", "us"):
        fronts[r] = front(r)
    eu, us = fronts["eu"][0], fronts["us"][0]
    admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="radmin")
    uid, key, _ = new_user("pro_monthly", prefix="region")
    k = "draft-" + secrets.token_hex(4)

    # user tiers: each region its own entries
    r = put(path(k), {"value": "from eu"}, key=key, conn=at(eu))
    check(r.status == 200, "PUT through an eu worker", r)
    check(get(path(k), key=key, conn=at(eu)).json.get("value") == "from eu", "an eu worker serves the eu entry")
    check(is_problem(get(path(k), key=key, conn=at(us)), 404), "a us worker does not see it")
    check(is_problem(get(path(k), key=key), 404), "nor a worker without a region")
    check(put(path(k), {"value": "from us"}, key=key, conn=at(us)).status == 200, "the same key through us")
    check(get(path(k), key=key, conn=at(us)).json.get("value") == "from us"
          and get(path(k), key=key, conn=at(eu)).json.get("value") == "from eu",
          "two entries of one key, one per region")
    rows = sql(f"SELECT region, size_bytes FROM ai_cache WHERE user_id = {uid} ORDER BY region")
    check([x[0] for x in rows] == ["eu", "us"], "the rows carry their region", rows)
    usage = sql(f"SELECT bytes, entries FROM cache_usage WHERE user_id = {uid}")[0]
    check(usage == [str(sum(int(x[1]) for x in rows)), "2"], "the per-user byte count spans the regions", usage)
    check(request("DELETE", path(k), key=key, conn=at(us)).status == 204
          and is_problem(get(path(k), key=key, conn=at(us)), 404)
          and get(path(k), key=key, conn=at(eu)).status == 200, "DELETE through us removes only the us entry")

    # the system tier is shared by every region
    sk = "prompt-" + secrets.token_hex(4)
    r = put(path(sk, "system"), {"value": "You are a careful CV writer."}, key=admin_key, conn=at(eu))
    check(r.status == 200, "admin stores a system prompt through eu", r)
    check(get(path(sk, "system"), key=key, conn=at(us)).status == 200
          and get(path(sk, "system"), key=key).status == 200, "us and region-less workers read it")
    check(sql(f"SELECT region FROM ai_cache WHERE user_id = 0 AND cache_key = '{sk}'") == [[""]],
          "the system entry has no region")

    # generations: miss and hit per region
    body = {"task": "cv_draft", "prompt": "CV for a region test " + k, "cache_tier": "session",
            "system_prompt_key": sk}
    seq = [post("/api/v1/generate", body, key=key, conn=at(fronts[rg][0])) for rg in ("eu", "eu", "us", "us")]
    got = [(x.status, x.json and x.json.get("cached")) for x in seq]
    check(got == [(200, False), (200, True), (200, False), (200, True)],
          "generate: eu miss, eu hit, us miss (its own region), us hit", got)

    # statistics split by region
    st = None
    for _ in range(30):
        st = get("/api/v1/cache/stats", key=admin_key, conn=at(eu)).json
        regs = {x["region"]: x for x in st["regions"]}
        if regs.get("eu", {}).get("hits", 0) >= 3 and regs.get("us", {}).get("hits", 0) >= 2:
            break
        __import__("time").sleep(0.2)
    check(st["worker_region"] == "eu", "stats say the answering worker's region", st.get("worker_region"))
    check(regs.get("eu", {}).get("entries", 0) >= 2 and regs.get("us", {}).get("entries", 0) >= 1
          and regs.get(None, {}).get("entries", 0) >= 1,
          "stats: live entries per region, the shared system tier as region null", st["regions"])
    check(regs.get("eu", {}).get("hits", 0) >= 3 and regs.get("us", {}).get("hits", 0) >= 2,
          "stats: hits counted by the region of the worker that served them", st["regions"])
    own = get("/api/v1/cache/stats", key=key, conn=at(us)).json
    check({x["region"] for x in own["regions"]} >= {"eu", "us"} and own["worker_region"] == "us",
          "a user's own stats split by region too", own["regions"])

    # the region is in the unique key: a worker's lookup is one const read of
    # it (sql/017 removed 014's partitions, which cost every by-user statement)
    plan = sql(f"EXPLAIN SELECT id FROM ai_cache WHERE cache_key = '{k}' AND cache_type = 'session'"
               f" AND user_id = {uid} AND region = 'eu'")
    check(len(plan) == 1 and plan[0][3] == "const" and plan[0][5] == "uq_ai_cache_key_type_user",
          "a worker's lookup is a const read of the unique key that holds the region", plan)
finally:
    for port, var in fronts.values():
        subprocess.run(["bash", os.path.join(SRC, "scripts", "lighttpd.sh"), "stop", var],
                       capture_output=True)
done()
