#!/usr/bin/python3
"""risk.score against XGBoost's own predict, and single-row jobs end to end.

    python3 tests/bench/risk_score.py [--rows 200000] [--repeat 3] [--duration 10] [--json FILE]

After `make build` (or with --build DIR). Starts a fresh kilnd on a free loopback
port (state in a temporary directory) and measures, on the same rows and models:

  * batch scoring on the CPU, for two models trained here with Debian's
    python3-xgboost (200 trees of depth 6 on 12 features; 500 trees of depth 8 on
    30 features), rows with 5 % missing values:
      - XGBoost 1.7: Booster.inplace_predict and predict(DMatrix), nthread 2;
      - kiln, one job of all the rows (one CPU worker): the job's own run time
        (`done.ms.run`), and submit-to-done wall time;
      - kiln, two jobs of half the rows each at once (the two CPU workers): wall time;
    and the ratios kiln / XGBoost (goal: >= 2x XGBoost's best, nthread 2). kiln's
    probabilities are compared with XGBoost's: the largest difference and how many
    are bit-identical.
  * single-row jobs end to end with kiln-bench (32 connections, pipeline 4, closed
    loop, as compare.py runs them): `--scenario score-model --model` the 200-tree
    model (goal >= 20,000 jobs/s on this machine, client included) and `--scenario
    score` (altman-z2). XGBoost's inplace_predict of one row from Python is timed
    for reference.

Each figure is the best of --repeat runs. It is a benchmark, not a test: nothing
is asserted. On a shared machine the numbers move with the load; the ratios are
measured side by side in one run.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from kiln_fixture import Client, Kilnd  # noqa: E402
from kiln_objects import model_put, next_ref, part_frames, send_frames  # noqa: E402

MODELS = [("trees200_depth6", 200, 6, 12), ("trees500_depth8", 500, 8, 30)]


def train(trees, depth, features, seed, tmp):
    """A binary:logistic model of `trees` full-depth trees, as JSON bytes, and the
    Booster XGBoost loads from that file."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(20000, features)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] + rng.normal(size=len(x)) > 0).astype(np.float32)
    b = xgb.train({"objective": "binary:logistic", "max_depth": depth, "tree_method": "hist", "eta": 0.1,
                   "nthread": 2, "seed": seed}, xgb.DMatrix(x, label=y), num_boost_round=trees)
    path = os.path.join(tmp, f"m{trees}_{depth}.json")
    b.save_model(path)
    loaded = xgb.Booster()
    loaded.load_model(path)
    loaded.set_param({"nthread": 2})
    with open(path, "rb") as f:
        return f.read(), loaded


def best_of(n, fn):
    """The smallest time of n calls of fn (each returns seconds), and the last result."""
    best, out = float("inf"), None
    for _ in range(n):
        t, out = fn()
        best = min(best, t)
    return best, out


def xgb_times(booster, rows, repeat):
    def inplace():
        t = time.perf_counter()
        p = booster.inplace_predict(rows)
        return time.perf_counter() - t, p

    def dmatrix():
        t = time.perf_counter()
        p = booster.predict(xgb.DMatrix(rows, nthread=2))
        return time.perf_counter() - t, p

    inplace()  # warm-up
    t_in, p = best_of(repeat, inplace)
    t_dm, p_dm = best_of(repeat, dmatrix)
    return t_in, t_dm, np.asarray(p_dm, dtype=np.float32)


async def submit_rows(c, params, rows):
    ref = next_ref(c)
    a = np.ascontiguousarray(rows, dtype="<f4")
    await send_frames(c, part_frames(ref, "rows", "f32", a.shape, a.tobytes()))
    acc = await c.call({"op": "submit", "kind": "risk.score", "params": params, "ref": ref, "cache": False})
    assert acc["op"] == "accepted", acc
    return acc["job"]


async def kiln_times(url, name, rows, repeat):
    """(run ms of one job, wall s of one job, wall s of two half jobs at once, pd)."""
    c1, c2 = await Client.connect(url), await Client.connect(url)
    run_ms, wall1, wall2, pd = float("inf"), float("inf"), float("inf"), None
    half = len(rows) // 2
    for _ in range(repeat + 1):  # the first round warms the model up (compile, caches)
        t = time.perf_counter()
        job = await submit_rows(c1, {"model": name}, rows)
        done, parts, _ = await c1.read_done(job, timeout=600)
        assert done["state"] == "done", done
        wall1 = min(wall1, time.perf_counter() - t)
        run_ms = min(run_ms, done["ms"]["run"])
        pd = parts["pd"]
        t = time.perf_counter()
        jobs = await asyncio.gather(submit_rows(c1, {"model": name}, rows[:half]),
                                    submit_rows(c2, {"model": name}, rows[half:]))
        await asyncio.gather(c1.read_done(jobs[0], timeout=600), c2.read_done(jobs[1], timeout=600))
        wall2 = min(wall2, time.perf_counter() - t)
    await c1.close()
    await c2.close()
    return run_ms, wall1, wall2, pd


