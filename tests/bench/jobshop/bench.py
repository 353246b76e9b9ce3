"""sched.jobshop against MiniZinc + Gecode, side by side on the same instances and
the same time limits (a benchmark, not a test: it prints numbers and asserts none).

    python3 tests/bench/jobshop/bench.py [--build build] [--limits 1,10] [--json FILE]

It starts its own kilnd (from --build, on a free loopback port, state in a temporary
directory) and, for each instance of tests/bench/jobshop/instances and each time
limit, runs one sched.jobshop job (one walk: one CPU core, seed 0) and Debian's
`minizinc` with Gecode on a plain disjunctive model (one thread), one after the
other, then prints both makespans and their gaps to the optimum. Then:
  - ft10 with target 930 over --seeds seeds: the median time to reach it;
  - Taillard's ta01-ta10 (taillard.py; optima known) at the first limit, kiln and
    Gecode: the mean gap, a check on instances the search was not tuned on;
  - candidate moves judged per second (the results' `moves` over their run time).
With --backend cuda the kilnd uses its CUDA plugin (gpu.backend=cuda) and jobs run
the GPU's default walks; compare with a --backend cpu run on the same machine.

Needs the Debian packages minizinc (MiniZinc 2.6 with Gecode 6.2: `apt-get install
minizinc`) and python3-websockets. Numbers from a shared machine are noisy."""
import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import taillard  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# The plain disjunctive model: only disjunctive.mzn (globals.mzn breaks on Debian's
# Gecode library); jobs may have fewer operations than machines.
MODEL = """include "disjunctive.mzn";
int: n;
int: m;
array[1..n] of int: len;
array[1..n, 1..m] of int: mach;
array[1..n, 1..m] of int: dur;
int: horizon = sum(j in 1..n, k in 1..len[j])(dur[j, k]);
array[1..n, 1..m] of var 0..horizon: s;
var 0..horizon: makespan;
constraint forall(j in 1..n, k in 1..len[j] - 1)(s[j, k] + dur[j, k] <= s[j, k + 1]);
constraint forall(j in 1..n where len[j] > 0)(s[j, len[j]] + dur[j, len[j]] <= makespan);
constraint forall(r in 0..m - 1)(
  disjunctive([s[j, k] | j in 1..n, k in 1..len[j] where mach[j, k] == r],
              [dur[j, k] | j in 1..n, k in 1..len[j] where mach[j, k] == r]));
solve minimize makespan;
output ["makespan = \\(makespan)\\n"];
"""


def read_orlib(text):
    nums = [int(t) for line in text.splitlines() for t in line.split("#")[0].split()]
    n, m = nums[0], nums[1]
    return [[(nums[2 + 2 * (j * m + k)], nums[3 + 2 * (j * m + k)]) for k in range(m)] for j in range(n)]


def dzn(jobs):
    n, m = len(jobs), max(mach for ops in jobs for mach, _ in ops) + 1
    width = max(len(ops) for ops in jobs)

    def grid(f):
        return "[|" + "|".join(",".join(str(f(ops[k]) if k < len(ops) else 0) for k in range(width))
                               for ops in jobs) + "|]"
    return (f"n={n};\nm={max(m, width)};\nlen={[len(o) for o in jobs]};\n"
            f"mach={grid(lambda o: o[0])};\ndur={grid(lambda o: o[1])};\n")


def gecode(jobs, limit_s, tmp):
    """The last makespan MiniZinc + Gecode printed within the limit, and whether it
    proved it optimal."""
    model, data = os.path.join(tmp, "js.mzn"), os.path.join(tmp, "js.dzn")
    with open(model, "w") as f:
        f.write(MODEL)
    with open(data, "w") as f:
        f.write(dzn(jobs))
    p = subprocess.run(["minizinc", "--solver", "gecode", "--time-limit", str(int(limit_s * 1000)), "-i", model, data],
                       capture_output=True, text=True, timeout=limit_s + 120)
    found = re.findall(r"makespan = (\d+)", p.stdout)
    return (int(found[-1]) if found else None), "==========" in p.stdout


