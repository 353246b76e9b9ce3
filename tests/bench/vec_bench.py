#!/usr/bin/python3
"""vec.search against FAISS's exact index (IndexFlatIP / IndexFlatL2 on OpenBLAS,
2 threads) on the same data in one run (not a CTest test; it prints figures and
asserts nothing).

For each collection (100,000 x 384 and 1,000,000 x 128 by default: standard normal
values, ids in row order) it measures, k 10:

  batch     256 queries in one vec.search job on kilnd (submit with the queries
            as a binary part -> `done` and the scores part; new queries every
            repeat, so nothing comes from the cache), against FAISS's
            index.search of the same 256 queries; queries/s, median of --repeats;
  single    single-query jobs from kiln-bench --scenario vec --collection C over
            8 connections, --pipeline jobs in flight each (kilnd batches them),
            against FAISS searching one query at a time in a loop; queries/s;

and prints kiln / FAISS for each (targets: batch >= 1.5, single >= 1). The first
batch's ids are checked against FAISS's (recall where FAISS's k-th and k+1-th
distances are apart). kilnd runs on the CPU backend with its worker count at the
number of cores; FAISS gets faiss.omp_set_num_threads(--threads).

    KILND=build/daemon/kilnd KILN_BENCH=build/daemon/bench/kiln-bench \\
        /usr/bin/python3 tests/bench/vec_bench.py [--sizes 100000x384,1000000x128] \\
        [--metric ip|l2] [--repeats 5] [--duration 10] [--pipeline 4] [--json FILE]

Needs python3-faiss and python3-numpy (Debian); the machine's other load shows in
the figures, so run it on a quiet machine and read the ratios, which come from
the same minutes.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd, encode_frame  # noqa: E402
from kiln_objects import next_ref, send_frames, vec_put  # noqa: E402

try:
    import faiss
except ImportError:
    sys.exit("vec_bench.py needs python3-faiss (apt-get install python3-faiss)")

KILN_BENCH = os.environ.get("KILN_BENCH", "build/daemon/bench/kiln-bench")
K = 10
BATCH = 256


def dataset(n, dim, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim), dtype=np.float32)


async def upload(url, name, rows, metric):
    c = await Client.connect(url)
    t0 = time.monotonic()
    r = await vec_put(c, name, rows, [f"{i:07d}" for i in range(len(rows))], metric=metric, piece=16 << 20,
                      timeout=600)
    await c.close()
    assert r.get("op") == "vec", r
    return time.monotonic() - t0


async def kiln_batches(url, name, queries):
    """Runs each [256][dim] block as one job; returns (seconds per job, first ids)."""
    c = await Client.connect(url)
    times, first = [], None
    for q in queries:
        a = np.ascontiguousarray(q, dtype="<f4")
        t0 = time.monotonic()
        ref = next_ref(c)
        await send_frames(c, [encode_frame({"ref": ref, "part": "queries", "dtype": "f32",
                                            "shape": list(a.shape)}, a.tobytes())])
        acc = await c.call({"op": "submit", "kind": "vec.search", "ref": ref,
                            "params": {"collection": name, "k": K}}, timeout=600)
        assert acc.get("op") == "accepted", acc
        done, parts, _ = await c.read_done(acc["job"], timeout=600)
        times.append(time.monotonic() - t0)
        assert done["state"] == "done", done
        if first is None:
            first = done["result"]["ids"]
    await c.close()
    return times, first


def faiss_index(rows, metric):
    index = faiss.IndexFlatIP(rows.shape[1]) if metric == "ip" else faiss.IndexFlatL2(rows.shape[1])
    index.add(rows)
    return index


def faiss_batches(index, queries):
    times, first = [], None
    for q in queries:
        t0 = time.monotonic()
        d, i = index.search(q, K + 1)
        times.append(time.monotonic() - t0)
        if first is None:
            first = (d, i)
    return times, first


def faiss_single(index, dim, seconds, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((4096, dim), dtype=np.float32)
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        index.search(q[n % len(q):n % len(q) + 1], K)
        n += 1
    return n / (time.monotonic() - t0)


def kiln_single(url, name, seconds, pipeline):
    run = subprocess.run([KILN_BENCH, "--url", url, "--scenario", "vec", "--collection", name, "--connections", "8",
                          "--pipeline", str(pipeline), "--duration", str(seconds), "--json"],
                         capture_output=True, text=True, timeout=seconds + 120)
    if run.returncode != 0:
        raise RuntimeError(f"kiln-bench failed: {run.stderr}")
    return json.loads(run.stdout)


def recall(kiln_ids, faiss_result):
    d, i = faiss_result
    same = total = 0
    for qi, ids in enumerate(kiln_ids):
        if abs(d[qi, K - 1] - d[qi, K]) <= 1e-4:
            continue  # a near tie at the k-th place: float32 FAISS may pick either
        total += 1
        same += sorted(ids) == sorted(f"{r:07d}" for r in i[qi, :K])
    return same, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000x384,1000000x128")
    ap.add_argument("--metric", choices=("ip", "l2"), default="ip")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--pipeline", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    out = []
    kilnd = Kilnd(env={"KILN_GPU_BACKEND": "cpu", "KILN_CPU_THREADS": str(args.threads),
                       "KILN_CACHE_ENABLED": "false", "KILN_LOG_LEVEL": "warning"}).start()
    try:
        for size in args.sizes.split(","):
            n, dim = (int(v) for v in size.split("x"))
            name = f"bench-{n}x{dim}"
            rows = dataset(n, dim, seed=n + dim)
            put_s = asyncio.run(upload(kilnd.url, name, rows, args.metric))
            rng = np.random.default_rng(dim)
            blocks = [rng.standard_normal((BATCH, dim), dtype=np.float32) for _ in range(args.repeats + 1)]
            # The first block warms both up (kilnd loads the collection once, on first use).
            k_times, k_ids = asyncio.run(kiln_batches(kilnd.url, name, blocks))
            index = faiss_index(rows, args.metric)
            f_times, f_first = faiss_batches(index, blocks)
            k_batch = BATCH / statistics.median(k_times[1:])
            f_batch = BATCH / statistics.median(f_times[1:])
            same, total = recall(k_ids, f_first)
            single = kiln_single(kilnd.url, name, args.duration, args.pipeline)
            f_single = faiss_single(index, dim, args.duration, seed=1)
            row = {"collection": size, "metric": args.metric, "put_s": round(put_s, 2),
                   "kiln_batch_qps": round(k_batch, 1), "faiss_batch_qps": round(f_batch, 1),
                   "batch_ratio": round(k_batch / f_batch, 2),
                   "kiln_single_qps": round(single["jobs_per_s"], 1), "faiss_single_qps": round(f_single, 1),
                   "single_ratio": round(single["jobs_per_s"] / f_single, 2),
                   "kiln_single_p50_ms": single["p50_ms"], "kiln_single_p99_ms": single["p99_ms"],
                   "kiln_single_errors": single["errors"], "recall_checked": f"{same}/{total}"}
            out.append(row)
            print(f"{size} ({args.metric}, k {K}; put {put_s:.1f} s)")
            print(f"  256 queries a job : kiln {k_batch:8.1f} q/s   FAISS {f_batch:8.1f} q/s   "
                  f"ratio {k_batch / f_batch:5.2f} (target >= 1.5)")
            print(f"  1 query a job, 8 connections x {args.pipeline}: kiln {single['jobs_per_s']:8.1f} q/s "
                  f"(p50 {single['p50_ms']:.1f} ms, p99 {single['p99_ms']:.1f} ms, errors {single['errors']})   "
                  f"FAISS one at a time {f_single:8.1f} q/s   ratio {single['jobs_per_s'] / f_single:5.2f} "
                  f"(target >= 1)")
            print(f"  same top-{K} as FAISS: {same} of {total} queries without a near tie at rank {K}")
            del index, rows
    finally:
        kilnd.stop()
        kilnd.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
