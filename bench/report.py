#!/usr/bin/env python3
"""bench/report.py - the report of bench/run.sh (called by it, with its
environment): reads bench/out/results.tsv (one row per subject),
extras.tsv (subject, key, value: CPU shares, Innodb_deadlocks, reservations,
RSS run counters) and rss.tsv (pid, phase, VmRSS KiB, VmHWM KiB); writes
bench/out/results.json and bench/out/results.md and prints the latter."""
import csv
import datetime
import json
import os
import platform

env = os.environ
OUT = env["OUT"]
RSS_MAX_KIB = 16 * 1024          # SPEC §8: <= 16 MiB
RSS_GROWTH_TOL_KIB = 64          # "no growth": at most 16 pages of allocator noise
IF_CONNS = (64, 256, 1024)       # the in-flight subjects inflight_C / portkey_1s_C / mock_1s_C
IF_MIN_RATE = 0.95               # SPEC §8: >= 0.95 c req/s at c = 64, 256 (1 s upstream)
IF_MAX_P99 = 1.05                # p99 <= 1.05 s (1.05 x the upstream latency) at c <= 256
IF_RSS_MAX_KIB = 128 * 1024      # all workers together <= 128 MiB at c = 1024


def f1(v, d=0):
    return "-" if not isinstance(v, (int, float)) else f"{v:,.{d}f}"


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


rows = list(csv.DictReader(open(env["RESULTS"]), delimiter="\t"))
by = {r["name"]: r for r in rows}

extras = {}
if os.path.exists(env["EXTRAS"]):
    for line in open(env["EXTRAS"]):
        parts = line.rstrip("\n").split("\t", 2)
        if len(parts) == 3:
            v = parts[2]
            extras.setdefault(parts[0], {})[parts[1]] = (
                int(v) if v.lstrip("-").isdigit() else num(v) if num(v) is not None else v)

subjects = []
for r in rows:
    subjects.append({
        "name": r["name"], "url": r["url"],
        "req_per_s": num(r["req_s"]), "p50_ms": num(r["p50_ms"]), "p99_ms": num(r["p99_ms"]),
        "requests": int(r["requests"]), "non_2xx": int(r["non2xx"]),
        "socket_errors": int(r["socket_errors"]), "note": r["note"] or None,
        "extra": extras.get(r["name"], {}),
    })

checks = []
for line in env["CHECKS_STR"].splitlines():
    if not line:
        continue
    name, floor, minr, maxp99 = line.split(":")
    if name not in by or floor not in by:
        continue
    s, f = by[name], by[floor]
    ratio = num(s["req_s"]) / num(f["req_s"])
    p99 = num(s["p99_ms"])
    if minr == "-":
        checks.append({"subject": name, "floor": floor, "ratio": round(ratio, 4), "min_ratio": None,
                       "p99_ms": p99, "max_p99_ms": None, "target": "report only", "met": None})
        continue
    ok_ratio = ratio >= float(minr)
    ok_p99 = True if not maxp99 else (p99 is not None and p99 <= float(maxp99))
    target = (f">= {float(minr):g}x {floor}" if float(minr) > 1 else f">= {float(minr)*100:.0f} % of {floor}") \
        + (f", p99 <= {maxp99} ms" if maxp99 else "")
    checks.append({
        "subject": name, "floor": floor, "ratio": round(ratio, 4), "min_ratio": float(minr),
        "p99_ms": p99, "max_p99_ms": float(maxp99) if maxp99 else None,
        "target": target, "met": ok_ratio and ok_p99,
    })

