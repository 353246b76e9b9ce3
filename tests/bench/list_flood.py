#!/usr/bin/env python3
"""What a flood of `list` requests does to everyone else's submissions: tenant acme
holds N finished jobs (default 30,000); then 3,000 `list` requests for a state none
of them is in are pipelined, once by another tenant (globex, who has no jobs) and
once by acme itself on another connection, while acme submits 20 keyed jobs one
after the other. Prints one list's time and the submit -> `accepted` median and
maximum (ms), idle and during each flood. A benchmark, not a test: it prints,
asserts nothing.

    KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/list_flood.py [N]
"""
import asyncio
import hashlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd  # noqa: E402

TOKENS = {"tok-acme": ("acme", "acme", "submit"), "tok-globex": ("globex", "globex", "submit")}
FLOOD = 3000


def start():
    k = Kilnd(env={"KILN_AUTH_REQUIRED": "true", "KILN_CPU_THREADS": "1", "KILN_LIMITS_RATE_PER_S": "1000000",
                   "KILN_LIMITS_BURST": "1000000"})
    with open(os.path.join(k.tmp, "tokens"), "w") as f:
        for tok, (name, tenant, role) in TOKENS.items():
            f.write(f"{name} {tenant} {role} {hashlib.sha256(tok.encode()).hexdigest()}\n")
    return k.start()


async def fill(k, n):
    c = await Client.connect(k.url, token="tok-acme")
    got = 0

    async def reader():
        nonlocal got
        while got < n:
            m = await c.recv(60)
            if isinstance(m, dict) and m.get("op") in ("accepted", "error"):
                got += 1
    task = asyncio.create_task(reader())
    for i in range(n):
        await c.send({"op": "submit", "kind": "lens.nfw", "watch": False, "cache": False,
                      "params": {"mass": 1e13 * (1 + i * 1e-6), "concentration": 5, "grid_size": 8}})
        if i - got > 2000:
            await asyncio.sleep(0.01)
    await task
    while (await c.call({"op": "stats"}))["queued"]:
        await asyncio.sleep(0.2)
    await c.close()


async def latency(c, n=20):
    out = []
    for i in range(n):
        t = time.monotonic()
        r = await c.submit("lens.nfw", {"mass": 5e14 * (1 + i * 1e-5 + time.time() % 1 * 1e-7), "concentration": 5,
                                        "grid_size": 64}, watch=False, key=f"k{time.time()}")
        assert r["op"] == "accepted", r
        out.append((time.monotonic() - t) * 1000)
    return statistics.median(out), max(out)


async def flood(c):
    for _ in range(FLOOD):
        await c.send({"op": "list", "state": "expired"})


async def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30000
    k = start()
    try:
        await fill(k, n)
        acme = await Client.connect(k.url, token="tok-acme")
        acme2 = await Client.connect(k.url, token="tok-acme")
        globex = await Client.connect(k.url, token="tok-globex")
        t = time.monotonic()
        await globex.call({"op": "list", "state": "expired"})
        print(f"acme holds {n} finished jobs; one globex list: {(time.monotonic() - t) * 1000:.1f} ms")
        t = time.monotonic()
        await acme.call({"op": "list", "state": "expired"})
        print(f"one acme list (none match): {(time.monotonic() - t) * 1000:.1f} ms")
        print("acme submit -> accepted, median / max ms, idle:                       %.2f / %.1f"
              % await latency(acme))
        for who, c in (("globex", globex), ("acme (another connection)", acme2)):
            task = asyncio.create_task(flood(c))
            print(f"  while {who} pipelines {FLOOD} lists:".ljust(70) + "%.2f / %.1f" % await latency(acme))
            await task
        for c in (acme, acme2, globex):
            await c.close()
    finally:
        k.stop()
        k.cleanup()


asyncio.run(main())
