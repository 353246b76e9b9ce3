#!/usr/bin/python3
"""kilnd under memory pressure, slow readers and a full disk: a measurement, not a test.

    tests/bench/pressure.py [--kilnd PATH] [--scenario huge|slow|disk|all] [--scale F]
                            [--set section.key=value ...] [--json FILE]

Each scenario starts its own kilnd (state in a temporary directory, auth off, loopback),
with the --set values on top (as KILN_SECTION_KEY variables, e.g. --set memory.max_bytes=3G):

  huge  six lens.nfw jobs of grid_size 8192 with all seven maps, submitted at once on one
        connection and read to their `done` and parts: kilnd's peak anonymous memory
        (RssAnon sampled every 20 ms, and VmHWM), the time, whether every job ended done.
        Needs about 12 GiB without a memory budget; the grid is halved until the estimate
        fits the machine's available memory (said in the output).
  slow  four raw WebSocket connections each submit 25 jobs of grid_size 2048 (three maps,
        48 MiB of result each) and never read; meanwhile a normal client submits a small
        job every 200 ms and measures submit -> accepted and submit -> done. Then: peak
        memory, the small jobs' latencies, what became of the slow connections (read only
        at the end: close code and reason), and whether their 100 jobs all ended done.
  disk  kilnd's store on a 96 MiB tmpfs (in a private mount namespace, `unshare -rm`,
        or mounted directly as root) that also holds a 16 MiB filler file; 60 jobs with
        12 MiB results each: how many were accepted or refused (code, message), how many
        accepted ended failed, /readyz while full; then the filler is deleted (and, if
        that is not enough, `cache.purge`) and a new job must be accepted without a restart.

--scale F multiplies the grid sizes of huge and slow (0.5: 4096 and 1024) for a quick run.
Nothing is asserted; the exit status is 0 when the scenarios ran.
"""
import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from kiln_fixture import Client, Kilnd, done_of, wait_for  # noqa: E402
from test_pressure import (RawWs, RssSampler, TmpfsKilnd, jobs_by_state, ready_within, readyz,  # noqa: E402
                           tmpfs_mode)

GiB, MiB = 1 << 30, 1 << 20
ALL_MAPS = ["kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi"]
FINISHED = ("done", "failed", "cancelled", "expired")


