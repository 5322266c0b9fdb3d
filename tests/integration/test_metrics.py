"""test_metrics.py - GET /metrics: access rules, a strict check of the
Prometheus text format, and counters that move with the requests made,
summed over the whole worker pool."""
import re
import time

from qc import check, done, get, is_problem, new_user, parallel, post, put

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^({NAME})(\{{{LABEL}(?:,{LABEL})*\}})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$")


def parse(text):
    """Strict text-format 0.0.4 check; returns (errors, families, samples)."""
    errors, families, samples, seen_family_end = [], {}, {}, set()
    current = None
    if not text.endswith("\n"):
        errors.append("no final newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            if name in families:
                errors.append(f"{n}: HELP for {name} twice")
            if current and current != name:
                seen_family_end.add(current)
            current = name
            families[name] = {"help": True}
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                errors.append(f"{n}: bad TYPE line")
            elif parts[2] != current:
                errors.append(f"{n}: TYPE for {parts[2]} outside its HELP block")
            else:
                families[current]["type"] = parts[3]
        elif line.startswith("#") or line == "":
            errors.append(f"{n}: unexpected line {line!r}")
        else:
            m = SAMPLE.match(line)
            if not m:
                errors.append(f"{n}: bad sample {line!r}")
                continue
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = name if name in families else base
            if fam != current:
                errors.append(f"{n}: {name} outside its family block")
            if fam in seen_family_end:
                errors.append(f"{n}: family {fam} split")
            if families.get(fam, {}).get("type") == "counter" and not name.endswith("_total"):
                errors.append(f"{n}: counter {name} without _total")
            key = name + labels
            if key in samples:
                errors.append(f"{n}: duplicate series {key}")
            samples[key] = float(value)
    # histograms: cumulative buckets ending in +Inf equal to _count
    for fam, info in families.items():
        if info.get("type") != "histogram":
            continue
        groups = {}
        for key, v in samples.items():
            if key.startswith(fam + "_bucket"):
                labels = re.sub(r',?le="[^"]*"', "", key[len(fam + "_bucket"):]).replace("{}", "")
                le = re.search(r'le="([^"]*)"', key).group(1)
                groups.setdefault(labels, []).append((float("inf") if le == "+Inf" else float(le), v))
        for labels, bs in groups.items():
            bs.sort()
            if bs[-1][0] != float("inf"):
                errors.append(f"{fam}{labels}: no +Inf bucket")
            if any(bs[i][1] > bs[i + 1][1] for i in range(len(bs) - 1)):
                errors.append(f"{fam}{labels}: buckets not cumulative")
            cnt = samples.get(f"{fam}_count{labels}")
            if cnt != bs[-1][1]:
                errors.append(f"{fam}{labels}: +Inf bucket {bs[-1][1]} != count {cnt}")
            if f"{fam}_sum{labels}" not in samples:
                errors.append(f"{fam}{labels}: no _sum")
    return errors, families, samples


def scrape(**kw):
    r = get("/metrics", **kw)
    return r, parse(r.body.decode()) if r.status == 200 else (["not 200"], {}, {})


admin_id, admin_key, _ = new_user("enterprise", admin=True, prefix="madmin")
uid, key, _ = new_user("freemium", prefix="m")

r, (errs, fams, s0) = scrape()
check(r.status == 200 and r.header("content-type").startswith("text/plain; version=0.0.4"),
      "loopback scrape without a key: 200 text/plain 0.0.4", r)
check(not errs, "the exposition passes the strict format check", errs[:5])
want = {"qc_http_requests_total": "counter", "qc_http_request_duration_seconds": "histogram",
        "qc_quota_refusals_total": "counter", "qc_cache_hits_total": "counter",
        "qc_cache_misses_total": "counter", "qc_cache_bytes": "gauge", "qc_cache_saved_usd_total": "counter",
        "qc_upstream_calls_total": "counter", "qc_upstream_latency_seconds": "histogram",
        "qc_upstream_tokens_total": "counter", "qc_upstream_cost_usd_total": "counter",
        "qc_db_reconnects_total": "counter", "qc_quota_overruns_total": "counter"}
check(all(fams.get(k, {}).get("type") == t for k, t in want.items()),
      "every promised family is there with its type", {k: fams.get(k) for k in want if fams.get(k, {}).get("type") != want[k]})
r = get("/metrics", key=key)
check(is_problem(r, 403), "a user key: 403", r)
r = get("/metrics", key="qck_" + "x" * 32)
check(is_problem(r, 401), "an unknown key: 401", r)
r, (errs, _, _) = scrape(key=admin_key)
check(r.status == 200 and not errs, "an admin key: 200", r)


def val(samples, key):
    return samples.get(key, 0.0)


# counters move with the requests made, across all workers
_, (_, _, before) = scrape()
res = parallel(40, lambda i: get("/api/v1/me", key=key))
for _ in range(3):
    post("/api/v1/quota/reserve", {"task_type": "cv_drafting"}, key=key)   # 4000 each: third refused
put("/api/v1/cache/system/metrics-probe", {"value": "x"}, key=admin_key)
for _ in range(5):
    get("/api/v1/cache/system/metrics-probe", key=key)
get("/api/v1/cache/content/metrics-none", key=key)
post("/api/v1/generate", {"task": "t", "prompt": "metrics probe"}, key=admin_key)
time.sleep(1.6)   # workers write their counts at most a second later
_, (errs, _, after) = scrape()
d = lambda k: val(after, k) - val(before, k)
check(not errs, "still well-formed after traffic", errs[:5])
check(d('qc_http_requests_total{route="me",status="200"}') == 40,
      "40 /me requests over 4 workers counted exactly", d('qc_http_requests_total{route="me",status="200"}'))
check(d('qc_http_request_duration_seconds_count{route="me"}') == 40, "and their latency observations")
check(d('qc_http_requests_total{route="quota_reserve",status="201"}') == 2
      and d('qc_http_requests_total{route="quota_reserve",status="429"}') == 1, "reserve 201 x2, 429 x1")
check(d('qc_quota_refusals_total{plan="freemium",window="daily"}') == 1, "one daily refusal for freemium")
check(d('qc_cache_hits_total{tier="system"}') == 5 and d('qc_cache_misses_total{tier="content"}') >= 1,
      "cache hits and misses by tier", (d('qc_cache_hits_total{tier="system"}'), d('qc_cache_misses_total{tier="content"}')))
check(abs(d('qc_cache_saved_usd_total{tier="system"}') - 5 * 0.0002) < 1e-9, "saved dollars by tier")
check(d('qc_upstream_calls_total{outcome="ok"}') == 1 and d('qc_upstream_latency_seconds_count') == 1
      and d('qc_upstream_tokens_total{direction="prompt"}') > 0, "one upstream call with its tokens and latency")
done()