# ---- worker RSS
rss = None
if os.path.exists(env["RSS_TSV"]):
    samples = {}
    for line in open(env["RSS_TSV"]):
        pid, phase, r, h = line.split()
        samples.setdefault(int(pid), {})[phase] = (int(r), int(h))
    ex = extras.get("rss", {})
    workers = []
    for pid, ph in sorted(samples.items()):
        w = {"pid": pid}
        for k in ("start", "warmup", "half_load", "half", "end_load", "end"):
            w[f"rss_{k}_kib"] = ph[k][0] if k in ph else None
        w["peak_kib"] = max(h for _, h in ph.values())
        w["rest_kib"] = max((ph[k][0] for k in ("half", "end") if k in ph), default=None)
        w["growth_last_half_kib"] = (ph["end"][0] - ph["half"][0]) if "end" in ph and "half" in ph else None
        workers.append(w)
    # a pid missing from a phase means a worker died and was respawned
    complete = all(w["rss_half_kib"] is not None and w["rss_end_kib"] is not None for w in workers)
    reqs = {k: ex.get(f"requests_{k}") for k in ("warmup", "half1", "half2")}
    peak = max((w["peak_kib"] for w in workers), default=None)
    rest = max((w["rest_kib"] for w in workers if w["rest_kib"] is not None), default=None)
    growth = max((w["growth_last_half_kib"] for w in workers if w["growth_last_half_kib"] is not None),
                 default=None)
    rss = {
        "workers": workers,
        "requests": reqs,
        "requests_total": sum(v for v in reqs.values() if isinstance(v, int)),
        "requests_at_half_sample": sum(v for k, v in reqs.items() if k != "half2" and isinstance(v, int)),
        "req_per_s": {k: ex.get(f"req_s_{k}") for k in ("warmup", "half1", "half2")},
        "non_2xx": sum(ex.get(f"non2xx_{k}", 0) or 0 for k in ("warmup", "half1", "half2")),
        "socket_errors": sum(ex.get(f"socket_errors_{k}", 0) or 0 for k in ("warmup", "half1", "half2")),
        "notes": {k: ex.get(f"note_{k}") for k in ("warmup", "half1", "half2")},
        "same_workers_throughout": complete,
        "max_peak_kib": peak, "max_rest_kib": rest, "max_growth_last_half_kib": growth,
        "target": f"at rest <= {RSS_MAX_KIB} KiB, growth over the last half (at rest) <= {RSS_GROWTH_TOL_KIB} KiB",
        "met": (complete and rest is not None and rest <= RSS_MAX_KIB and growth is not None
                and growth <= RSS_GROWTH_TOL_KIB),
    }

# ---- generations in flight (inflight_C: quotacache, portkey_1s_C: Portkey; 1 s mock)
def if_row(name):
    """The figures of one in-flight subject, or None when it was not measured."""
    if name not in by:
        return None
    s = next(x for x in subjects if x["name"] == name)
    e = s["extra"]
    c = e.get("conns")
    mean_us = e.get("latency_mean_us")
    mean_us = mean_us if isinstance(mean_us, (int, float)) and mean_us > 0 else None
    return {
        "name": name, "conns": c, "req_per_s": s["req_per_s"],
        # wrk is a closed loop (each connection always has one request
        # outstanding): by Little's law its sustained rate is c / mean latency
        "sustained_req_per_s": round(c * 1e6 / mean_us, 2) if c and mean_us else None,
        "latency_mean_ms": round(mean_us / 1000, 2) if mean_us else None,
        "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "requests": s["requests"],
        "non_2xx": s["non_2xx"], "socket_errors": s["socket_errors"], "timeouts": e.get("timeouts"),
        "errors": s["non_2xx"] + s["socket_errors"],
        "upstream_peak_in_flight": e.get("upstream_peak_in_flight"),
        "upstream_calls": e.get("upstream_calls"),
        "rss_peak_kib": e.get("rss_peak_kib"), "rss_hwm_sum_kib": e.get("rss_hwm_sum_kib"),
        "rss_procs": e.get("rss_procs"), "rss_samples": e.get("rss_samples"),
        "lighttpd_rss_peak_kib": e.get("lighttpd_rss_peak_kib"),
        "cpu_mock_pct": e.get("cpu_mock_pct"), "warmup_drain_s": e.get("warmup_drain_s"),
        "note": s["note"],
    }


