#!/usr/bin/env python3
"""What one client's big message costs every other client: the longest WebSocket
ping round trip another connection sees while one client sends

  - a vec.put of 2,000,000 ids (a 28 MB text message, its vectors as a part),
  - a risk.score submit with 200,000 rows inline (a 7 MB text message),
  - the same submit as an HTTP POST /api/v1/jobs body,

each measured from a separate process (so this script's own JSON encoding does not
count), which pings every 5 ms and lists the collections (vec.list) after each
ping. kilnd decodes such messages and bodies on a worker thread; on its loop thread
they would hold every connection for as long as the parse takes. It reads lists in
a read transaction that no writer holds up; in the writer's queue they would wait
for the put's commit. A benchmark, not a test: it prints, asserts nothing.

    KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/loop_stall.py
"""
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd  # noqa: E402
from kiln_objects import part_frames  # noqa: E402


async def pinger(url, seconds):
    """Pings and lists for `seconds`; prints [[send time, ping round trip s,
    vec.list round trip s], ...] as JSON."""
    c = await Client.connect(url)
    out, end = [], time.time() + seconds
    while time.time() < end:
        t = time.time()
        await (await c.ws.ping())
        t1 = time.time()
        r = await c.call({"op": "vec.list"}, 60)
        assert r.get("op") == "collections", r
        out.append((t, t1 - t, time.time() - t1))
        await asyncio.sleep(0.005)
    await c.close()
    print(json.dumps(out))


def start_pinger(url, seconds):
    return subprocess.Popen([sys.executable, __file__, "--pinger", url, str(seconds)], stdout=subprocess.PIPE)


def worst_after(p, t0):
    pings = [(t, rtt, lrt) for t, rtt, lrt in json.loads(p.communicate()[0]) if t >= t0 - 0.1]
    t, rtt, _ = max(pings, key=lambda e: e[1])
    return rtt, t - t0, len(pings), max(e[2] for e in pings)


async def measure(k, label, send):
    """send() does the big request and returns (what it took, its answer)."""
    p = start_pinger(k.url, 6)
    await asyncio.sleep(1.0)  # the pinger is connected and pinging
    t0 = time.time()
    took, answer = await send()
    rtt, at, n, lrt = worst_after(p, t0)
    print(f"{label:<44} {answer:<10} {took:8.2f} s   longest ping {rtt * 1e3:7.1f} ms (at +{at:.2f} s, "
          f"{n} pings), longest vec.list {lrt * 1e3:7.1f} ms")


async def main():
    k = Kilnd(env={"KILN_CPU_THREADS": "2", "KILN_LOG_LEVEL": "warning"}).start()
    try:
        c = await Client.connect(k.url)
        rng = np.random.default_rng(0)

        n, dim = 2_000_000, 4
        rows = rng.normal(size=(n, dim)).astype(np.float32)
        ids = [f"big-{i:07d}" for i in range(n)]
        msg = json.dumps({"op": "vec.put", "collection": "stall", "metric": "ip", "ids": ids, "ref": 7})
        frames = part_frames(7, "vectors", "f32", [n, dim], rows.tobytes(), piece=16 << 20)

        async def vec_put():
            t0 = time.time()
            for f in frames:
                await c.ws.send(f)
            await c.ws.send(msg)
            r = await c.recv(120)
            return time.time() - t0, r.get("op")
        await measure(k, f"vec.put, {n:,} ids ({len(msg) / 1e6:.0f} MB message)", vec_put)

        rows = np.round(rng.normal(size=(200_000, 4)), 4).tolist()
        sub = json.dumps({"op": "submit", "kind": "risk.score", "ref": 8,
                          "params": {"model": "altman-z2", "rows": rows}})

        async def inline_submit():
            t0 = time.time()
            await c.ws.send(sub)
            r = await c.recv(120)
            return time.time() - t0, r.get("op")
        await measure(k, f"submit, 200,000 rows inline ({len(sub) / 1e6:.0f} MB message)", inline_submit)

        rows[0][0] += 1.0  # another job: not answered from the cache
        body = json.dumps({"kind": "risk.score", "params": {"model": "altman-z2", "rows": rows}}).encode()

        def post():
            req = urllib.request.Request(k.http + "/api/v1/jobs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status

        async def http_submit():
            t0 = time.time()
            status = await asyncio.get_running_loop().run_in_executor(None, post)
            return time.time() - t0, f"HTTP {status}"
        await measure(k, f"POST /api/v1/jobs, such rows ({len(body) / 1e6:.0f} MB body)", http_submit)
        await c.close()
    finally:
        k.stop()
        k.cleanup()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--pinger":
        asyncio.run(pinger(sys.argv[2], float(sys.argv[3])))
    else:
        asyncio.run(main())
