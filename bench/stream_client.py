#!/usr/bin/env python3
"""stream_client.py - a closed-loop load of streamed chat completions (SSE),
for bench/streams.sh.  C connections each send one streamed request after
another for D seconds (after a warm-up of W seconds, not counted) and time,
per request, the first `data:` event (time to first byte of the stream) and
the end ([DONE]).  Prints one JSON object: requests, errors, req/s, TTFB and
total percentiles (ms), the peak number of streams open at once.

    stream_client.py URL KEY C D [--warmup W] [--prompt TEXT] [--unique]
                     [--path /v1/chat/completions] [--body-extra JSON]

--unique: every request gets its own prompt (misses); else one prompt (hits).
The prompt TEXT may carry the mock's markers ([[first-chunk-ms:1000]] ...).
"""
import argparse
import asyncio
import json
import os
import time
from urllib.parse import urlsplit


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


async def one(host, port, path, key, body):
    """(ttfb_s, total_s) of one streamed request, or raises."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        data = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"Connection: close\r\n\r\n").encode()
        writer.write(head + data)
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(status.decode(errors="replace").strip())
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        buf, ttfb = b"", None
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            buf += chunk
            if ttfb is None and b"data:" in buf:
                ttfb = time.monotonic() - t0
            if b"[DONE]" in buf:
                break
            if b'"error"' in buf:
                raise RuntimeError("error event")
            if len(buf) > 1 << 20:
                buf = buf[-64:]
        if ttfb is None or b"[DONE]" not in buf:
            raise RuntimeError("stream ended without [DONE]")
        return ttfb, time.monotonic() - t0
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("key", help="an API key, or several separated by commas")
    ap.add_argument("conns", type=int)
    ap.add_argument("duration", type=float)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--prompt", default="[[first-chunk-ms:1000]] [[chunk-ms:50]] write me a short answer please")
    ap.add_argument("--unique", action="store_true")
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--body-extra", default="{}")
    a = ap.parse_args()
    keys = a.key.split(",")   # several users: connection i uses key i mod n
    u = urlsplit(a.url)
    extra = json.loads(a.body_extra)
    state = {"open": 0, "peak": 0, "seq": 0}
    ttfb, total, errors = [], [], []
    t_start = time.monotonic()
    t_measure = t_start + a.warmup
    t_end = t_measure + a.duration

    async def worker(i):
        while time.monotonic() < t_end:
            state["seq"] += 1
            prompt = a.prompt + (f" #{os.getpid()}-{i}-{state['seq']}" if a.unique else "")
            if a.path.startswith("/v1/"):
                body = {"model": "mock-model", "messages": [{"role": "user", "content": prompt}],
                        "stream": True, "temperature": 0}
            else:
                body = {"task": "bench_stream", "prompt": prompt, "stream": True}
            body.update(extra)
            start = time.monotonic()
            state["open"] += 1
            if start >= t_measure:
                state["peak"] = max(state["peak"], state["open"])
            try:
                f, t = await one(u.hostname, u.port, a.path, keys[i % len(keys)], body)
                if start >= t_measure and start + t <= t_end:
                    ttfb.append(f)
                    total.append(t)
            except Exception as e:  # counted, then go on
                if start >= t_measure:
                    errors.append(str(e)[:80])
                await asyncio.sleep(0.05)
            finally:
                state["open"] -= 1

    await asyncio.gather(*(worker(i) for i in range(a.conns)))
    ms = lambda v: None if v is None else round(v * 1000, 1)
    print(json.dumps({
        "conns": a.conns, "duration_s": a.duration, "requests": len(total), "errors": len(errors),
        "error_samples": sorted(set(errors))[:3], "req_per_s": round(len(total) / a.duration, 1),
        "ttfb_p50_ms": ms(pct(ttfb, 50)), "ttfb_p99_ms": ms(pct(ttfb, 99)),
        "total_p50_ms": ms(pct(total, 50)), "total_p99_ms": ms(pct(total, 99)),
        "peak_open_streams": state["peak"],
    }))


if __name__ == "__main__":
    asyncio.run(main())
