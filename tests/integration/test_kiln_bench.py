"""kiln-bench (SPEC §5) against the real kilnd for about a second: closed loop,
open loop and accept-only runs print the JSON keys SPEC §5 fixes, finish jobs
without errors, and order their percentiles; a server that is not there exits 1,
usage errors exit 2, and replies it cannot read are counted, not a crash.

The benchmark itself (kiln against the FastAPI + Redis stack) is tests/bench/compare.py;
this test only keeps the tool working.
"""
import asyncio
import json
import os
import subprocess
import threading
import unittest

import websockets

from kiln_fixture import KilndTestCase, free_port

KILN_BENCH = os.environ.get("KILN_BENCH", "build/daemon/bench/kiln-bench")
KEYS = ("jobs_per_s", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "errors")


def kiln_bench(*args, timeout=120):
    return subprocess.run([KILN_BENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout)


class KilnBenchAgainstKilnd(KilndTestCase):

    def run_json(self, *args):
        r = kiln_bench("--url", self.kilnd.url, "--duration", 1, "--json", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)
        for k in KEYS:
            self.assertIn(k, res)
        self.assertEqual(res["errors"], 0, res)
        self.assertGreater(res["jobs_per_s"], 0, res)
        p = [res[k] for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms")]
        self.assertGreater(p[0], 0, res)
        self.assertEqual(p, sorted(p), res)
        self.assertLessEqual(p[-1], res["max_ms"], res)
        return res

    def test_closed_loop_small(self):
        res = self.run_json("--scenario", "small", "--connections", 4, "--pipeline", 2)
        self.assertEqual(res["mode"], "closed")
        self.assertEqual(res["connected"], 4)
        # Jobs finished within the second match the rate it reports.
        self.assertAlmostEqual(res["jobs"], res["jobs_per_s"] * res["duration_s"], delta=1)

    def test_open_loop_follows_the_rate(self):
        res = self.run_json("--scenario", "cached", "--connections", 2, "--rate", 50)
        self.assertEqual(res["mode"], "open")
        # 50 jobs/s for 1 s: every scheduled job is issued and finished (drain included).
        self.assertEqual(res["jobs_total"], 50, res)

    def test_accept_only(self):
        res = self.run_json("--scenario", "small", "--connections", 2, "--accept-only")
        self.assertTrue(res["accept_only"])

    def test_idle_connections_say_hello_and_stay(self):
        res = self.run_json("--scenario", "cached", "--connections", 1, "--idle", 50)
        self.assertEqual(res["idle_connected"], 50, res)
        self.assertGreater(res["rss_idle_kb"], 0, res)

    def test_text_report(self):
        r = kiln_bench("--url", self.kilnd.url, "--duration", 1, "--scenario", "small")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"jobs: +\d+ in 1 s = [\d.]+ jobs/s")
        self.assertRegex(r.stdout, r"p50 [\d.]+ ms +p95 [\d.]+ ms +p99 [\d.]+ ms +p99\.9 [\d.]+ ms")
        self.assertIn("errors:  0", r.stdout)


class KilnBenchWithoutServer(unittest.TestCase):

    def test_nothing_listening_exits_1(self):
        r = kiln_bench("--url", f"ws://127.0.0.1:{free_port()}/ws", "--scenario", "small", "--duration", 1,
                       "--json", timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("cannot connect", r.stderr)

    def test_usage_errors_exit_2(self):
        for args in ([], ["--url", "ws://127.0.0.1:1/ws"], ["--url", "http://x/", "--scenario", "small"],
                     ["--url", "ws://127.0.0.1:1/ws", "--scenario", "nope"],
                     ["--url", "ws://127.0.0.1:1/ws", "--scenario", "small", "--connections", "0"]):
            with self.subTest(args=args):
                r = kiln_bench(*args)
                self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    unittest.main()


class KilnBenchAgainstAnOddServer(unittest.TestCase):
    """A WebSocket server that first sends an empty text message (before anything
    else has been received on the connection), then the welcome, then answers each
    submit with an empty text message, one that is not JSON, two whose strings use
    escapes kiln-bench leaves to jansson, and finally an error reply for its ref."""

    ODD = ["", "not json", '{"op":"acc\\u0065pted","job":"x","ref":%d}', '{"op":"progress","job":"\\u00e9"}']

    def setUp(self):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handler(ws, path=None):
            async for text in ws:
                m = json.loads(text)
                if m.get("op") == "hello":
                    await ws.send("")
                    await ws.send(json.dumps({"op": "welcome", "ref": m.get("ref")}))
                    continue
                for odd in self.ODD:
                    await ws.send(odd % m["ref"] if "%d" in odd else odd)
                await ws.send(json.dumps({"op": "error", "code": "unavailable", "message": "odd server",
                                          "ref": m["ref"]}))

        async def serve():
            self.server = await websockets.serve(handler, "127.0.0.1", self.port, subprotocols=["kiln.v1"])
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(serve()),
                                                       self.loop.run_forever()), daemon=True)
        self.thread.start()
        self.assertTrue(ready.wait(10))

    def tearDown(self):
        async def close():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def test_unreadable_replies_are_errors_not_a_crash(self):
        r = kiln_bench("--url", f"ws://127.0.0.1:{self.port}/ws", "--scenario", "small", "--connections", 2,
                       "--duration", 1, "--drain", 2, "--json", timeout=60)
        self.assertGreaterEqual(r.returncode, 0, r.stderr)  # not killed by a signal
        res = json.loads(r.stdout)
        self.assertGreater(res["errors"], 0, res)
        self.assertIn("unreadable message", res["first_error"], res)
