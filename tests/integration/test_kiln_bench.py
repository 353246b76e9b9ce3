"""kiln-bench (SPEC §5) against the real kilnd for about a second: closed loop,
open loop and accept-only runs print the JSON keys SPEC §5 fixes, finish jobs
without errors, and order their percentiles; a server that is not there exits 1,
usage errors exit 2, and replies it cannot read are counted, not a crash. Against
small fake servers: a silent one does not stretch --duration and --drain, a job
whose done or parts are not what the protocol says is an error, and the JSON
report stays valid UTF-8 whatever the server wrote.

The benchmark itself (kiln against the FastAPI + Redis stack) is tests/bench/compare.py;
this test only keeps the tool working.
"""
import asyncio
import json
import os
import struct
import subprocess
import threading
import time
import unittest
import uuid

import websockets

from kiln_fixture import KILNCTL, KilndTestCase, free_port

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

    def test_help_that_standard_output_did_not_take_is_a_failure(self):
        for cmd in ([KILN_BENCH, "--help"], [KILNCTL, "--help"]):
            with self.subTest(cmd=cmd[0]), open("/dev/full", "w") as full:
                r = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=20)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("cannot write to standard output: No space left on device", r.stderr)

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

    def test_a_port_out_of_range_is_named(self):
        for port in (0, 65536):
            with self.subTest(port=port):
                r = kiln_bench("--url", f"ws://127.0.0.1:{port}/ws", "--scenario", "small")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("port out of range (1 to 65535)", r.stderr)


class FakeServerCase(unittest.TestCase):
    """A WebSocket server on a free port, in a thread of its own: each connection
    runs the coroutine handler(ws)."""

    async def handler(self, ws):
        raise NotImplementedError

    def setUp(self):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handler(ws, path=None):
            try:
                await self.handler(ws)
            except websockets.ConnectionClosed:
                pass

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

    async def welcome_then(self, ws, answer):
        """Welcomes the hello, then calls answer(ws, message) for every other text
        message."""
        async for text in ws:
            if isinstance(text, bytes):
                continue
            m = json.loads(text)
            if m.get("op") == "hello":
                await ws.send(json.dumps({"op": "welcome", "ref": m.get("ref")}))
            else:
                await answer(ws, m)

    def run_json(self, *args, env=None):
        r = subprocess.run([KILN_BENCH, "--url", self.url, "--scenario", "small", "--json", *map(str, args)],
                           capture_output=True, timeout=120, env=dict(os.environ, **(env or {})))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.decode("utf-8"))  # strict: the report is valid UTF-8


class KilnBenchAgainstAnOddServer(FakeServerCase):
    """A WebSocket server that first sends an empty text message (before anything
    else has been received on the connection), then the welcome, then answers each
    submit with an empty text message, one that is not JSON, two whose strings use
    escapes kiln-bench leaves to jansson, and finally an error reply for its ref."""

    ODD = ["", "not json", '{"op":"acc\\u0065pted","job":"x","ref":%d}', '{"op":"progress","job":"\\u00e9"}']

    async def handler(self, ws):
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

    def test_unreadable_replies_are_errors_not_a_crash(self):
        r = kiln_bench("--url", f"ws://127.0.0.1:{self.port}/ws", "--scenario", "small", "--connections", 2,
                       "--duration", 1, "--drain", 2, "--json", timeout=60)
        self.assertGreaterEqual(r.returncode, 0, r.stderr)  # not killed by a signal
        res = json.loads(r.stdout)
        self.assertGreater(res["errors"], 0, res)
        self.assertIn("unreadable message", res["first_error"], res)


class KilnBenchAgainstASilentServer(FakeServerCase):
    """Welcomes, then never answers a submit: the run and the drain end on time
    (on the libev loop they used to wait for socket activity, ~20 s), and the jobs
    count as unfinished."""

    async def handler(self, ws):
        async def ignore(ws, m):
            pass
        await self.welcome_then(ws, ignore)

    def test_duration_and_drain_end_on_time(self):
        for loop, env in (("libev", {}), ("poll", {"KILN_BENCH_POLL": "1"})):
            with self.subTest(loop=loop):
                t0 = time.monotonic()
                res = self.run_json("--duration", 1, "--drain", 1, "--connections", 2, "--pipeline", 2, env=env)
                took = time.monotonic() - t0
                self.assertLess(took, 5, res)
                self.assertEqual(res["jobs_total"], 0, res)
                self.assertEqual(res["error_detail"]["unfinished"], 4, res)
                self.assertEqual(res["errors"], 4, res)
                self.assertEqual(res["first_error"], "4 jobs still in flight at the end of the 1 s drain")


def klnb(job, part, dtype, shape, payload, head=None):
    """A part frame; `head` (bytes) replaces its JSON header."""
    if head is None:
        head = json.dumps({"job": job, "part": part, "dtype": dtype, "shape": shape}).encode()
    return b"KLNB" + struct.pack("<I", len(head)) + head + payload