def env_name(dotted):
    """section.key -> KILN_SECTION_KEY (the section may hold dots: batch.lens.nfw.max_batch)."""
    section, _, key = dotted.rpartition(".")
    if not section:
        raise SystemExit(f"--set {dotted}: expected section.key=value")
    return "KILN_" + (section + "_" + key).upper().replace(".", "_").replace("-", "_")


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def parse_size(text):
    """A config size (3G, 512MiB, 1000000) in bytes, or None."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        return None


BENCH_CONFIG = {"store.map_size_gb": "16", "log.level": "warning"}


@contextlib.contextmanager
def bench_kilnd(binary, settings, out, defaults=None, tmpfs=None):
    """A kilnd (kiln_fixture's, on a tmpfs when `tmpfs` is (size_mib, filler_mib))
    with BENCH_CONFIG, then `defaults`, then the --set values; on the way out, its
    exit code on SIGTERM and the count of its log lines that mention an error go to
    `out`."""
    cfg = dict(BENCH_CONFIG, **(defaults or {}), **settings)
    env = {env_name(k): v for k, v in cfg.items()}
    if tmpfs:
        mode = tmpfs_mode()
        if not mode:
            raise RuntimeError("no way to mount a small filesystem here (unshare -rm refused, not root)")
        k = TmpfsKilnd(*tmpfs, env=env, binary=binary, mode=mode)
    else:
        k = Kilnd(env=env, binary=binary)
    try:
        yield k.start()
    finally:
        try:
            out["exit_code"] = k.stop(timeout=60)
        except subprocess.TimeoutExpired:
            out["exit_code"] = "still running 60 s after SIGTERM: killed"
        out["log_error_lines"] = sum("rror" in line for line in k.read_log().splitlines())
        k.cleanup()


def gib(kib):
    return None if kib is None else round(kib / (1 << 20), 2)


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(math.ceil(p / 100 * len(v))) - 1)] * 1000, 1)


async def stats_memory(url):
    """The `memory` object of a `stats` reply (None when kilnd has none)."""
    c = await Client.connect(url)
    try:
        r = await c.call({"op": "stats"})
        return r.get("memory")
    finally:
        await c.close()


def sampled(k, run, out):
    """Runs the coroutine `run` against kilnd `k` with its memory sampled from the
    start; the memory figures (and `stats`'s memory object at the end) go to out."""
    s = RssSampler(k.proc.pid)
    s.start()
    out["rss_anon_idle_gib"] = gib(s.now_kib())
    asyncio.run(run)
    out["memory_stats"] = asyncio.run(stats_memory(k.url))
    s.stop()
    out["peak_rss_anon_gib"] = gib(s.peak_kib)
    out["peak_rss_file_gib"] = gib(s.peak_file_kib)
    out["vm_hwm_gib"] = gib(s.hwm_kib)
    out["rss_anon_end_gib"] = gib(s.now_kib())


# ---------------------------------------------------------------------------------------------
# huge

async def huge_jobs(url, grid, n, out):
    c = await Client.connect(url)
    rnd = random.Random()
    t0 = time.monotonic()
    for i in range(n):
        await c.send({"op": "submit", "kind": "lens.nfw", "ref": i, "params": {
            "mass": rnd.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": grid, "maps": ALL_MAPS}})
    accepted, errors, states = {}, [], {}
    parts_want = parts_got = 0
    end = t0 + 900
    while len(states) + len(errors) < n or parts_got < parts_want:
        m = await c.recv(max(0.1, end - time.monotonic()))
        if isinstance(m, bytes):
            parts_got += 1
            continue
        op = m.get("op")
        if op == "accepted":
            accepted[m["job"]] = time.monotonic() - t0
        elif op == "error":
            errors.append(f'{m.get("code")}: {m.get("message")}')
        elif op == "done":
            states[m["job"]] = m["state"]
            parts_want += len(m.get("parts") or [])
    out["seconds"] = round(time.monotonic() - t0, 1)
    out["accepted"] = len(accepted)
    out["refused"] = errors
    out["done"] = sum(s == "done" for s in states.values())
    out["all_done"] = out["done"] == n
    out["parts_read"] = parts_got
    await c.close()


def scenario_huge(args, settings):
    n, grid = 6, max(8, int(8192 * args.scale) // 8 * 8)
    budget = parse_size(settings.get("memory.max_bytes", "")) if "memory.max_bytes" in settings else None
    out = {"grid_size": grid}
    # Without a budget kilnd holds every result at once: halve the grid until that fits.
    while True:
        need = n * grid * grid * 4 * len(ALL_MAPS)
        hold = min(need, budget) if budget else need
        if hold + 2 * GiB < mem_available() and need * 1.3 < shutil.disk_usage(tempfile.gettempdir()).free:
            break
        grid //= 2
        out["note"] = f"grid reduced to {grid}: MemAvailable {mem_available() / GiB:.1f} GiB"
    out["grid_size"] = grid
    out["result_gib_total"] = round(need / GiB, 2)
    with bench_kilnd(args.kilnd, settings, out, {"store.map_size_gb": str(max(16, math.ceil(need * 1.5 / GiB)))}) as k:
        sampled(k, huge_jobs(k.url, grid, n, out), out)
    return out


# ---------------------------------------------------------------------------------------------
# slow

SLOW_CONNS, SLOW_JOBS = 4, 25
SLOW_MAPS = ["kappa", "alpha_x", "alpha_y"]


async def small_client(url, stop, lat):
    """Submits a fresh grid-64 job every 200 ms until `stop`; records latencies."""
    c = await Client.connect(url)
    sent, by_job = {}, {}
    lat.update(accepted=[], done=[], errors=[], ids=set())

    async def reader():
        while True:
            m = await c.recv(3600)
            if isinstance(m, bytes):
                continue
            now = time.monotonic()
            if m.get("op") == "accepted" and m.get("ref") in sent:
                lat["accepted"].append(now - sent[m["ref"]])
                by_job[m["job"]] = sent[m["ref"]]
                lat["ids"].add(m["job"])
            elif m.get("op") == "error":
                lat["errors"].append(f'{m.get("code")}: {m.get("message")}')
            elif m.get("op") == "done" and m.get("job") in by_job:
                lat["done"].append(now - by_job.pop(m["job"]))

    task = asyncio.ensure_future(reader())
    ref = 0
    next_at = time.monotonic()
    while not stop.is_set():
        ref += 1
        sent[ref] = time.monotonic()
        await c.send({"op": "submit", "kind": "lens.nfw", "ref": ref,
                      "params": {"mass": random.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": 64}})
        next_at += 0.2
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        except asyncio.TimeoutError:
            pass
    lat["submitted"] = ref
    end = time.monotonic() + 15
    while (len(lat["done"]) + len(lat["errors"]) < ref) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    task.cancel()
    await c.close()


async def slow_run(kilnd, grid, out, limit_s):
    rnd = random.Random()
    run = os.urandom(4).hex()
    slow = []
    for k in range(SLOW_CONNS):
        w = RawWs(kilnd.port, rcvbuf=64 << 10)
        w.send_json({"op": "hello", "client": "pressure-slow/1"})
        slow.append(w)
    stop, lat = asyncio.Event(), {}
    t0 = time.monotonic()
    small = asyncio.ensure_future(small_client(kilnd.url, stop, lat))
    end = time.monotonic() + 10
    while not lat.get("accepted") and time.monotonic() < end:  # the small client's first job before the big ones
        await asyncio.sleep(0.01)
    for k, w in enumerate(slow):
        for i in range(SLOW_JOBS):
            w.send_json({"op": "submit", "kind": "lens.nfw", "key": f"slow-{run}-{k}-{i}", "params": {
                "mass": rnd.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": grid, "maps": SLOW_MAPS}})
    mon = await Client.connect(kilnd.url)
    want = SLOW_CONNS * SLOW_JOBS
    finished = 0
    while time.monotonic() - t0 < limit_s:
        states = await jobs_by_state(mon, exclude=lat.get("ids", ()))
        finished = sum(s in FINISHED for s in states.values())
        if finished >= want:
            break
        await asyncio.sleep(1.0)
    out["slow_phase_s"] = round(time.monotonic() - t0, 1)
    stop.set()
    await small
    acc, dn = lat["accepted"], lat["done"]
    out["small_jobs"] = lat.get("submitted")
    out["small_accepted_ms_p50_p99_max"] = [pct(acc, 50), pct(acc, 99), pct(acc, 100)]
    out["small_done_ms_p50_p99_max"] = [pct(dn, 50), pct(dn, 99), pct(dn, 100)]
    out["small_unfinished"] = (lat.get("submitted") or 0) - len(dn)
    out["small_errors"] = lat["errors"][:3]
    # Only now read what the slow connections were sent.
    ends = []
    for w in slow:
        r = await asyncio.get_running_loop().run_in_executor(None, lambda w=w: w.drain(idle_s=1.0, max_s=30))
        ends.append({"end": r["end"], "close_code": r["close_code"], "close_reason": r["close_reason"],
                     "mib_read": round(r["bytes"] / MiB, 1), "accepted": r["ops"].get("accepted", 0),
                     "done": r["ops"].get("done", 0), "errors": r["ops"].get("error", 0)})
        w.close()
    out["slow_connections"] = ends
    # After the slow clients are gone: did their jobs all finish?
    t1 = time.monotonic()
    while True:
        states = await jobs_by_state(mon, exclude=lat["ids"])
        if sum(s in FINISHED for s in states.values()) >= want or time.monotonic() - t1 > 30:
            break
        await asyncio.sleep(0.5)
    counts = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    out["slow_jobs_by_state"] = counts
    out["slow_jobs_all_done"] = counts.get("done", 0) == want and len(states) == want
    await mon.close()


def scenario_slow(args, settings):
    grid = max(8, int(2048 * args.scale) // 8 * 8)
    per_job = grid * grid * 4 * len(SLOW_MAPS)
    out = {"grid_size": grid, "result_mib_per_job": round(per_job / MiB, 1),
           "result_gib_total": round(per_job * SLOW_CONNS * SLOW_JOBS / GiB, 2)}
    maps = max(16, math.ceil(per_job * SLOW_CONNS * SLOW_JOBS * 1.5 / GiB))
    with bench_kilnd(args.kilnd, settings, out, {"store.map_size_gb": str(maps)}) as k:
        sampled(k, slow_run(k, grid, out, limit_s=150 * max(args.scale, 0.25) ** 2 + 30), out)
    return out


# ---------------------------------------------------------------------------------------------
# disk

DISK_MIB, FILLER_MIB, DISK_JOBS, DISK_GRID = 96, 16, 60, 1024
DISK_MAPS = ["kappa", "gamma1", "gamma2"]


async def submit_small(c):
    r = await c.submit("lens.nfw", {"mass": random.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": 64})
    if r.get("op") != "accepted":
        return f'{r.get("op")} {r.get("code")}: {r.get("message")}', None
    done = await wait_for(c, done_of(r["job"]), 30)
    return "accepted", done.get("state")


def show(outcome):
    reply, state = outcome
    return f"{reply}, its job {state}" if state else reply


def ready_summary(http):
    code, body = readyz(http)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("devices", "uptime_s", "backends")}
    return f"{code} {json.dumps(body)[:300]}"


async def disk_run(k, out):
    c = await Client.connect(k.url)
    rnd = random.Random()
    for i in range(DISK_JOBS):
        await c.send({"op": "submit", "kind": "lens.nfw", "ref": i, "params": {
            "mass": rnd.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": DISK_GRID, "maps": DISK_MAPS}})
    replies, jobs, refused = {}, {}, {}
    states, failed_msgs = {}, {}
    end = time.monotonic() + 180
    while (len(replies) < DISK_JOBS or len(states) < len(jobs)) and time.monotonic() < end:
        try:
            m = await c.recv(max(0.1, min(20, end - time.monotonic())))
        except asyncio.TimeoutError:
            break
        if isinstance(m, bytes):
            continue
        op = m.get("op")
        if op == "accepted" and m.get("ref") in range(DISK_JOBS):
            replies[m["ref"]] = "accepted"
            jobs[m["job"]] = m["ref"]
            if m.get("state") in FINISHED:
                states[m["job"]] = m["state"]
        elif op == "error" and m.get("ref") in range(DISK_JOBS):
            replies[m["ref"]] = "error"
            key = f'{m.get("code")}: {m.get("message")}'
            refused[key] = refused.get(key, 0) + 1
        elif op == "done" and m.get("job") in jobs:
            states[m["job"]] = m["state"]
            if m["state"] != "done":
                e = m.get("error") or {}
                key = f'{e.get("code")}: {e.get("message")}'
                failed_msgs[key] = failed_msgs.get(key, 0) + 1
    out["accepted"] = sum(v == "accepted" for v in replies.values())
    out["refused"] = sum(v == "error" for v in replies.values())
    out["refused_by_message"] = refused
    out["unanswered"] = DISK_JOBS - len(replies)
    counts = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    for j in jobs:
        if j not in states:
            r = await c.call({"op": "status", "job": j})
            s = "no done: " + str(r.get("state") or r.get("code"))
            counts[s] = counts.get(s, 0) + 1
    out["accepted_jobs_by_state"] = counts
    out["accepted_then_failed"] = counts.get("failed", 0)
    out["failed_by_message"] = failed_msgs
    st = os.statvfs(k.inside())
    out["tmpfs_free_mib_after_burst"] = round(st.f_bavail * st.f_frsize / MiB, 1)
    await ready_within(k.http, 503, seconds=2.0)  # the room measured after the last write
    out["readyz_after_burst"] = ready_summary(k.http)
    out["small_submit_after_burst"] = show(await submit_small(c))
    # Then something else fills the filesystem: the filler grows until ENOSPC.
    k.fill_filesystem()
    await ready_within(k.http, 503)
    out["readyz_disk_full"] = ready_summary(k.http)
    out["small_submit_disk_full"] = show(await submit_small(c))
    # Room comes back: first the filler goes, then (if needed) the cache.
    os.unlink(k.inside("filler"))
    code, _ = await ready_within(k.http, 200)
    r, state = await submit_small(c)
    out["after_rm_filler"] = f"readyz {code}; submit {r}; its job {state}"
    if code != 200 or r != "accepted":
        p = await c.call({"op": "cache.purge"})
        code, _ = await ready_within(k.http, 200)
        r, state = await submit_small(c)
        out["after_cache_purge"] = f'purge {p.get("op")} {p.get("code") or ""}; readyz {code}; ' \
                                   f"submit {r}; its job {state}"
    out["readyz_end"] = ready_summary(k.http)
    out["kilnd_alive"] = k.proc.poll() is None
    await c.close()


def scenario_disk(args, settings):
    mode = tmpfs_mode()
    if not mode:
        return {"skipped": "unshare -rm is refused and this is not root: no small filesystem to fill"}
    out = {"filesystem": f"tmpfs {DISK_MIB} MiB ({mode}), filler {FILLER_MIB} MiB",
           "jobs": f"{DISK_JOBS} x grid {DISK_GRID}, {len(DISK_MAPS)} maps "
                   f"({DISK_GRID * DISK_GRID * 4 * len(DISK_MAPS) // MiB} MiB each)"}
    with bench_kilnd(args.kilnd, settings, out, {"store.map_size_gb": "4"}, tmpfs=(DISK_MIB, FILLER_MIB)) as k:
        asyncio.run(disk_run(k, out))
    return out


# ---------------------------------------------------------------------------------------------

SCENARIOS = {"huge": scenario_huge, "slow": scenario_slow, "disk": scenario_disk}


def print_table(name, res):
    print(f"\n## {name}\n")
    print("| figure | value |")
    print("|---|---|")
    for k, v in res.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for i, e in enumerate(v):
                print(f"| {k}[{i}] | {json.dumps(e)} |")
        else:
            print(f"| {k} | {v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v)} |")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kilnd", default=os.environ.get("KILND") or os.path.join(ROOT, "build", "daemon", "kilnd"),
                    help="the kilnd binary")
    ap.add_argument("--scenario", choices=["all"] + list(SCENARIOS), default="all")
    ap.add_argument("--scale", type=float, default=1.0, help="grid sizes of huge and slow times F")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a configuration value for every kilnd started (repeatable)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON ('-': stdout)")
    args = ap.parse_args()
    settings = {}
    for s in args.set:
        k, eq, v = s.partition("=")
        if not eq:
            ap.error(f"--set {s}: expected section.key=value")
        env_name(k)
        settings[k] = v
    if not os.access(args.kilnd, os.X_OK):
        ap.error(f"{args.kilnd} is not an executable kilnd (build it, or pass --kilnd)")
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    head = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    version = subprocess.run([args.kilnd, "--version"], capture_output=True, text=True)
    results = {"kilnd": args.kilnd, "version": version.stdout.strip(), "tree": head.stdout.strip(),
               "settings": settings, "scale": args.scale,
               "cpus": os.cpu_count(), "mem_total_gib": round(os.sysconf("SC_PHYS_PAGES") *
                                                              os.sysconf("SC_PAGE_SIZE") / GiB, 1)}
    print(f"kilnd {args.kilnd} ({results['version']}); source tree at {results['tree']}; "
          f"settings {settings or 'none'}; scale {args.scale}")
    for name in names:
        t0 = time.monotonic()
        try:
            res = SCENARIOS[name](args, settings)
        except Exception as e:  # a scenario that breaks is reported, the others still run
            res = {"error": f"{type(e).__name__}: {e}"}
        res["wall_s"] = round(time.monotonic() - t0, 1)
        results[name] = res
        print_table(name, res)
    if args.json:
        text = json.dumps(results, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")


if __name__ == "__main__":
    main()