inflight = None
if_rows = {c: (if_row(f"inflight_{c}"), if_row(f"portkey_1s_{c}"), if_row(f"mock_1s_{c}")) for c in IF_CONNS}
if any(any(r) for r in if_rows.values()):
    lat_ms = int(env.get("IF_LATENCY_MS") or 1000)
    if_checks = []
    for c in IF_CONNS[:2]:
        q, _, m = if_rows[c]
        if q is None:
            continue
        want = IF_MIN_RATE * c * 1000 / lat_ms
        p99_max = IF_MAX_P99 * lat_ms
        rate = q["sustained_req_per_s"]
        met = (rate is not None and rate >= want and q["p99_ms"] is not None
               and q["p99_ms"] <= p99_max and q["errors"] == 0)
        if_checks.append({
            "subject": q["name"],
            "target": f">= {want:g} req/s ({IF_MIN_RATE:g} c), p99 <= {p99_max:g} ms, no errors",
            "measured": f"{f1(rate, 1)} req/s (c / mean latency; wrk {f1(q['req_per_s'], 1)}), "
                        f"p99 {f1(q['p99_ms'], 0)} ms"
                        + (f" (the mock alone: {f1(m['p99_ms'], 0)} ms)" if m else "")
                        + f", errors {q['errors']}",
            "met": met})
    q, p, _ = if_rows[1024]
    if q is not None:
        if p is None:
            if_checks.append({"subject": q["name"], "target": ">= Portkey at c=1024",
                              "measured": "portkey_1s_1024 not measured", "met": None})
        else:
            qr, pr = q["sustained_req_per_s"], p["sustained_req_per_s"]
            met = qr is not None and pr is not None and qr >= pr and q["errors"] == 0
            if_checks.append({
                "subject": q["name"], "target": ">= Portkey at c=1024 (c / mean latency), no errors",
                "measured": f"{f1(qr, 1)} vs {f1(pr, 1)} req/s"
                            + (f" = {qr / pr:.2f}x" if qr and pr else "")
                            + f" (wrk {f1(q['req_per_s'], 1)} vs {f1(p['req_per_s'], 1)}); "
                            f"errors {q['errors']} vs {p['errors']}",
                "met": met})
        rk = q["rss_peak_kib"]
        if_checks.append({
            "subject": q["name"], "target": "workers' total RSS <= 128 MiB at c=1024",
            "measured": (f"{rk / 1024:.1f} MiB peak of the sum over {q['rss_procs']} workers "
                         f"({q['rss_samples']} samples; sum of VmHWM {(q['rss_hwm_sum_kib'] or 0) / 1024:.1f} MiB)"
                         if rk else "no sample")
                        + (f"; Portkey {p['rss_peak_kib'] / 1024:.1f} MiB" if p and p["rss_peak_kib"] else ""),
            "met": bool(rk) and rk <= IF_RSS_MAX_KIB and q["rss_samples"] and q["rss_samples"] > 0})
    inflight = {"upstream_latency_ms": lat_ms, "duration_s": int(env.get("IF_DURATION") or 0),
                "warmup_s": int(env.get("IF_WARMUP") or 0),
                "rows": [r for c in IF_CONNS for r in (if_rows[c][2], if_rows[c][0], if_rows[c][1]) if r],
                "checks": if_checks}

now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
meta = {
    "date": now, "git": env["GIT_REV"] + ("+dirty" if env["GIT_DIRTY"] != "0" else ""),
    "duration_s": int(env["DURATION"]), "warmup_s": int(env["WARMUP"]),
    "wrk": f"wrk -t{env['THREADS']} -c{env['CONNS']} -d{env['DURATION']}s --latency",
    "workers": int(env["WORKERS"]), "cpus": os.cpu_count(), "host": platform.node(),
    "innodb_flush_log_at_trx_commit": int(env["FLUSH"]),
    "reserve_users": int(env["NRESERVE"]),
    "bench_only": env.get("BENCH_ONLY") or None, "measured": env["ORDER_STR"].split(),
}
json.dump({"meta": meta, "subjects": subjects, "checks": checks, "rss": rss, "inflight": inflight},
          open(os.path.join(OUT, "results.json"), "w"), indent=2)

# ---- markdown
md = []
md.append(f"# quotacache benchmark — {now}\n")
md.append(f"git {meta['git']}; {meta['wrk']} after a {meta['warmup_s']} s warm-up; lighttpd with "
          f"{meta['workers']} workers; {meta['cpus']} CPUs shared with wrk; "
          f"innodb_flush_log_at_trx_commit={meta['innodb_flush_log_at_trx_commit']}"
          + (f"; BENCH_ONLY=\"{meta['bench_only']}\"" if meta["bench_only"] else "") + ".\n")
