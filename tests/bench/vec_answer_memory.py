#!/usr/bin/env python3
"""What one big vec.search answer costs kilnd: one job of 10,000 queries at k 1,000
against 2,000 vectors with 40-byte ids (10 million ids, a `done` of about 430 MB),
under memory.max_bytes (MB, default 1GiB). Prints the time from submit to `done`,
kilnd's peak resident memory (VmHWM) and the budget's own peak (stats: what kilnd
counted against memory.max_bytes); then the same for fetching its scores over
HTTP (GET /api/v1/jobs/ID/parts/scores.npy). With a budget the answer cannot fit
in (e.g. MB=256MiB) the job ends too_large before it runs. A benchmark, not a
test: it prints, asserts nothing.

    KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/vec_answer_memory.py
    MB=256MiB KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/vec_answer_memory.py
"""
import asyncio
import json
import os
import sys
import time
import urllib.request

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd  # noqa: E402
from kiln_objects import next_ref, part_frames, send_frames, vec_put, vectors_payload  # noqa: E402


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1])
    return 0


async def main():
    k = Kilnd(env={"KILN_MEMORY_MAX_BYTES": os.environ.get("MB", "1GiB")}).start()
    try:
        c = await Client.connect(k.url)
        n, dim, q = 2000, 8, int(os.environ.get("Q", "10000"))
        rng = np.random.default_rng(1)
        r = await vec_put(c, "c", rng.standard_normal((n, dim)).astype("f4"), [f"id-{i:036d}" for i in range(n)],
                          metric="l2")
        assert r.get("op") == "vec", r
        payload, shape = vectors_payload(rng.standard_normal((q, dim)).astype("f4"))
        ref = next_ref(c)
        await send_frames(c, part_frames(ref, "queries", "f32", shape, payload))
        t = time.monotonic()
        acc = await c.call({"op": "submit", "kind": "vec.search", "params": {"collection": "c", "k": 1000},
                            "ref": ref})
        assert acc.get("op") == "accepted", acc
        done, _, _ = await c.read_done(acc["job"], timeout=600)
        took = time.monotonic() - t
        mem = (await c.call({"op": "stats"}))["memory"]
        state = done["state"] if done["state"] == "done" else f"{done['state']} ({done['error']['code']})"
        print(f"{q} queries x k 1000: {state} in {took:.2f} s, done {len(json.dumps(done)) / 1e6:.0f} MB; "
              f"kilnd peak RSS {peak_rss_kib(k.proc.pid) / 1024:.0f} MiB; budget peak "
              f"{mem['peak_bytes'] / 2**20:.0f} of {mem['max_bytes'] / 2**20:.0f} MiB")
        if done["state"] == "done":
            t = time.monotonic()
            url = f"{k.http}/api/v1/jobs/{acc['job']}/parts/scores.npy"
            with urllib.request.urlopen(url, timeout=600) as r:
                body = r.read()
            print(f"GET scores.npy: {len(body) / 1e6:.0f} MB in {time.monotonic() - t:.2f} s; kilnd peak RSS "
                  f"{peak_rss_kib(k.proc.pid) / 1024:.0f} MiB")
        await c.close()
    finally:
        k.stop()


asyncio.run(main())
