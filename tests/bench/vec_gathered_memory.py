#!/usr/bin/env python3
"""What single-query searches gathered into one batch hold against memory.max_bytes
(MB, default 64MiB): N (default 200) searches at k 1,000 of a 1,200-vector
collection whose ids are 240 bytes, all sent before any answer is read (one CPU
worker, batches of up to 256 gathered for 200 ms), read by a client that keeps up.
Each answer's ids are about 240 KB, held twice (result and `done`), and its
estimate at submit cannot know them. Prints the budget's peak against its limit,
how many searches were answered, and the largest batch. A benchmark, not a test:
it prints, asserts nothing.

    KILND=build/daemon/kilnd /usr/bin/python3 tests/bench/vec_gathered_memory.py
"""
import asyncio
import os
import sys

import numpy as np
import websockets

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import Client, Kilnd  # noqa: E402
from kiln_objects import next_ref, send_frames, vec_put  # noqa: E402
from test_vec import query_frames  # noqa: E402


async def main():
    n, k = int(os.environ.get("N", "200")), 1000
    env = {"KILN_MEMORY_MAX_BYTES": os.environ.get("MB", "64MiB"), "KILN_CPU_THREADS": "1",
           "KILN_BATCH_VEC_SEARCH_MAX_BATCH": "256", "KILN_BATCH_VEC_SEARCH_MAX_DELAY_US": "200000",
           "KILN_MEMORY_MAX_OUTPUT_BUFFER_BYTES": "256MiB"}
    kd = Kilnd(env=env).start()
    try:
        rows = np.random.default_rng(11).normal(size=(1200, 4)).astype(np.float32)
        ids = ["g" * 233 + f"-{i:06d}" for i in range(1200)]
        c = await Client.connect(kd.url)
        watcher = await Client.connect(kd.url)
        await vec_put(c, "gathered", rows, ids, metric="l2")
        done, batches, closed = 0, [], None

        async def read():
            nonlocal done, closed
            try:
                while done < n:
                    m = await c.recv(120)
                    if isinstance(m, dict) and m.get("op") == "done":
                        done += 1
                        batches.append(m.get("batch", 1))
                    elif isinstance(m, dict) and m.get("op") == "error":
                        print("error:", m)
            except websockets.exceptions.ConnectionClosed as e:
                closed = f"{e.rcvd.code if e.rcvd else '?'} {e.rcvd.reason if e.rcvd else ''}"
        reader = asyncio.create_task(read())
        for i in range(n):
            ref = next_ref(c)
            await send_frames(c, query_frames(ref, rows[i:i + 1]))
            await c.send({"op": "submit", "kind": "vec.search", "ref": ref,
                          "params": {"collection": "gathered", "k": k}})
        try:
            await asyncio.wait_for(reader, 180)
        except asyncio.TimeoutError:
            pass
        mem = (await watcher.call({"op": "stats"}))["memory"]
        print(f"memory.max_bytes {mem['max_bytes'] >> 20} MiB: budget peak {mem['peak_bytes'] / 2**20:.1f} MiB; "
              f"{done} of {n} searches answered; largest batch {max(batches) if batches else 0}"
              + (f"; the client was closed: {closed}" if closed else ""))
        await watcher.close()
    finally:
        kd.stop()
        kd.cleanup()


asyncio.run(main())