class Kiln:
    def __init__(self, build, backend):
        self.tmp = tempfile.mkdtemp(prefix="kiln-jobshop-bench-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        env.update({"KILN_SERVER_LISTEN": f"127.0.0.1:{self.port}", "KILN_STORE_PATH": os.path.join(self.tmp, "st"),
                    "KILN_STORE_MAP_SIZE_GB": "2", "KILN_AUTH_REQUIRED": "false", "KILN_LOG_TARGET": "stderr",
                    "KILN_CACHE_ENABLED": "false", "KILN_GPU_BACKEND": backend,
                    "KILN_PLUGIN_DIR": os.path.join(build, "gpu", "cuda")})
        self.log = open(os.path.join(self.tmp, "kilnd.log"), "wb")
        self.proc = subprocess.Popen([os.path.join(build, "daemon", "kilnd")], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit(f"kilnd did not start; see {self.tmp}/kilnd.log")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def solve(self, text, params):
        """The `done` of one job on `text` with these params."""
        async with websockets.connect(f"ws://127.0.0.1:{self.port}/ws", max_size=None) as ws:
            await ws.send(json.dumps({"op": "hello", "client": "jobshop-bench/1"}))
            json.loads(await ws.recv())
            payload = text.encode()
            header = json.dumps({"ref": 1, "part": "instance", "dtype": "bytes", "shape": [len(payload)]}).encode()
            await ws.send(b"KLNB" + struct.pack("<I", len(header)) + header + payload)
            await ws.send(json.dumps({"op": "submit", "ref": 1, "kind": "sched.jobshop", "params": params}))
            while True:
                m = await ws.recv()
                if isinstance(m, bytes):
                    continue
                m = json.loads(m)
                if m.get("op") == "error":
                    raise RuntimeError(m)
                if m.get("op") == "done":
                    return m


def gap(v, opt):
    return None if v is None else 100.0 * (v - opt) / opt


def fmt(v, opt):
    if v is None:
        return f"{'—':>6} {'':>7}"
    return f"{v:>6} {gap(v, opt):>6.2f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--limits", default="1,10", help="time limits in seconds, comma-separated")
    ap.add_argument("--seeds", type=int, default=10, help="ft10 seeds for the time to 930")
    ap.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--no-gecode", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    limits = [float(x) for x in a.limits.split(",")]
    walks = 1 if a.backend == "cpu" else 0
    with open(os.path.join(HERE, "instances", "optima.json")) as f:
        optima = json.load(f)
    names = sorted(optima)
    kiln = Kiln(a.build, a.backend)
    out = {"backend": a.backend, "limits": limits, "instances": {}, "ft10": {}, "taillard": {}}
    moves, run_ms = 0, 0
    tmp = tempfile.mkdtemp(prefix="jobshop-mzn-")
    try:
        print(f"sched.jobshop ({a.backend}, {'one walk' if walks == 1 else 'default walks'}, seed 0) against "
              f"MiniZinc + Gecode, same limits, one after the other\n")
        head = "".join(f" | kiln {lim:g}s        Gecode {lim:g}s     " for lim in limits)
        print(f"{'instance':<9}{'opt':>6}{'bound':>7}{head}")
        for name in names:
            with open(os.path.join(HERE, "instances", name + ".txt")) as f:
                text = f.read()
            opt, row, rec = optima[name], "", {}
            lb = None
            for lim in limits:
                done = asyncio.run(kiln.solve(text, {"time_limit_ms": int(lim * 1000), "seed": 0, "walks": walks}))
                r = done["result"]
                lb = r["lower_bound"]
                moves += r["moves"]
                run_ms += done["ms"]["run"]
                g = (None, False) if a.no_gecode else gecode(read_orlib(text), lim, tmp)
                rec[f"{lim:g}"] = {"kiln": r["makespan"], "kiln_ms_to_best": r["ms_to_best"], "gecode": g[0],
                                   "gecode_optimal": g[1]}
                row += f" | {fmt(r['makespan'], opt)}  {fmt(g[0], opt)}"
            out["instances"][name] = dict(rec, optimum=opt, lower_bound=lb)
            print(f"{name:<9}{opt:>6}{lb:>7}{row}", flush=True)
        for lim in limits:
            k = [gap(out["instances"][n][f"{lim:g}"]["kiln"], optima[n]) for n in names]
            g = [gap(out["instances"][n][f"{lim:g}"]["gecode"], optima[n]) for n in names]
            print(f"mean gap at {lim:g} s: kiln {statistics.mean(k):.2f} %"
                  + ("" if a.no_gecode else f", Gecode {statistics.mean(g):.2f} %"))

        with open(os.path.join(HERE, "instances", "ft10.txt")) as f:
            ft10 = f.read()
        times = []
        for seed in range(a.seeds):
            done = asyncio.run(kiln.solve(ft10, {"time_limit_ms": 10000, "seed": seed, "target": 930, "walks": walks}))
            r = done["result"]
            times.append(r["ms_to_best"] if r["makespan"] <= 930 else None)
        got = sorted(t if t is not None else float("inf") for t in times)
        med = statistics.median(got)
        out["ft10"] = {"ms_to_930": times, "median_ms": med}
        print(f"\nft10, target 930, {a.seeds} seeds: ms to reach it {times} (None: not within 10 s); "
              f"median {med:.0f} ms")

        lim = limits[0]
        kg, gg = [], []
        print(f"\nTaillard ta01-ta10 (generated, optima known) at {lim:g} s:")
        for name in sorted(n for n in taillard.SEEDS if int(n[2:]) <= 10):
            text = taillard.instance(name)
            done = asyncio.run(kiln.solve(text, {"time_limit_ms": int(lim * 1000), "seed": 0, "walks": walks}))
            r = done["result"]
            opt = taillard.OPTIMA[name]
            g = (None, False) if a.no_gecode else gecode(read_orlib(text), lim, tmp)
            kg.append(gap(r["makespan"], opt))
            if g[0] is not None:
                gg.append(gap(g[0], opt))
            out["taillard"][name] = {"optimum": opt, "kiln": r["makespan"], "gecode": g[0]}
            print(f"  {name} {opt:>6}: kiln {fmt(r['makespan'], opt)}   Gecode {fmt(g[0], opt)}", flush=True)
        print(f"  mean gap: kiln {statistics.mean(kg):.2f} %" + (f", Gecode {statistics.mean(gg):.2f} %" if gg else ""))
        rate = moves / (run_ms / 1000) if run_ms else 0
        out["moves_per_s"] = rate
        print(f"\ncandidate moves judged: {rate:,.0f} per second of run time ({a.backend})")
    finally:
        kiln.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
