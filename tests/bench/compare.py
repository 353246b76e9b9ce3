#!/usr/bin/python3
"""kiln against the stack it replaces (FastAPI + uvicorn + Redis, shared/baseline/seedstack.py),
measured by the same kiln-bench with the same settings.

    python3 tests/bench/compare.py --duration 10        # after `make build`

Starts everything itself on free loopback ports and stops it at the end: for each
scenario a fresh kilnd (state in a temporary directory) and a fresh redis-server +
uvicorn (2 workers), so one scenario's leftovers (a heavy job still running, a warm
cache) never reach the next. Then:
  * the table: jobs/s, p50/p99 of both, the kiln/baseline ratio, kilnd's peak RSS
    (VmHWM) and CPU seconds per job (utime+stime of kilnd / jobs finished);
  * durable submission: cache off, store.sync=full, `kiln-bench --accept-only`
    (watch:false, latency submit -> accepted): accepted jobs/s that survive kill -9;
  * connection scale: p99 of a light open-loop load with and without 10,000 idle
    WebSocket connections held by the same kiln-bench, and kilnd's memory per
    connection (RSS delta / connections); three runs each way, alternating, median p99.
It is a benchmark, not a test: nothing is asserted, the numbers are printed.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIOS = ["cached", "small", "mixed", "heavy", "score"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid):
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    """pid and every process below it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def wait_http(url, proc, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop(proc, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class Kilnd:
    def __init__(self, binary, env=None):
        self.binary, self.tmp = binary, tempfile.mkdtemp(prefix="kiln-cmp-")
        self.port, self.extra, self.proc = free_port(), dict(env or {}), None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        env.update({
            "KILN_SERVER_LISTEN": f"127.0.0.1:{self.port}", "KILN_STORE_PATH": os.path.join(self.tmp, "state"),
            "KILN_STORE_MAP_SIZE_GB": "16", "KILN_AUTH_REQUIRED": "false",
            "KILN_AUTH_TOKENS_FILE": os.path.join(self.tmp, "tokens"),
            "KILN_SERVER_WEB_ROOT": os.path.join(ROOT, "web_ui"), "KILN_LOG_TARGET": "stderr",
            "KILN_LOG_LEVEL": "warning",
        })
        env.update(self.extra)
        self.log = open(os.path.join(self.tmp, "kilnd.log"), "wb")
        self.proc = subprocess.Popen([self.binary], env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/healthz", self.proc)
        return self

    def pids(self):
        return [self.proc.pid]

    def __exit__(self, *exc):
        stop(self.proc)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Baseline:
    """redis-server + `python3 -m uvicorn seedstack:app --workers 2`."""

    def __init__(self, baseline_dir):
        self.dir, self.tmp = baseline_dir, tempfile.mkdtemp(prefix="kiln-cmp-base-")
        self.port, self.redis_port = free_port(), free_port()
        self.redis = self.app = None

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    def __enter__(self):
        self.log = open(os.path.join(self.tmp, "baseline.log"), "wb")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp], stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        env = dict(os.environ, KILN_BASELINE_REDIS=f"redis://127.0.0.1:{self.redis_port}")
        self.app = subprocess.Popen(
            ["/usr/bin/python3", "-m", "uvicorn", "seedstack:app", "--app-dir", self.dir, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "2", "--log-level", "warning"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(f"http://127.0.0.1:{self.port}/healthz", self.app)
        return self

    def pids(self):
        return descendants(self.app.pid) + [self.redis.pid]

    def __exit__(self, *exc):
        stop(self.app)
        stop(self.redis)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class RssSampler:
    """The largest VmRSS of a process, sampled every 100 ms while active."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, proc_status_kb(self.pid, "VmRSS"))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def bench(args, url, scenario, *extra, duration=None):
    cmd = [args.kiln_bench, "--url", url, "--scenario", scenario, "--duration", str(duration or args.duration),
           "--json", "--seed", "1", "--drain", str(args.drain), *map(str, extra)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=(duration or args.duration) + args.drain + 300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def settings(args, scenario):
    conns = args.heavy_connections if scenario == "heavy" else args.connections
    return ["--connections", conns, "--pipeline", args.pipeline]


def measure(args, server, scenario, *extra, duration=None):
    """Runs kiln-bench against a started server; adds CPU s/job and peak RSS of its processes."""
    pids = server.pids()
    cpu0 = sum(proc_cpu_s(p) for p in pids)
    res = bench(args, server.url, scenario, *extra, duration=duration)
    cpu = sum(proc_cpu_s(p) for p in pids) - cpu0
    res["cpu_s_per_job"] = cpu / res["jobs_total"] if res["jobs_total"] else float("nan")
    res["peak_rss_kb"] = sum(proc_status_kb(p, "VmHWM") for p in pids)
    return res


def median_run(runs):
    """The run with the median p99 (the lower middle one of an even count)."""
    return sorted(runs, key=lambda r: r["p99_ms"])[(len(runs) - 1) // 2]


def fmt_lat(r):
    return f"{r['p50_ms']:.2f}/{r['p99_ms']:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "-"


def print_table(args, rows):
    print()
    print(f"kiln-bench, {args.duration:g} s per run, {args.connections} connections "
          f"({args.heavy_connections} for heavy), pipeline {args.pipeline}, closed loop; latency ms submit->done")
    hdr = ("scenario", "kiln jobs/s", "baseline jobs/s", "ratio", "kiln p50/p99", "baseline p50/p99",
           "kiln err", "base err", "kilnd peak RSS", "kilnd CPU/job", "baseline CPU/job")
    table = [hdr]
    for sc, kr, br in rows:
        table.append((sc, f"{kr['jobs_per_s']:.1f}", f"{br['jobs_per_s']:.1f}", ratio(kr["jobs_per_s"], br["jobs_per_s"]),
                      fmt_lat(kr), fmt_lat(br), str(kr["errors"]), str(br["errors"]),
                      f"{kr['peak_rss_kb'] / 1024:.0f} MiB", f"{kr['cpu_s_per_job'] * 1e3:.3f} ms",
                      f"{br['cpu_s_per_job'] * 1e3:.3f} ms"))
    widths = [max(len(r[i]) for r in table) for i in range(len(hdr))]
    for i, r in enumerate(table):
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for sc, kr, br in rows:
        for who, r in (("kiln", kr), ("baseline", br)):
            if r["first_error"]:
                print(f"  {sc} {who}: first error: {r['first_error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per scenario and server (default 10)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--heavy-connections", type=int, default=2)
    ap.add_argument("--pipeline", type=int, default=4, help="jobs in flight per connection (default 4)")
    ap.add_argument("--drain", type=float, default=30, help="seconds to wait for jobs in flight after each run")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--idle", type=int, default=10000, help="idle connections for the scale test (0: skip it)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the scale test's load without and with the idle connections (default 3)")
    ap.add_argument("--light-rate", type=float, default=1000, help="jobs/s of the scale test's light load (default 1000)")
    ap.add_argument("--skip-durable", action="store_true")
    ap.add_argument("--kilnd", default=os.environ.get("KILND", os.path.join(ROOT, "build", "daemon", "kilnd")))
    ap.add_argument("--kiln-bench", default=os.environ.get(
        "KILN_BENCH", os.path.join(ROOT, "build", "daemon", "bench", "kiln-bench")))
    ap.add_argument("--baseline-dir", default=os.environ.get(
        "KILN_BASELINE_DIR", os.path.normpath(os.path.join(ROOT, "..", "shared", "baseline"))))
    ap.add_argument("--json", help="also write every raw result to this file")
    args = ap.parse_args()

    for path in (args.kilnd, args.kiln_bench):
        if not os.access(path, os.X_OK):
            sys.exit(f"compare.py: {path} is missing: run `make build` first (or pass --kilnd/--kiln-bench)")
    if not os.path.exists(os.path.join(args.baseline_dir, "seedstack.py")):
        sys.exit(f"compare.py: no seedstack.py in {args.baseline_dir} (pass --baseline-dir)")
    if not shutil.which("redis-server"):
        sys.exit("compare.py: redis-server is missing (apt-get install redis-server)")

    raw = {"scenarios": {}, "settings": vars(args)}
    rows = []
    for sc in [s for s in args.scenarios.split(",") if s]:
        print(f"== {sc}: kilnd ...", file=sys.stderr, flush=True)
        with Kilnd(args.kilnd) as k:
            kr = measure(args, k, sc, *settings(args, sc))
        print(f"== {sc}: baseline ...", file=sys.stderr, flush=True)
        with Baseline(args.baseline_dir) as b:
            br = measure(args, b, sc, *settings(args, sc))
        raw["scenarios"][sc] = {"kiln": kr, "baseline": br}
        rows.append((sc, kr, br))

    if rows:
        print_table(args, rows)

    if not args.skip_durable:
        print(file=sys.stderr)
        print("== durable submission ...", file=sys.stderr, flush=True)
        with Kilnd(args.kilnd, {"KILN_CACHE_ENABLED": "false", "KILN_STORE_SYNC": "full"}) as k:
            kd = measure(args, k, "small", "--accept-only", "--connections", args.connections,
                         "--pipeline", args.pipeline)
        with Baseline(args.baseline_dir) as b:
            bd = measure(args, b, "small", "--accept-only", "--connections", args.connections,
                         "--pipeline", args.pipeline)
        raw["durable"] = {"kiln": kd, "baseline": bd}
        print()
        print(f"durable submission (scenario small, unique params, kiln cache off, store.sync=full, "
              f"{args.connections} connections, pipeline {args.pipeline}, watch:false, latency submit->accepted):")
        print(f"  kiln      {kd['jobs_per_s']:9.1f} accepted/s  p50/p99 {fmt_lat(kd)} ms  errors {kd['errors']}")
        print(f"  baseline  {bd['jobs_per_s']:9.1f} accepted/s  p50/p99 {fmt_lat(bd)} ms  errors {bd['errors']}"
              "  (its `accepted` is not durable: nothing is stored before it)")

    if args.idle:
        print(f"== {args.idle} idle connections ...", file=sys.stderr, flush=True)
        light = ["--connections", "4", "--rate", args.light_rate]
        env = {"KILN_SERVER_MAX_CONNECTIONS": str(args.idle + 100)}
        bases, loads = [], []
        with Kilnd(args.kilnd, env) as k:
            bench(args, k.url, "cached", "--connections", 1, duration=1)  # fills the cache
            # Without and with, alternately, --repeat times: one stall of this shared
            # machine (a few ms, now and then) otherwise decides a p99 on its own.
            for i in range(args.repeat):
                with RssSampler(k.proc.pid) as s:
                    bases.append(measure(args, k, "cached", *light))
                if i == 0:
                    s0 = s
                with RssSampler(k.proc.pid) as s:
                    loads.append(measure(args, k, "cached", *light, "--idle", args.idle))
                if i == 0:
                    s1 = s
        base, loaded = median_run(bases), median_run(loads)
        raw["idle"] = {"without": base, "with": loaded, "without_runs": bases, "with_runs": loads,
                       "kilnd_rss_kb": [s0.peak, s1.peak]}
        per_conn = (s1.peak - s0.peak) * 1024 / max(1, loads[0]["idle_connected"])
        bench_per_conn = ((loads[0]["rss_idle_kb"] - loads[0]["rss_start_kb"]) * 1024 /
                          max(1, loads[0]["idle_connected"]))
        runs = lambda rs: " ".join(f"{r['p99_ms']:.2f}" for r in rs)
        print()
        print(f"connection scale: light load (cached, open loop {args.light_rate:g} jobs/s, 4 connections) "
              f"with and without {args.idle} idle connections, {args.repeat} runs each, alternating "
              f"(the run with the median p99 shown):")
        print(f"  without: {base['jobs_per_s']:.1f} jobs/s  p50/p99 {fmt_lat(base)} ms  errors {base['errors']}"
              f"  (p99 of each run: {runs(bases)})")
        print(f"  with:    {loaded['jobs_per_s']:.1f} jobs/s  p50/p99 {fmt_lat(loaded)} ms  errors {loaded['errors']}"
              f"  (p99 of each run: {runs(loads)}; {loaded['idle_connected']} idle connections open)")
        print(f"  p99 with / without: {ratio(loaded['p99_ms'], base['p99_ms'])} (goal <= 2x)")
        print(f"  kilnd memory per connection: {per_conn / 1024:.1f} KiB "
              f"(peak RSS {s0.peak / 1024:.0f} -> {s1.peak / 1024:.0f} MiB); "
              f"kiln-bench: {bench_per_conn / 1024:.1f} KiB per connection")

    targets = []
    by = {sc: (kr, br) for sc, kr, br in rows}
    if "cached" in by:
        kr, br = by["cached"]
        targets.append(("cached >= 30x baseline", f"{kr['jobs_per_s'] / max(br['jobs_per_s'], 1e-9):.2f}x"))
        targets.append(("cached >= 50,000 jobs/s", f"{kr['jobs_per_s']:.0f}"))
    if "small" in by:
        kr, br = by["small"]
        targets.append(("small >= 30x baseline", f"{kr['jobs_per_s'] / max(br['jobs_per_s'], 1e-9):.2f}x"))
    if "heavy" in by:
        kr, br = by["heavy"]
        targets.append(("heavy >= 3x baseline", f"{kr['jobs_per_s'] / max(br['jobs_per_s'], 1e-9):.2f}x"))
    if "score" in by:
        kr, br = by["score"]
        targets.append(("score >= 6x baseline", f"{kr['jobs_per_s'] / max(br['jobs_per_s'], 1e-9):.2f}x"))
    if "durable" in raw:
        targets.append(("durable >= 20,000 accepted/s", f"{raw['durable']['kiln']['jobs_per_s']:.0f}"))
    if "idle" in raw:
        w, wo = raw["idle"]["with"], raw["idle"]["without"]
        targets.append((f"cached p99 at {args.light_rate:g} jobs/s < 1 ms", f"{wo['p99_ms']:.3f} ms"))
        targets.append((f"p99 with {args.idle} idle <= 2x", ratio(w["p99_ms"], wo["p99_ms"])))
    if targets:
        print()
        print("targets | measured")
        for name, got in targets:
            print(f"  {name:<36} {got}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
