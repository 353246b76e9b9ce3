#!/usr/bin/python3
"""Cached vs computed time of lens.nfw for grid sizes 64..4096 (not a CTest test).

For each grid size: submit a job never seen before (computed), then the same job
again (answered from the cache), then — after restarting kilnd on the same store —
the same job once more (cached after a restart). Each time is from sending `submit`
to receiving the last binary part, on one connection, median of REPEATS.

    KILND=build/daemon/kilnd tests/bench/cache_ratio.py [--maps kappa,gamma1,gamma2]
"""
import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd  # noqa: E402

GRIDS = [64, 128, 256, 512, 1024, 2048, 4096]
REPEATS = 3


def maps_arg():
    if "--maps" in sys.argv:
        return sys.argv[sys.argv.index("--maps") + 1].split(",")
    return ["kappa", "gamma1", "gamma2"]


async def timed(c, params):
    """(seconds to the `done` message, seconds to the last part, cached, bytes)."""
    t0 = time.perf_counter()
    acc = await c.submit("lens.nfw", params)
    assert acc["op"] == "accepted", acc
    while True:
        m = await c.recv(600)
        if isinstance(m, dict) and m.get("op") == "done" and m["job"] == acc["job"]:
            break
    t_done = time.perf_counter() - t0
    assert m["state"] == "done", m
    nbytes = 0
    for _ in m["parts"]:
        frame = await c.recv(600)
        assert isinstance(frame, bytes)
        nbytes += len(frame)
    return t_done, time.perf_counter() - t0, acc["cached"], nbytes


async def phase(url, params_list, expect_cached):
    c = await Client.connect(url)
    out = []
    for params in params_list:
        ts = []
        for _ in range(REPEATS):
            td, t, cached, nbytes = await timed(c, params)
            assert cached == expect_cached or (expect_cached is None), (params, cached)
            ts.append((td, t))
            expect_cached = True if expect_cached is None else expect_cached
        out.append((statistics.median(x[0] for x in ts), statistics.median(x[1] for x in ts), nbytes))
    await c.close()
    return out


async def computed(url, params_list):
    c = await Client.connect(url)
    out = []
    for params in params_list:
        ts = []
        for r in range(REPEATS):
            p = dict(params, concentration=params["concentration"] + r * 1e-6)  # fresh each time
            td, t, cached, nbytes = await timed(c, p)
            assert not cached
            ts.append((td, t))
        out.append((statistics.median(x[0] for x in ts), statistics.median(x[1] for x in ts), nbytes))
    await c.close()
    return out


def main():
    maps = maps_arg()
    k = Kilnd(env={"KILN_STORE_MAP_SIZE_GB": "16"}).start()
    try:
        base = [{"mass": 1e14, "concentration": 5.0 + g * 1e-3, "grid_size": g, "maps": maps} for g in GRIDS]
        comp = asyncio.run(computed(k.url, base))
        # The first of the three fresh runs of each grid is in the cache now.
        cached = asyncio.run(phase(k.url, base, True))
        assert k.stop() == 0
        k.start()
        restart = asyncio.run(phase(k.url, base, True))
        assert k.stop() == 0
    finally:
        k.cleanup()
    print(f"lens.nfw maps={','.join(maps)}; median of {REPEATS}; ms from `submit` sent to `done` "
          f"received / to the last part received")
    print(f"{'grid':>5} {'MiB':>7} | {'computed':>15} | {'cached':>13} {'ratio':>11} | "
          f"{'after restart':>13} {'ratio':>11}")
    for g, (cd, ct, nb), (hd, ht, _), (rd, rt, _) in zip(GRIDS, comp, cached, restart):
        print(f"{g:>5} {nb / 2**20:>7.2f} | {cd * 1e3:>7.1f}/{ct * 1e3:>7.1f} | {hd * 1e3:>6.1f}/{ht * 1e3:>6.1f} "
              f"{cd / hd:>5.1f}/{ct / ht:>5.1f} | {rd * 1e3:>6.1f}/{rt * 1e3:>6.1f} {cd / rd:>5.1f}/{ct / rt:>5.1f}")


if __name__ == "__main__":
    main()