class KilnBenchChecksResults(FakeServerCase):
    """Answers every submit with a done and two parts, as json.dumps writes them
    (spaces and all), spoilt as self.fault says: a job whose done or parts are not
    what the protocol says is an error (bad_results), never a finished job."""

    fault = None

    async def handler(self, ws):
        async def answer(ws, m):
            job = str(uuid.uuid4())
            await ws.send(json.dumps({"op": "accepted", "ref": m["ref"], "job": job, "state": "queued"}))
            parts = [{"name": "kappa", "dtype": "f32", "shape": [4, 4], "bytes": 64},
                     {"name": "zone", "dtype": "u8", "shape": [3], "bytes": 3}]
            done = {"op": "done", "ref": m["ref"], "job": job, "state": "done", "result": {"a": 1},
                    "parts": parts, "ms": {"queue": 0, "run": 0}}
            frames = [klnb(job, p["name"], p["dtype"], p["shape"], bytes(p["bytes"])) for p in parts]
            f = self.fault
            if f == "no bytes in the done":  # as the baseline stack's done
                done["parts"] = [{"name": p["name"]} for p in parts]
            elif f == "escapes in a header":  # read by jansson
                head = json.dumps({"job": job, "part": "kappa", "dtype": "f32", "shape": [4, 4]})
                frames[0] = klnb(job, "kappa", "f32", [4, 4], bytes(64),
                                 head=head.replace('"kappa"', '"k\\u0061ppa"').encode())
            elif f == "huge shape":
                frames[0] = klnb(job, "kappa", "f32", [1 << 30, 1 << 30], bytes(64))
            elif f == "other name":
                frames[0] = klnb(job, "evil", "f32", [4, 4], bytes(64))
            elif f == "2 bytes more":
                frames[0] += b"xx"
            elif f == "bytes unlike the done's":
                parts[1]["bytes"] = 4
            elif f == "other job":
                frames[1] = klnb(str(uuid.uuid4()), "zone", "u8", [3], bytes(3))
            elif f == "unreadable header":
                frames[1] = klnb(job, "zone", "u8", [3], bytes(3), head=b'{"job":')
            elif f == "result and parts of the wrong type":
                done.update(result="notanobject", parts="x")
                frames = []
            elif f == "parts of the wrong type":
                done["parts"] = "x"
                frames = []
            elif f == "a part without a name":
                done["parts"] = [{"dtype": "f32"}]
                frames = []
            await ws.send(json.dumps(done))
            for fr in frames:
                await ws.send(fr)
        await self.welcome_then(ws, answer)

    def test_good_results_are_finished_jobs(self):
        for fault in (None, "no bytes in the done", "escapes in a header"):
            with self.subTest(fault=fault):
                self.fault = fault
                res = self.run_json("--duration", 0.5, "--drain", 2, "--connections", 2, "--pipeline", 2)
                self.assertGreater(res["jobs_total"], 0, res)
                self.assertEqual(res["errors"], 0, res)

    def test_bad_results_are_errors(self):
        for fault, why in (("huge shape", "part kappa has 64 bytes, its dtype and shape call for 4611686018427387904"),
                           ("other name", 'part 1 of 2 is "evil", its done announced "kappa"'),
                           ("2 bytes more", "part kappa has 66 bytes, its dtype and shape call for 64"),
                           ("bytes unlike the done's", "part zone has 3 bytes, its done announced 4"),
                           ("other job", "part zone names the job"),
                           ("unreadable header", "part zone: malformed frame header"),
                           ("result and parts of the wrong type", 'its done has no "result" object'),
                           ("parts of the wrong type", 'its done has no "parts" list'),
                           ("a part without a name", 'its done lists a part without a name in "parts"')):
            with self.subTest(fault=fault):
                self.fault = fault
                res = self.run_json("--duration", 0.5, "--drain", 2, "--connections", 2, "--pipeline", 2)
                self.assertEqual(res["jobs_total"], 0, res)
                bad = res["error_detail"]["bad_results"]
                self.assertGreater(bad, 0, res)
                self.assertEqual(res["errors"], bad + res["error_detail"]["unfinished"], res)
                self.assertRegex(res["first_error"], r"^job [0-9a-f-]{36}: ")
                self.assertIn(why, res["first_error"])


class KilnBenchReportsInUtf8(FakeServerCase):
    """Answers every submit with text as self.answer says: the report's
    first_error is valid UTF-8, cut between characters."""

    answer = None

    async def handler(self, ws):
        async def answer(ws, m):
            if self.answer == "long message":
                await ws.send(json.dumps({"op": "error", "ref": m["ref"], "code": "bad_params",
                                          "message": "x" + "\u00e9" * 300}))
            else:  # a text frame that is not UTF-8 (websockets sends only valid text)
                await ws.write_frame(True, 1, b"\xc3(\xff not json \xe2\x82")
        await self.welcome_then(ws, answer)

    def test_first_error_is_valid_utf8(self):
        self.answer = "long message"
        res = self.run_json("--duration", 0.3, "--drain", 1)
        first = res["first_error"]
        self.assertTrue(first.startswith("error reply: bad_params: x\u00e9"), res)
        self.assertTrue(first.endswith("\u00e9"), res)
        self.assertLessEqual(len(first.encode()), 255)
        self.assertGreater(len(first.encode()), 250)
        self.answer = "not utf-8"
        res = self.run_json("--duration", 0.3, "--drain", 1)
        self.assertEqual(res["first_error"], "unreadable message: \ufffd(\ufffd not json \ufffd\ufffd")


if __name__ == "__main__":
    unittest.main()