def kiln_bench(bench, url, args, duration):
    cmd = [bench, "--url", url, "--connections", "32", "--pipeline", "4", "--duration", str(duration),
           "--json"] + args
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if out.returncode != 0:
        return {"error": out.stderr.strip()}
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="the build tree (default build/)")
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    os.environ.setdefault("KILND", os.path.join(a.build, "daemon", "kilnd"))
    bench = os.path.join(a.build, "daemon", "bench", "kiln-bench")
    import kiln_fixture
    kiln_fixture.KILND = os.environ["KILND"]

    report = {"rows": a.rows, "batch": [], "single_row": {}}
    k = Kilnd().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"batch scoring on the CPU, {a.rows} rows (5 % missing), best of {a.repeat}; "
                  f"XGBoost {xgb.__version__} nthread 2")
            print(f"{'model':<18} {'xgb inplace':>12} {'xgb DMatrix':>12} {'kiln 1 job':>12} {'(wall)':>10} "
                  f"{'kiln 2 jobs':>12} {'1 job/xgb':>10} {'2 jobs/xgb':>10} {'max |dpd|':>10} {'bit-equal':>10}")
            boosters = []
            for i, (name, trees, depth, features) in enumerate(MODELS):
                data, booster = train(trees, depth, features, 100 + i, tmp)
                boosters.append(booster)
                rng = np.random.default_rng(7 + i)
                rows = rng.normal(size=(a.rows, features)).astype(np.float32)
                rows[rng.random(rows.shape) < 0.05] = np.nan

                async def put():
                    c = await Client.connect(k.url)
                    r = await model_put(c, name, data, timeout=120)
                    await c.close()
                    return r
                assert asyncio.run(put())["op"] == "model"
                t_in, t_dm, want = xgb_times(booster, rows, a.repeat)
                run_ms, wall1, wall2, pd = asyncio.run(kiln_times(k.url, name, rows, a.repeat))
                n = len(rows)
                xgb_best = n / min(t_in, t_dm)
                row = {"model": name, "trees": trees, "depth": depth, "features": features,
                       "xgb_inplace_rows_per_s": n / t_in, "xgb_dmatrix_rows_per_s": n / t_dm,
                       "kiln_one_job_rows_per_s": n / (run_ms / 1e3), "kiln_one_job_wall_rows_per_s": n / wall1,
                       "kiln_two_jobs_wall_rows_per_s": n / wall2,
                       "ratio_one_job": n / (run_ms / 1e3) / xgb_best, "ratio_two_jobs": n / wall2 / xgb_best,
                       "max_abs_pd_diff": float(np.max(np.abs(pd - want))),
                       "bit_identical": int(np.sum(pd == want)), "compared": n}
                report["batch"].append(row)
                print(f"{name:<18} {n / t_in:12.4g} {n / t_dm:12.4g} {row['kiln_one_job_rows_per_s']:12.4g} "
                      f"{n / wall1:10.4g} {n / wall2:12.4g} {row['ratio_one_job']:9.2f}x {row['ratio_two_jobs']:9.2f}x "
                      f"{row['max_abs_pd_diff']:10.2g} {row['bit_identical']:>10}")
            print("(rows/s; kiln 1 job: done.ms.run of one job on one worker; (wall): submit to done with the "
                  "upload; kiln 2 jobs: two half jobs at once, wall)")

            one = rng.normal(size=(1, MODELS[0][3])).astype(np.float32)
            booster = boosters[0]
            booster.set_param({"nthread": 1})
            booster.inplace_predict(one)

            def one_row():
                t0 = time.perf_counter()
                booster.inplace_predict(one)
                return time.perf_counter() - t0, None
            t, _ = best_of(200, one_row)
            report["single_row"]["xgb_inplace_one_row_us"] = t * 1e6
            print(f"\nsingle-row jobs, kiln-bench 32 connections, pipeline 4, {a.duration:g} s "
                  f"(XGBoost inplace_predict of one row from Python: {t * 1e6:.0f} us)")
            for label, args in (("score-model", ["--scenario", "score-model", "--model", MODELS[0][0]]),
                                ("score", ["--scenario", "score"])):
                r = kiln_bench(bench, k.url, args, a.duration)
                report["single_row"][label] = r
                if "error" in r:
                    print(f"  {label:<12} failed: {r['error']}")
                else:
                    print(f"  {label:<12} {r['jobs_per_s']:10.0f} jobs/s  p50 {r['p50_ms']:.2f} ms  "
                          f"p99 {r['p99_ms']:.2f} ms  errors {r['errors']}")
    finally:
        k.stop()
        k.cleanup()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
