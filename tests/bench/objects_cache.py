#!/usr/bin/env python3
"""A collection bigger than the old fixed 1 GiB bound on idle loaded objects:
four single-query vec.search jobs in turn on 300,000 x 1,000 float32 vectors
(1.12 GiB), with memory.objects_cache_bytes at 1 GiB and at its default (half of
memory.max_bytes). Prints each job's wall time and the loads and hits kilnd
counted (/metrics). A benchmark, not a test: it asserts nothing.

    KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/objects_cache.py [--rows N] [--dim D]
"""
import argparse
import asyncio
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd, encode_frame, metrics  # noqa: E402
from kiln_objects import next_ref, send_frames, vec_put  # noqa: E402


def objects_counters(k):
    m = metrics(k)
    return int(m[("kiln_objects_loads_total", frozenset())]), int(m[("kiln_objects_hits_total", frozenset())])


async def run(k, n, dim):
    c = await Client.connect(k.url)
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    put = await vec_put(c, "big", rows, [f"{i:07d}" for i in range(n)], metric="ip", piece=16 << 20, timeout=900)
    assert put.get("op") == "vec", put
    del rows
    before = objects_counters(k)
    walls = []
    for _ in range(4):
        q = np.ascontiguousarray(rng.standard_normal((1, dim), dtype=np.float32), dtype="<f4")
        ref = next_ref(c)
        await send_frames(c, [encode_frame(
            {"ref": ref, "part": "queries", "dtype": "f32", "shape": list(q.shape)}, q.tobytes())])
        t0 = time.time()
        acc = await c.call({"op": "submit", "kind": "vec.search", "ref": ref,
                            "params": {"collection": "big", "k": 10}})
        done, _, _ = await c.read_done(acc["job"], timeout=300)
        walls.append(time.time() - t0)
        assert done["state"] == "done", done
    after = objects_counters(k)
    await c.close()
    return walls, after[0] - before[0], after[1] - before[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=1000)
    a = ap.parse_args()
    gib = a.rows * a.dim * 4 / 2**30
    print(f"{a.rows:,} x {a.dim} float32 ({gib:.2f} GiB), four single-query jobs in turn")
    for label, env in (("memory.objects_cache_bytes=1GiB", {"KILN_MEMORY_OBJECTS_CACHE_BYTES": "1GiB"}),
                       ("memory.objects_cache_bytes default", {})):
        env.update({"KILN_CPU_THREADS": "2", "KILN_CACHE_ENABLED": "false", "KILN_STORE_MAP_SIZE_GB": "8",
                    "KILN_LOG_LEVEL": "warning"})
        k = Kilnd(env=env).start()
        try:
            walls, loads, hits = asyncio.run(run(k, a.rows, a.dim))
            print(f"{label:<38} job wall s {', '.join(f'{w:.3f}' for w in walls)}; loads {loads}, hits {hits}")
        finally:
            k.stop()
            k.cleanup()


if __name__ == "__main__":
    main()