if subjects:
    md.append("| subject | URL | req/s | p50 ms | p99 ms | requests | non-2xx | socket errors |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for s in subjects:
        md.append(f"| {s['name']} | `{s['url']}` | {f1(s['req_per_s'])} | {f1(s['p50_ms'], 2)} | "
                  f"{f1(s['p99_ms'], 2)} | {s['requests']:,} | {s['non_2xx']} | {s['socket_errors']} |")
    md.append("")
if checks:
    md.append("| ratio | measured | SPEC §8 target | met |")
    md.append("|---|---:|---|---|")
    for c in checks:
        label = f"{c['subject']} / {c['floor']}" + (" (per operation)" if c["subject"].startswith("reserve_commit") else "")
        meas = (f"{c['ratio']:.2f}x" if (c["min_ratio"] or 0) > 1 else f"{c['ratio']*100:.1f} %") \
            + (f", p99 {c['p99_ms']:.2f} ms" if c["max_p99_ms"] else "")
        met = "-" if c["met"] is None else "yes" if c["met"] else "**no**"
        md.append(f"| {label} | {meas} | {c['target']} | {met} |")
    md.append("")

md.append("CPU during each measurement, in % of one core (100 = one of the "
          f"{meta['cpus']} cores busy; wrk uses the rest), and what happened in the database and "
          "the mock upstream meanwhile (node: the Portkey gateway of portkey_miss):\n")
md.append("| subject | workers | lighttpd | node | mariadbd | mock | Innodb_deadlocks (during) | upstream calls |")
md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
for s in subjects + ([{"name": "rss (mixed)", "extra": extras.get("rss", {})}] if rss else []):
    e = s["extra"]
    md.append(f"| {s['name']} | {f1(e.get('cpu_workers_pct'), 1)} | {f1(e.get('cpu_lighttpd_pct'), 1)} | "
              f"{f1(e.get('cpu_node_pct'), 1)} | {f1(e.get('cpu_mariadbd_pct'), 1)} | {f1(e.get('cpu_mock_pct'), 1)} | "
              f"{e.get('innodb_deadlocks', '-')} | {e.get('upstream_calls', '-')} |")
md.append("")

for s in subjects:
    e = s["extra"]
    if "innodb_deadlocks_before" in e:
        d0, d1, d2 = e["innodb_deadlocks_before"], e.get("innodb_deadlocks_after_warmup"), e.get("innodb_deadlocks_after")
        md.append(f"- {s['name']}: Innodb_deadlocks (server-wide) {d0} before the warm-up, {d1} after it, "
                  f"{d2} after the measurement (+{d2 - d1} during it, +{d1 - d0} during the warm-up); "
                  f"its users' reservations left active: {e.get('active_after_warmup')} after the warm-up, "
                  f"{e.get('active_after_run')} after the run (expire after reservation_ttl); "
                  f"committed in total: {e.get('committed_total')}")
MOCK_BOUND_PCT = 90   # the mock is one Python process (one GIL): near 100 % of a core it is the limit


def mock_note(e):
    m = e.get("cpu_mock_pct")
    if m is None:
        return ""
    if m >= MOCK_BOUND_PCT:
        return (f"the mock (one Python process) used {m:.1f} % of a core: **bounded by the mock**, "
                "the gateway's own limit is higher than this")
    return f"the mock (one Python process) used {m:.1f} % of a core: not the limit"


for name in ("generate_miss", "portkey_miss"):
    if name in by:
        s = next(x for x in subjects if x["name"] == name)
        e = s["extra"]
        who = (f"quotacache workers {f1(e.get('cpu_workers_pct'), 1)} %, lighttpd {f1(e.get('cpu_lighttpd_pct'), 1)} %, "
               f"mariadbd {f1(e.get('cpu_mariadbd_pct'), 1)} %" if name == "generate_miss"
               else f"node (Portkey, one process) {f1(e.get('cpu_node_pct'), 1)} %")
        md.append(f"- {name}: {f1(s['req_per_s'])} req/s, p50 {f1(s['p50_ms'], 2)} ms, p99 "
                  f"{f1(s['p99_ms'], 2)} ms; {e.get('upstream_calls')} upstream calls for {s['requests']:,} "
                  f"requests; CPU: {who}; {mock_note(e)}.")
if "generate_miss" in by and "portkey_miss" in by:
    g, p = by["generate_miss"], by["portkey_miss"]
    gm = extras.get("generate_miss", {}).get("cpu_mock_pct") or 0
    pm = extras.get("portkey_miss", {}).get("cpu_mock_pct") or 0
    r = num(g["req_s"]) / num(p["req_s"])
    md.append(f"- generate_miss / portkey_miss = {r:.2f}x (SPEC §8: >= 1.5x a Node gateway on the same mock). "
              + ("Caveat: the mock was near its limit (>= 90 % of a core) during "
                 + " and ".join(n for n, m in (("generate_miss", gm), ("portkey_miss", pm)) if m >= MOCK_BOUND_PCT)
                 + ", so the ratio compares the mock as much as the gateways"
                 + (" (portkey_miss mock-bound: Portkey's own limit is higher, the ratio overstates quotacache's lead)"
                    if pm >= MOCK_BOUND_PCT else "")
                 + (" (generate_miss mock-bound: quotacache's own limit is higher, the ratio understates its lead)"
                    if gm >= MOCK_BOUND_PCT else "") + "."
                 if max(gm, pm) >= MOCK_BOUND_PCT else
                 f"The mock was not the limit in either ({gm:.1f} % / {pm:.1f} % of a core)."))
if "generate_hit" in by:
    e = extras.get("generate_hit", {})
    md.append(f"- generate_hit: {e.get('upstream_calls')} upstream calls during the measurement (0 expected)")
for s in subjects:
    if s["note"]:
        md.append(f"- {s['name']}: {s['note']}")
md.append("")

if inflight:
    L = inflight["upstream_latency_ms"]
    md.append(f"## Generations in flight: {L} ms upstream (SPEC §8, §9)\n")
    md.append(f"`/api/v1/generate` misses (`inflight_C`: a new prompt each request, enterprise user, "
              f"session tier), Portkey (`portkey_1s_C`) and wrk straight at the mock (`mock_1s_C`, the "
              f"floor) against a second mock answering after {L} ms; "
              f"`wrk -t{env['THREADS']} -cC -d{inflight['duration_s']}s --timeout 10s --latency` after "
              f"{inflight['warmup_s']} s of warm-up at the same c, the warm-up's calls left to end first. "
              "RSS: the summed VmRSS of the quotacache workers (by executable; lighttpd apart), of the "
              "node process or of the mock, sampled every 0.5 s during the measurement, peak.\n")
    md.append("| subject | c | req/s (wrk) | c / mean latency | mean ms | p50 ms | p99 ms | requests | "
              "non-2xx | socket errors (timeouts) | upstream peak in flight | RSS peak MiB (procs) | lighttpd MiB |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    mib = lambda k: "-" if not k else f"{k / 1024:.1f}"
    for r in inflight["rows"]:
        md.append(f"| {r['name']} | {r['conns']} | {f1(r['req_per_s'], 1)} | {f1(r['sustained_req_per_s'], 1)} | "
                  f"{f1(r['latency_mean_ms'], 1)} | {f1(r['p50_ms'], 0)} | {f1(r['p99_ms'], 0)} | {r['requests']:,} | "
                  f"{r['non_2xx']} | {r['socket_errors']} ({r['timeouts'] if r['timeouts'] is not None else '-'}) | "
                  f"{r['upstream_peak_in_flight'] if r['upstream_peak_in_flight'] is not None else '-'} | "
                  f"{mib(r['rss_peak_kib'])} ({r['rss_procs'] if r['rss_procs'] is not None else '-'}) | "
                  f"{mib(r['lighttpd_rss_peak_kib']) if r['name'].startswith('inflight') else '-'} |")
    md.append("")
    if inflight["checks"]:
        md.append("| subject | SPEC §8 target | measured | met |")
        md.append("|---|---|---|---|")
        for c in inflight["checks"]:
            met = "-" if c["met"] is None else "yes" if c["met"] else "**no**"
            md.append(f"| {c['subject']} | {c['target']} | {c['measured']} | {met} |")
        md.append("")
    md.append(f"- Rates: wrk's req/s (completed / duration) cannot reach c here: each connection's last "
              f"request is cut off when the run ends, so with {L} ms answers a perfect gateway shows about "
              f"(D - 1) / D x c (D = {inflight['duration_s']} s). wrk keeps one request outstanding per "
              "connection (a closed loop), so the sustained rate is c / mean latency (Little's law); the "
              "targets use it, and require no errors (a timed-out request has no latency to count).")
    md.append("- The mock is one Python process (about 0.2 ms of CPU per request, one GIL). At the "
              "start of a wrk run every connection sends at once, so the mock answers the first "
              "round over c x 0.2 ms or more: `mock_1s_C` shows that share of the p99, which no gateway "
              "in front of it can beat.")
    for r in inflight["rows"]:
        m = r["cpu_mock_pct"]
        extra_bits = []
        if m is not None and m >= MOCK_BOUND_PCT:
            extra_bits.append(f"the mock used {m:.1f} % of a core: **bounded by the mock**")
        if r["upstream_calls"] is not None:
            extra_bits.append(f"{r['upstream_calls']} upstream calls completed during the measurement")
        if r["warmup_drain_s"]:
            extra_bits.append(f"waited {r['warmup_drain_s']} s for the warm-up's calls to end")
        if r["note"]:
            extra_bits.append(r["note"])
        md.append(f"- {r['name']}: " + "; ".join(extra_bits))
    md.append("")

if rss:
    md.append(f"## Worker RSS after {rss['requests_total']:,} mixed requests\n")
    md.append("health, quota status, cache GET 1 KiB hit, /generate hit in rotation (`bench/mixed.lua`); "
              f"{rss['requests']['warmup'] or 0:,} requests of warm-up, then "
              f"{rss['requests']['half1'] or 0:,} (sample \"half\", after "
              f"{rss['requests_at_half_sample']:,} in all) and {rss['requests']['half2'] or 0:,} more "
              f"(sample \"end\"), at {f1(rss['req_per_s']['half1'])} / {f1(rss['req_per_s']['half2'])} req/s; "
              f"non-2xx {rss['non_2xx']}, socket errors {rss['socket_errors']}. VmRSS in KiB, sampled as each "
              f"half's load stops and again at rest ({env.get('RSS_REST', '3')} s later); peak = VmHWM.\n")
    md.append("| worker pid | at start | after warm-up | half: load stops | half: at rest | end: load stops | "
              "end: at rest | peak | growth over the last half (at rest) |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for w in rss["workers"]:
        md.append(f"| {w['pid']} | {f1(w['rss_start_kib'])} | {f1(w['rss_warmup_kib'])} | "
                  f"{f1(w['rss_half_load_kib'])} | {f1(w['rss_half_kib'])} | "
                  f"{f1(w['rss_end_load_kib'])} | {f1(w['rss_end_kib'])} | {f1(w['peak_kib'])} | "
                  f"{'-' if w['growth_last_half_kib'] is None else format(w['growth_last_half_kib'], '+,d')} |")
    md.append("")
    md.append(f"Max at rest {f1(rss['max_rest_kib'])} KiB ({(rss['max_rest_kib'] or 0) / 1024:.1f} MiB; peak under "
              f"load {(rss['max_peak_kib'] or 0) / 1024:.1f} MiB), max growth "
              f"over the last half {rss['max_growth_last_half_kib']} KiB; target (SPEC §8) ≤ 16 MiB at rest and no growth "
              f"(here: ≤ {RSS_GROWTH_TOL_KIB} KiB): **{'met' if rss['met'] else 'not met'}**"
              + ("" if rss["same_workers_throughout"] else " (a worker was replaced during the run)") + ".")
    for k, v in rss["notes"].items():
        if v:
            md.append(f"- rss {k}: {v}")
    md.append("")

open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
print("\n".join(md))
