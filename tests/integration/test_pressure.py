"""Memory pressure, slow readers and a full store (SPEC §4 [memory], §7 bounded memory
and full disk), scaled down to run in CI:

  * budget: with a small memory.max_bytes, jobs whose results together exceed it all
    finish, `stats` never shows more in use than the budget, kilnd's anonymous memory
    stays under the budget plus a fixed overhead, and a job whose result alone is over
    the budget is refused at submit;
  * slow reader: a connection that submits big jobs and never reads is closed (1008)
    once its output passes memory.max_output_buffer_bytes; its jobs go on, their
    results stay retrievable, and another client is served meanwhile;
  * full store: an LMDB map or a filesystem that fills up makes kilnd refuse new work
    with `unavailable` naming the store and /readyz answer 503 with the reason, no
    accepted job ends `failed`, and when room comes back kilnd serves again.

The raw WebSocket client (RawWs), the memory sampler (RssSampler) and kilnd on a
small tmpfs (TmpfsKilnd) are also used by tests/bench/pressure.py.
"""
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import socket
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from kiln_fixture import Client, Kilnd, encode_frame, wait_for
from kiln_objects import part_frames, send_frames, vec_put, vectors_payload, xgb_model_of_size

KIND = "lens.nfw"
MiB = 1 << 20
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FINISHED = ("done", "failed", "cancelled", "expired")


def result_bytes(grid, maps):
    """Bytes of a lens.nfw result: one f32[grid][grid] part per map."""
    return grid * grid * 4 * len(maps)


def nfw(grid, maps=("kappa",), mass=None):
    """lens.nfw params with a mass no other job of this run has (so nothing coalesces
    or comes from the cache)."""
    return {"mass": mass or random.uniform(1e13, 1e15), "concentration": 5.0, "grid_size": grid,
            "maps": list(maps)}


class RawWs:
    """A WebSocket client written on a plain socket, for clients that never read: it
    sends masked frames (RFC 6455) and reads only when drain() is called.
    `rcvbuf` shrinks the socket's receive buffer, so that what the server cannot send
    stays in the server instead of in this machine's socket buffers."""

    def __init__(self, port, host="127.0.0.1", rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(b"GET /ws HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                          b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: kiln.v1\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("kilnd closed the connection during the WebSocket upgrade")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:200]!r}")
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        if b"sec-websocket-accept: " + accept.lower() not in head.lower():
            raise ConnectionError(f"bad Sec-WebSocket-Accept in {head!r}")
        self.buf = bytearray(rest)
        self.read_bytes = len(rest)
        self.ref = 0

    def send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        if n:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.sock.sendall(head + mask + payload)

    def send_json(self, msg):
        if "ref" not in msg:
            self.ref += 1
            msg = dict(msg, ref=self.ref)
        self.send_frame(0x1, json.dumps(msg).encode())
        return msg["ref"]

    def _fill(self, deadline, idle_s):
        """Reads more into self.buf; raises EOFError at the end of the stream."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("still sending")
        self.sock.settimeout(min(idle_s, left))
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError
        self.read_bytes += len(chunk)
        self.buf += chunk

    def drain(self, idle_s=2.0, max_s=60.0):
        """Reads everything the server sent until it closes the connection, or sends
        nothing for idle_s, or max_s passed. Binary payloads are counted and dropped.
        Returns {"end": "close"|"eof"|"reset"|"open", "close_code", "close_reason",
        "ops": {op: count of text messages}, "bytes": bytes read}."""
        out = {"end": None, "close_code": None, "close_reason": None, "ops": {}}
        deadline = time.monotonic() + max_s
        text = bytearray()
        try:
            while True:
                while len(self.buf) < 2:
                    self._fill(deadline, idle_s)
                b0, b1 = self.buf[0], self.buf[1]
                n, at = b1 & 0x7F, 2
                if n >= 126:
                    ext = 2 if n == 126 else 8
                    while len(self.buf) < 2 + ext:
                        self._fill(deadline, idle_s)
                    n, at = int.from_bytes(self.buf[2:2 + ext], "big"), 2 + ext
                if b1 & 0x80:
                    at += 4  # a server never masks; tolerate it anyway
                op = b0 & 0x0F
                keep = op in (0x1, 0x8) or (op == 0 and text)
                del self.buf[:at]
                while n:
                    if not self.buf:
                        self._fill(deadline, idle_s)
                    take = min(n, len(self.buf))
                    if keep:
                        text += self.buf[:take]
                    del self.buf[:take]
                    n -= take
                if op == 0x8:
                    out["end"], out["bytes"] = "close", self.read_bytes
                    if len(text) >= 2:
                        out["close_code"] = int.from_bytes(text[:2], "big")
                        out["close_reason"] = text[2:].decode(errors="replace")
                    return out
                if keep and b0 & 0x80:
                    try:
                        o = json.loads(text)
                        name = o.get("op") if isinstance(o, dict) else None
                    except ValueError:
                        name = None
                    out["ops"][name] = out["ops"].get(name, 0) + 1
                    text = bytearray()
        except EOFError:
            out["end"] = "eof"
        except (ConnectionResetError, BrokenPipeError):
            out["end"] = "reset"
        except (TimeoutError, socket.timeout):
            out["end"] = "open"
        out["bytes"] = self.read_bytes
        return out

    def close(self):
        self.sock.close()


def proc_status_kib(pid, *keys):
    """Fields of /proc/PID/status in KiB ({} once the process is gone)."""
    got = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in keys:
                    got[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return got


class RssSampler(threading.Thread):
    """Samples a process's RssAnon every `period` seconds from a thread; `peak_kib` is
    the highest value seen, `peak_file_kib` the highest RssFile (pages of mapped files,
    such as the store's map: the kernel's to reclaim, not kilnd's memory), `hwm_kib`
    the process's VmHWM (anonymous and file pages together) when stop() was called."""

    def __init__(self, pid, period=0.02):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_kib = self.peak_file_kib = 0
        self.samples = 0
        self.hwm_kib = None
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            v = proc_status_kib(self.pid, "RssAnon", "RssFile")
            if "RssAnon" in v:
                self.peak_kib = max(self.peak_kib, v["RssAnon"])
                self.peak_file_kib = max(self.peak_file_kib, v.get("RssFile", 0))
                self.samples += 1
            self.halt.wait(self.period)

    def now_kib(self):
        return proc_status_kib(self.pid, "RssAnon").get("RssAnon", 0)

    def stop(self):
        self.hwm_kib = proc_status_kib(self.pid, "VmHWM").get("VmHWM")
        self.halt.set()
        self.join()
        return self.peak_kib


def readyz(http):
    """(status code, JSON body) of GET /readyz."""
    try:
        with urllib.request.urlopen(http + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode(errors="replace")


async def jobs_by_state(c, exclude=()):
    """{job id: state} of every job of the client's tenant (paged `list`), without
    the ids in `exclude`."""
    out, after = {}, None
    while True:
        r = await c.call({"op": "list", "limit": 1000, "after": after})
        assert r.get("op") == "jobs", r
        for j in r["jobs"]:
            if j["job"] not in exclude:
                out[j["job"]] = j["state"]
        after = r.get("next")
        if not after:
            return out


async def finish_all(c, ids, timeout=60):
    """Reads until the `done` of every id in `ids` (parts dropped). Returns {id: done}."""
    want, got = set(ids), {}
    end = time.monotonic() + timeout
    while want:
        m = await c.recv(max(0.1, end - time.monotonic()))
        if isinstance(m, bytes) or m.get("op") != "done" or m.get("job") not in want:
            continue
        want.discard(m["job"])
        got[m["job"]] = m
    return got


def stop_and_check(k):
    code = k.stop()
    log = k.read_log()
    k.cleanup()
    if code != 0:
        raise AssertionError(f"kilnd exited with {code} on SIGTERM:\n{log[-4000:]}")


class PressureCase(unittest.TestCase):
    def run_async(self, coro, timeout=90):
        return asyncio.run(asyncio.wait_for(coro, timeout))


class SmallBudgetCase(PressureCase):
    """A kilnd of its own with memory.max_bytes 64 MiB, the least it takes (inputs:
    at most 31.5 MiB)."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_MEMORY_MAX_BYTES": str(64 * MiB)}).start()

    @classmethod
    def tearDownClass(cls):
        stop_and_check(cls.kilnd)


class NonReaderUnderPressureTest(SmallBudgetCase):
    """memory.max_bytes 64 MiB. A client that reads none of its replies holds the
    results of its finished jobs in the budget; while other work waits for room it
    is closed after 5 s of taking nothing (its jobs go on), not kept for good (it
    held 62 MiB, 12 of its jobs and every other client's waiting, for as long as it
    stayed connected)."""

    def test_it_is_closed_when_work_waits_for_the_room_it_holds(self):
        async def go():
            c = await Client.connect(self.kilnd.url)
            waits = (await c.call({"op": "stats"}))["memory"]["waits"]
            slow = RawWs(self.kilnd.port, rcvbuf=4096)
            slow.send_json({"op": "hello", "client": "never-reads/1"})
            for _ in range(80):  # 80 results of 1 MB
                slow.send_json({"op": "submit", "kind": KIND, "params": nfw(500)})
            end = time.monotonic() + 30
            while (await c.call({"op": "stats"}))["memory"]["waits"] == waits:  # the budget is full: jobs wait
                self.assertLess(time.monotonic(), end, "the budget never filled")
                await asyncio.sleep(0.05)
            t0 = time.monotonic()
            done, _ = await c.run(KIND, nfw(500))
            self.assertEqual(done["state"], "done", done)
            waited = time.monotonic() - t0
            got = await asyncio.get_running_loop().run_in_executor(None, slow.drain, 5.0, 30.0)
            slow.close()
            self.assertIn(got["end"], ("close", "eof", "reset"), got)
            if got["end"] == "close":
                self.assertEqual(got["close_code"], 1008, got)
            await c.close()
            return waited

        waited = self.run_async(go())
        print(f"\nanother client's job waited {waited:.1f} s for the room a non-reader held")
        self.assertLess(waited, 20)

    def test_a_resubmission_under_a_key_waits_for_room_instead_of_being_refused(self):
        async def go():
            c = await Client.connect(self.kilnd.url)
            p = nfw(500)  # 1 MB: read back from the store for the resubmission's done
            first = await c.submit(KIND, p, key="wait-for-room")
            await c.read_done(first["job"])
            waits = (await c.call({"op": "stats"}))["memory"]["waits"]
            slow = RawWs(self.kilnd.port, rcvbuf=4096)
            slow.send_json({"op": "hello", "client": "never-reads/1"})
            for _ in range(80):
                slow.send_json({"op": "submit", "kind": KIND, "params": nfw(500)})
            end = time.monotonic() + 30
            while (await c.call({"op": "stats"}))["memory"]["waits"] == waits:
                self.assertLess(time.monotonic(), end, "the budget never filled")
                await asyncio.sleep(0.05)
            # No room to read the result back now: it waits (here until the
            # non-reader is let go), it is not refused.
            again = await c.submit(KIND, p, key="wait-for-room")
            self.assertEqual((again["op"], again["job"]), ("accepted", first["job"]), again)
            done, parts, _ = await c.read_done(first["job"])
            self.assertEqual(done["state"], "done")
            self.assertEqual(parts["kappa"].shape, (500, 500))
            slow.close()
            await c.close()

        self.run_async(go())


class ObjectUploadBudgetTest(SmallBudgetCase):
    """memory.max_bytes 64 MiB (inputs and results: at most 63 MiB, inputs alone 31.5).
    An upload stays in the budget until it is stored, and its check takes what reading
    the model may hold (11 times its size and 5 MiB) until it is done."""

    def test_pipelined_uploads_stay_within_the_budget(self):
        # Ten model.put of 3 MiB pipelined on one connection: a check takes 38 MiB, so
        # one runs at a time; the uploads that find no room are refused (naming
        # memory.max_bytes), not held outside it; the others are stored.
        data, _ = xgb_model_of_size(3 * MiB)
        n = 10

        async def go():
            c = await Client.connect(self.kilnd.url)
            for ref in range(1, n + 1):
                await send_frames(c, part_frames(ref, "model", "bytes", [len(data)], data))
                await c.send({"op": "model.put", "name": f"m{ref}", "ref": ref})
            seen, final = [], {}
            while len(final) < n:
                m = await c.recv(timeout=60)
                seen.append(m)
                # A refused frame is answered for its ref, then its model.put finds no part.
                if m.get("ref") in range(1, n + 1) and (m.get("op") == "model" or
                                                         (m.get("op") == "error" and m.get("field") != "frame")):
                    final[m["ref"]] = m
            await c.close()
            return seen, final

        seen, final = self.run_async(go())
        stored = [r for r, m in final.items() if m.get("op") == "model"]
        self.assertGreater(len(stored), 0, seen)
        budget = [m for m in seen if m.get("op") == "error" and "no room to check a model" in m.get("message", "")]
        self.assertGreater(len(budget), 0, f"all {n} uploads were held at once: {seen}")
        for m in seen:
            if m.get("op") == "error":
                self.assertIn(m.get("code"), ("unavailable", "bad_params"), m)
                if m.get("code") == "unavailable":  # a check, or a frame, that found no room
                    self.assertIn("memory.max_bytes", m.get("message", ""), m)
                    self.assertTrue("no room to check a model" in m["message"] or m.get("field") == "frame", m)
                else:  # the model.put of a refused frame
                    self.assertIn("needs the binary part", m.get("message", ""), m)


    def test_a_model_too_big_to_check_within_the_budget_is_too_large(self):
        # 12 MiB would take up to 137 MiB to read; 5 MiB up to 60 MiB, which with its
        # own 5 MiB held is more than 63: neither could ever fit, so each is
        # too_large at once rather than "retry later".
        async def put(data):
            c = await Client.connect(self.kilnd.url)
            await send_frames(c, part_frames(1, "model", "bytes", [len(data)], data))
            m = await c.call({"op": "model.put", "name": "big", "ref": 1})
            used = (await c.call({"op": "stats"}))["memory"]["used_bytes"]
            await c.close()
            return m, used

        for size in (12 * MiB, 5 * MiB):
            data, _ = xgb_model_of_size(size)
            self.assertLess(len(data), 5.2 * MiB if size == 5 * MiB else 13 * MiB)
            m, used = self.run_async(put(data))
            self.assertEqual((m.get("op"), m.get("code"), m.get("field")), ("error", "too_large", "model"), m)
            self.assertIn("memory.max_bytes", m.get("message", ""))
            self.assertEqual(used, 0, "the refused upload's bytes were given back")


class IdleConnectionBudgetTest(SmallBudgetCase):
    """memory.max_bytes 64 MiB (inputs: at most 31.5 MiB). A message bigger than one
    read is put together in a buffer held in the budget; once it is handled the
    buffer goes, so connections that sent one and then sit idle hold nothing."""

    def test_connections_idle_after_a_big_message_hold_no_budget(self):
        async def go():
            c0 = await Client.connect(self.kilnd.url)
            idle = []
            for _ in range(40):  # 40 x 600 KB is more than the inputs' share
                c = await Client.connect(self.kilnd.url)
                await c.ws.send(b"KLNB" + b"\xff\xff\xff\x7f" + b"\0" * (600 << 10))  # refused: a bad header
                m = await c.recv(10)
                self.assertEqual((m.get("op"), m.get("code")), ("error", "bad_request"), m)
                idle.append(c)
            held = (await c0.call({"op": "stats"}))["memory"]["inputs_bytes"]
            rows = np.ones((1 << 16, 4), dtype=np.float32)  # a 1 MiB part on yet another connection
            c1 = await Client.connect(self.kilnd.url)
            put = await vec_put(c1, "after-idle", rows, [f"i{i}" for i in range(len(rows))], metric="ip")
            for c in idle + [c0, c1]:
                await c.close()
            return held, put

        held, put = self.run_async(go())
        self.assertEqual(held, 0)
        self.assertEqual(put.get("op"), "vec", put)


class NoRoomForAMessageTest(SmallBudgetCase):
    """memory.max_bytes 64 MiB (inputs: at most 31.5 MiB). A message whose buffer
    finds no room in the budget is read to its end and dropped, then answered
    `unavailable` with its ref (read from what arrived of it, text or a binary
    part's header); the connection stays, and the same message goes through once
    there is room."""

    def test_a_message_without_room_is_answered_unavailable_and_the_connection_stays(self):
        rows = np.random.default_rng(3).random((200000, 4)).round(6).tolist()
        text = json.dumps({"ref": "big-1", "op": "submit", "kind": "risk.score",
                           "params": {"model": "altman-z2", "rows": rows}})
        self.assertGreater(len(text), 6 * MiB)  # more than the 5.5 MiB the hog leaves

        async def go():
            hog = await Client.connect(self.kilnd.url)
            # 26 MiB of one part really sent, waiting for a message that never comes.
            chunk = 1 * MiB
            for off in range(0, 26 * MiB, chunk):
                await hog.ws.send(encode_frame({"ref": 9, "part": "x", "dtype": "u8", "shape": [26 * MiB],
                                                "offset": off}, b"\0" * chunk))
            held = (await hog.call({"op": "stats"}))["memory"]["inputs_bytes"]
            c = await Client.connect(self.kilnd.url)
            await c.ws.send(text)
            refused = await c.recv(30)
            part = encode_frame({"ref": "p-1", "part": "rows", "dtype": "f32", "shape": [600000, 4]},
                                np.zeros((600000, 4), np.float32).tobytes())
            await c.ws.send(part)
            refused_part = await c.recv(30)
            alive = await c.call({"op": "stats"})
            await hog.close()
            for _ in range(100):  # the hog's part is given back as its connection goes
                if (await c.call({"op": "stats"}))["memory"]["inputs_bytes"] < 4 * MiB:
                    break
                await asyncio.sleep(0.05)
            await c.ws.send(text)
            again = await c.recv(30)
            await c.close()
            return held, refused, refused_part, alive, again
        held, refused, refused_part, alive, again = self.run_async(go())
        self.assertGreater(held, 25 * MiB)
        self.assertEqual((refused.get("op"), refused.get("code"), refused.get("ref")), ("error", "unavailable", "big-1"),
                         refused)
        self.assertIn("memory.max_bytes", refused["message"])
        self.assertEqual((refused_part.get("code"), refused_part.get("ref")), ("unavailable", "p-1"), refused_part)
        self.assertEqual(alive.get("op"), "stats", alive)
        self.assertEqual((again.get("op"), again.get("ref")), ("accepted", "big-1"), again)


class HttpBodyBudgetTest(SmallBudgetCase):
    """memory.max_bytes 64 MiB (inputs: at most 31.5 MiB). Request bodies of the HTTP
    API wait in memory until they are whole, so they are held in the budget as a
    WebSocket message being received is: two bodies of 15 MiB half sent, and a third
    sent whole, find no room for it and get 503 naming memory.max_bytes."""

    async def used_bytes_once(self, ok, seconds=30):
        """stats' memory.used_bytes, polled until ok(used) (or `seconds` pass)."""
        c = await Client.connect(self.kilnd.url)
        try:
            end = time.monotonic() + seconds
            while True:
                used = (await c.call({"op": "stats"}))["memory"]["used_bytes"]
                if ok(used) or time.monotonic() > end:
                    return used
                await asyncio.sleep(0.02)
        finally:
            await c.close()

    def post(self, body_len, send):
        s = socket.create_connection(("127.0.0.1", self.kilnd.port), timeout=30)
        s.sendall(f"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {body_len}\r\n\r\n".encode() + b" " * send)
        return s

    def test_bodies_waiting_to_be_whole_stay_within_the_budget(self):
        size = 15 * MiB
        waiting = [self.post(size, 6 * MiB) for _ in range(2)]
        try:
            # Both partial bodies are read in: 8 MiB held for each.
            self.assertGreaterEqual(self.run_async(self.used_bytes_once(lambda used: used >= 16 * MiB)), 16 * MiB)
            s = self.post(size, size)
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
            s.close()
            head, _, body = reply.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 503"), reply[:300])
            e = json.loads(body)
            self.assertEqual((e["code"], e["field"]), ("unavailable", "body"), e)
            self.assertIn("memory.max_bytes", e["message"])
        finally:
            for w in waiting:
                w.close()
        # Their bytes came back; a small job is taken again.
        self.assertLess(self.run_async(self.used_bytes_once(lambda used: used < 1 * MiB)), 1 * MiB)
        with urllib.request.urlopen(urllib.request.Request(
                self.kilnd.http + "/api/v1/jobs", data=json.dumps({"kind": KIND, "params": nfw(16)}).encode(),
                headers={"Content-Type": "application/json"}, method="POST"), timeout=30) as r:
            self.assertEqual(r.status, 202)


class BudgetTest(PressureCase):
    """memory.max_bytes 96 MiB; six jobs of 48 MiB of result each: two fill the budget
    exactly, so whatever else kilnd charges to it (output buffers) must wait or fit."""

    BUDGET = 96 * MiB
    GRID, MAPS = 2048, ("kappa", "alpha_x", "alpha_y")
    OVERHEAD = 150 * MiB  # code, threads' stacks, allocator slack: what is not budgeted

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_MEMORY_MAX_BYTES": str(cls.BUDGET)}).start()

    @classmethod
    def tearDownClass(cls):
        stop_and_check(cls.kilnd)

    def test_jobs_over_the_budget_all_finish_within_it(self):
        each = result_bytes(self.GRID, self.MAPS)
        self.assertGreater(6 * each, 2 * self.BUDGET)
        sampler = RssSampler(self.kilnd.proc.pid)
        idle_kib = sampler.now_kib()
        sampler.start()

        async def go():
            c = await Client.connect(self.kilnd.url)
            mon = await Client.connect(self.kilnd.url)
            seen = []  # (max_bytes, used_bytes) of every stats reply while the jobs ran
            running = True

            async def poll():
                while running:
                    r = await mon.call({"op": "stats"})
                    mem = r.get("memory")
                    self.assertIsInstance(mem, dict, f"stats has no memory object: {r}")
                    seen.append((mem.get("max_bytes"), mem.get("used_bytes")))
                    await asyncio.sleep(0.02)
                return mem

            poller = asyncio.ensure_future(poll())
            try:
                for i in range(6):
                    await c.send({"op": "submit", "kind": KIND, "params": nfw(self.GRID, self.MAPS), "ref": i})
                ids = []
                while len(ids) < 6:
                    m = await wait_for_ref(c)
                    self.assertEqual(m.get("op"), "accepted", m)
                    ids.append(m["job"])
                dones = {}
                while len(dones) < 6:
                    done, parts, _ = await c.read_done(timeout=60)
                    dones[done["job"]] = done
                    self.assertEqual(done["state"], "done", done)
                    self.assertEqual(sorted(parts), sorted(self.MAPS))
                    for a in parts.values():
                        self.assertEqual(a.shape, (self.GRID, self.GRID))
                self.assertEqual(sorted(dones), sorted(ids))
            finally:
                running = False
                await poller
            last = (await mon.call({"op": "stats"}))["memory"]
            await c.close()
            await mon.close()
            return seen, last

        seen, last = self.run_async(go())
        peak_kib = sampler.stop()
        self.assertTrue(seen)
        for max_bytes, used in seen:
            self.assertEqual(max_bytes, self.BUDGET)
            self.assertLessEqual(used, self.BUDGET)
        peak_used = max(u for _, u in seen)
        overhead = peak_kib * 1024 - self.BUDGET
        print(f"\nbudget {self.BUDGET >> 20} MiB, results {6 * each / MiB:.0f} MiB in all; stats: peak used "
              f"{peak_used / MiB:.1f} MiB, peak_bytes {last['peak_bytes']}, waits {last['waits']}; RssAnon idle "
              f"{idle_kib / 1024:.1f} MiB, peak {peak_kib / 1024:.1f} MiB ({sampler.samples} samples): overhead "
              f"over the budget {overhead / MiB:.1f} MiB")
        # The budget is in use while results are held (else its bound says nothing),
        # jobs waited for it, and its own high-water mark never passed it.
        self.assertGreaterEqual(peak_used, each)
        self.assertGreater(last["waits"], 0, last)
        self.assertLessEqual(last["peak_bytes"], self.BUDGET, last)
        # Under AddressSanitizer the process's own memory (shadow, quarantine) is
        # not kilnd's: the bound on RssAnon holds for the plain build only.
        if not os.environ.get("KILN_SANITIZED"):
            self.assertLess(peak_kib * 1024, self.BUDGET + self.OVERHEAD)

    def test_result_alone_over_the_budget_is_too_large_at_submit(self):
        async def go():
            c = await Client.connect(self.kilnd.url)
            maps = ("kappa", "gamma1")
            self.assertGreater(result_bytes(4096, maps), self.BUDGET)
            r = await c.submit(KIND, nfw(4096, maps))
            self.assertEqual(r.get("op"), "error", r)
            self.assertEqual(r.get("code"), "too_large", r)
            self.assertEqual(r.get("field"), "params", r)
            self.assertIn("memory.max_bytes", r.get("message", ""))
            # The connection goes on.
            done, _ = await c.run(KIND, nfw(64))
            self.assertEqual(done["state"], "done")
            await c.close()
        self.run_async(go())


class TwoThreadsCase(PressureCase):
    """A kilnd of its own with the default budget and two CPU threads."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_CPU_THREADS": "2"}).start()

    @classmethod
    def tearDownClass(cls):
        stop_and_check(cls.kilnd)


class HeapReturnTest(TwoThreadsCase):
    """What a burst of results took is given back to the system once they are sent
    (glibc keeps freed memory in its arenas; kilnd trims them, memtrim.h)."""

    JOBS, GRID = 200, 500  # 1 MB of result each, freed in pieces the arenas keep

    @unittest.skipIf(os.environ.get("KILN_SANITIZED"), "AddressSanitizer's allocator is not glibc's")
    def test_rss_falls_back_after_a_burst(self):
        pid = self.kilnd.proc.pid
        idle_kib = proc_status_kib(pid, "RssAnon")["RssAnon"]
        sampler = RssSampler(pid)
        sampler.start()

        async def go():
            c = await Client.connect(self.kilnd.url)
            for i in range(self.JOBS):
                await c.send({"op": "submit", "kind": KIND, "params": nfw(self.GRID), "cache": False, "ref": i})
            accepted, done = set(), set()
            while len(done) < self.JOBS:  # a job's done may come before the last accepted
                m = await c.recv(150)
                if isinstance(m, bytes):
                    continue
                self.assertIn(m.get("op"), ("accepted", "progress", "done"), m)
                if m["op"] == "accepted":
                    accepted.add(m["job"])
                elif m["op"] == "done":
                    self.assertEqual(m["state"], "done", m)
                    done.add(m["job"])
            self.assertEqual(done, accepted)
            await c.close()

        self.run_async(go(), timeout=180)
        end = time.monotonic() + 20
        while True:
            now_kib = proc_status_kib(pid, "RssAnon")["RssAnon"]
            if now_kib < idle_kib + 24 * 1024 or time.monotonic() > end:
                break
            time.sleep(0.2)
        peak_kib = sampler.stop()
        print(f"\nRssAnon idle {idle_kib / 1024:.1f} MiB, peak {peak_kib / 1024:.1f} MiB, "
              f"after {now_kib / 1024:.1f} MiB")
        self.assertLess(now_kib, idle_kib + 24 * 1024, f"peak {peak_kib} KiB")


class CachedAnswerBudgetTest(TwoThreadsCase):
    """A cache hit whose result the store copied out holds what a computed job
    holds while its client does not read: its result once, not its copy's
    reservation on top (it held 3.2 times the results)."""

    N, GRID = 10, 500  # results of 1 MB: copied out by the store, not sent from it

    def test_copied_cache_hits_count_their_result_once(self):
        size = result_bytes(self.GRID, ("kappa",))

        async def go():
            c = await Client.connect(self.kilnd.url)
            params = [nfw(self.GRID) for _ in range(self.N)]
            for p in params:  # computed, stored, cached
                done, _ = await c.run(KIND, p)
                self.assertEqual(done["state"], "done", done)
            hits0 = (await c.call({"op": "stats"}))["cache"]["hits"]
            slow = RawWs(self.kilnd.port, rcvbuf=4096)
            try:
                slow.send_json({"op": "hello", "client": "slow/1"})
                for p in params:
                    slow.send_json({"op": "submit", "kind": KIND, "params": p})
                end = time.monotonic() + 30
                while True:  # every one answered from the store's cache, none read
                    st = await c.call({"op": "stats"})
                    if st["cache"]["hits"] - hits0 >= self.N or time.monotonic() > end:
                        break
                    await asyncio.sleep(0.05)
                self.assertEqual(st["cache"]["hits"] - hits0, self.N, st["cache"])
                held = st["memory"]["results_bytes"]
                self.assertLessEqual(held, 1.2 * self.N * size, st["memory"])
                self.assertGreater(held, 0.5 * self.N * size, "sampled before the copies were held")
            finally:
                slow.close()
            await c.close()

        self.run_async(go())


class SlowReaderTest(PressureCase):
    """memory.max_output_buffer_bytes 1 MiB; a client that never reads asks for 40 MiB."""

    GRID, MAPS, JOBS = 1024, ("kappa", "gamma1"), 5

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_MEMORY_MAX_OUTPUT_BUFFER_BYTES": "1MiB"}).start()

    @classmethod
    def tearDownClass(cls):
        stop_and_check(cls.kilnd)

    def test_client_that_never_reads_is_closed_and_its_jobs_go_on(self):
        run = os.urandom(4).hex()
        params = [nfw(self.GRID, self.MAPS) for _ in range(self.JOBS)]
        keys = [f"never-reads-{run}-{i}" for i in range(self.JOBS)]

        async def go():
            c = await Client.connect(self.kilnd.url)
            small_ids, accept_s = set(), []

            async def small():
                r0 = time.monotonic()
                r = await c.submit(KIND, nfw(64))
                accept_s.append(time.monotonic() - r0)
                self.assertEqual(r.get("op"), "accepted", r)
                small_ids.add(r["job"])

            await small()  # before the slow client: its jobs are told apart by id
            conns_before = (await c.call({"op": "stats"}))["connections"]
            slow = RawWs(self.kilnd.port, rcvbuf=16 << 10)
            slow.send_json({"op": "hello", "client": "never-reads/1"})
            for p, key in zip(params, keys):
                slow.send_json({"op": "submit", "kind": KIND, "params": p, "key": key, "watch": True})
            # Meanwhile: small jobs from the other client, one every 200 ms, until the
            # slow client's jobs have all finished (and for two seconds at least).
            end = time.monotonic() + 45
            while True:
                await small()
                states = await jobs_by_state(c, exclude=small_ids)
                if len(states) == self.JOBS and all(s in FINISHED for s in states.values()) and len(accept_s) > 10:
                    break
                self.assertLess(time.monotonic(), end, f"the slow client's jobs did not finish: {states}")
                await asyncio.sleep(0.2)
            self.assertEqual(set(states.values()), {"done"}, states)
            # kilnd closes a reader that has taken nothing for a while (seconds): wait
            # until the connection is gone from its figures.
            end = time.monotonic() + 20
            while (await c.call({"op": "stats"}))["connections"] > conns_before and time.monotonic() < end:
                await asyncio.sleep(0.1)
            # Only now look at what the slow client was sent.
            seen = await asyncio.get_running_loop().run_in_executor(None, lambda: slow.drain(idle_s=3, max_s=20))
            slow.close()
            print(f"\nslow client: {seen}; small jobs' accepted in {max(accept_s) * 1000:.0f} ms at most "
                  f"({len(accept_s)} jobs)")
            self.assertNotEqual(seen["end"], "open", f"kilnd did not close the client that never reads: {seen}")
            self.assertLess(seen["bytes"], 40 * MiB, seen)
            if seen["end"] == "close":
                self.assertEqual(seen["close_code"], 1008, seen)
                self.assertRegex(seen["close_reason"].lower(), r"output.buffer|max_output_buffer_bytes", seen)
            for s in accept_s:
                self.assertLess(s, 1.0, accept_s)
            # Its jobs' results stay retrievable, complete: the same as a fresh computation.
            for p, key in zip(params, keys):
                r = await c.submit(KIND, p, key=key, watch=False)
                self.assertEqual(r.get("op"), "accepted", r)
                self.assertIn(r["job"], states)
                await c.send({"op": "result", "job": r["job"]})
                done, parts, _ = await c.read_done(r["job"], timeout=30)
                self.assertEqual(done["state"], "done", done)
                fresh_done, fresh = await c.run(KIND, p, cache=False)
                self.assertEqual(sorted(parts), sorted(self.MAPS))
                for name in self.MAPS:
                    self.assertEqual(parts[name].shape, (self.GRID, self.GRID))
                    self.assertTrue((parts[name] == fresh[name]).all(), name)
            await c.close()
        self.run_async(go())


ALL_MAPS = ("kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi")


async def burst_over_the_room(case, c, grid, n):
    """Submits n jobs of `grid` (all seven maps) at once, more than the store can keep:
    some are refused with `unavailable` naming the store, and every accepted one ends
    done (its result cached or, where it found no room, delivered without being kept).
    Returns (accepted, refused)."""
    for i in range(n):
        await c.send({"op": "submit", "kind": KIND, "params": nfw(grid, ALL_MAPS), "ref": f"burst-{i}"})
    ids, refused = [], 0
    for _ in range(n):
        m = await wait_for_ref(c)
        if m.get("op") == "accepted":
            ids.append(m["job"])
            continue
        case.assertEqual(m.get("code"), "unavailable", m)
        case.assertIn("store", m.get("message", "").lower(), m)
        refused += 1
    for job, done in (await finish_all(c, ids)).items():
        case.assertEqual(done["state"], "done", done)
    case.assertGreater(refused, 0, "a burst of results bigger than the store was all accepted")
    return len(ids), refused


async def fill_with_collections(case, c, dim=256):
    """Fills what room is left with vector collections, 32 MiB ones, then smaller,
    down to 1 MiB: each size until the store refuses it (as it refuses jobs: a put
    may not take the room kept free, which lets drops and deletes be written, nor
    the room promised to accepted jobs). Returns the bytes stored and the
    collections' names."""
    stored, n, names = 0, 0, []
    for size in (32, 16, 8, 4, 2, 1):
        rows = size * MiB // (4 * dim)
        vectors = np.random.default_rng(size).standard_normal((rows, dim), dtype=np.float32)
        for _ in range(64):
            n += 1
            r = await vec_put(c, f"filler-{n}", vectors, [str(i) for i in range(rows)], metric="l2")
            if r.get("op") != "vec":
                case.assertEqual(r.get("code"), "unavailable", r)
                case.assertIn("store", r.get("message", "").lower(), r)
                break
            stored += size * MiB
            names.append(f"filler-{n}")
        else:
            case.fail(f"collections of {size} MiB were never refused")
    return stored, names


async def wait_for_ref(c, timeout=60):
    """The next `accepted` or `error` reply (other messages stay queued)."""
    return await wait_for(c, lambda m: m.get("ref") is not None and m.get("op") in ("accepted", "error"), timeout)


async def ready_within(http, want, seconds=5.0):
    """Polls /readyz until it answers `want` (kilnd re-checks its room about once a
    second); returns the last (code, body)."""
    end = time.monotonic() + seconds
    while True:
        code, body = readyz(http)
        if code == want or time.monotonic() > end:
            return code, body
        await asyncio.sleep(0.1)


class PipeliningNonReaderTest(PressureCase):
    """A client that pipelines cheap requests and never reads its replies: its input
    is held once 64 KiB of replies wait, so it stops being served (instead of every
    other client waiting behind thousands of its requests), and it is closed once it
    has taken none of them for 5 s. Another client is answered throughout."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd().start()

    @classmethod
    def tearDownClass(cls):
        stop_and_check(cls.kilnd)

    def test_it_stops_being_served_then_is_closed(self):
        slow = RawWs(self.kilnd.port, rcvbuf=16 << 10, timeout=30)
        slow.send_json({"op": "hello", "client": "pipelines-never-reads/1"})
        sent = {"n": 0, "error": None}

        def flood():
            try:
                for _ in range(200_000):  # far more than kilnd reads before it holds them
                    slow.send_json({"op": "stats"})
                    sent["n"] += 1
            except OSError as e:  # blocked until kilnd closed it, or a timeout
                sent["error"] = repr(e)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()

        async def other():
            c = await Client.connect(self.kilnd.url)
            try:
                replies = 0
                while flooder.is_alive():
                    await c.call({"op": "stats"}, timeout=5)  # answered while the flood goes on
                    replies += 1
                    await asyncio.sleep(0.1)
                return replies
            finally:
                await c.close()
        replies = self.run_async(other(), timeout=60)
        flooder.join()
        seen = slow.drain(idle_s=3, max_s=20)
        slow.close()
        self.assertGreater(replies, 10)
        self.assertLess(sent["n"], 200_000, f"kilnd read every request of a client that reads nothing: {sent}")
        # Closed: with 1008 when its socket takes the close frame, else dropped
        # (it reads nothing at all), as any client that reads too slowly.
        self.assertIn(seen["end"], ("close", "eof", "reset"), seen)
        if seen["end"] == "close":
            self.assertEqual(seen["close_code"], 1008, seen)
        self.assertLess(seen["ops"].get("stats", 0), sent["n"], seen)


class FullStoreCase(PressureCase):
    async def check_recovered(self, k, c):
        code, body = await ready_within(k.http, 200)
        self.assertEqual(code, 200, body)
        r = await c.submit(KIND, nfw(256, ALL_MAPS))
        self.assertEqual(r.get("op"), "accepted", r)
        done, parts, _ = await c.read_done(r["job"], timeout=60)
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(len(parts), len(ALL_MAPS))

    async def check_refused_while_full(self, k, c):
        code, body = await ready_within(k.http, 503)
        self.assertEqual(code, 503, body)
        self.assertIsInstance(body, dict, body)
        self.assertNotEqual(body.get("status"), "ok", body)
        self.assertIn("store", json.dumps(body).lower(), body)
        r = await c.submit(KIND, nfw(8))
        self.assertEqual(r.get("op"), "error", r)
        self.assertEqual(r.get("code"), "unavailable", r)
        self.assertIn("store", r.get("message", "").lower(), r)
        print(f"\nfull: /readyz {code} {json.dumps({k: v for k, v in body.items() if k != 'devices'})[:400]}; "
              f"submit: {r.get('message')}")


class MapFullTest(FullStoreCase):
    """The LMDB map (store.map_size_gb 1, the smallest) fills: first with results (new
    big jobs are refused while some room is still kept free), then with collections
    until they are refused too, the room kept free still free; dropping the
    collections gives the room back. Puts sent together, without waiting for each
    other's replies, keep it free as well. (A cache.purge frees no room while the
    finished jobs that hold the results are kept, jobs.retain_s.)"""

    def test_full_map_refuses_new_work_and_recovers_when_collections_are_dropped(self):
        k = Kilnd(env={"KILN_STORE_MAP_SIZE_GB": "1", "KILN_STORE_SYNC": "off"}).start()
        try:
            async def go():
                c = await Client.connect(k.url)
                # Answered before the store fills: by its key and from the cache, as
                # long as it is kept, full store or not.
                early = nfw(512, ALL_MAPS)  # 7 MiB of result
                first = await c.submit(KIND, early, key="before-full")
                done, _, _ = await c.read_done(first["job"], timeout=60)
                self.assertEqual(done["state"], "done", done)
                accepted, refused = await burst_over_the_room(self, c, 2048, 12)  # 112 MiB each
                stored, names = await fill_with_collections(self, c)
                print(f"\nmap: {accepted} results stored, {refused} jobs refused, then {stored >> 20} MiB "
                      f"of collections")
                # What is left is the room kept free (within what a put's size is
                # estimated at): a big job does not fit, the drops below do.
                code, body = readyz(k.http)
                self.assertGreater(body["store"]["map_free_bytes"], 24 * MiB, body)
                r = await c.submit(KIND, nfw(2048, ALL_MAPS))
                self.assertEqual((r.get("op"), r.get("code")), ("error", "unavailable"), r)
                self.assertIn("store", r.get("message", "").lower(), r)
                r = await c.submit(KIND, early, key="before-full", watch=False)
                self.assertEqual((r.get("op"), r.get("job")), ("accepted", first["job"]), r)
                r = await c.submit(KIND, early, watch=False)
                self.assertEqual((r.get("op"), r.get("cached")), ("accepted", True), r)
                r = await c.submit(KIND, nfw(2048, ALL_MAPS), key="while-full", watch=False)  # a new job
                self.assertEqual((r.get("op"), r.get("code")), ("error", "unavailable"), r)
                self.assertIn("store", r.get("message", "").lower(), r)
                # An operator makes room: LMDB's freed pages count as room at once
                # (the file never shrinks), and kilnd serves again by itself.
                for name in names:
                    r = await c.call({"op": "vec.drop", "collection": name})
                    self.assertEqual(r.get("op"), "ok", r)
                for _ in range(50):  # the room is measured about once a second
                    code, body = readyz(k.http)
                    if body["store"]["room_bytes"] > 64 * MiB:
                        break
                    await asyncio.sleep(0.1)
                self.assertGreater(body["store"]["room_bytes"], 64 * MiB, body)
                await self.check_recovered(k, c)
                await c.close()
            self.run_async(go(), timeout=150)
        finally:
            stop_and_check(k)


    def test_a_map_set_below_what_the_store_holds_stops_the_start_naming_the_key(self):
        # LMDB takes the store's size as the map then: no room at all, not even for
        # the deletes an operator would make room with.
        k = Kilnd(env={"KILN_STORE_MAP_SIZE_GB": "2", "KILN_STORE_SYNC": "off"}).start()
        try:
            async def fill():
                c = await Client.connect(k.url)
                for _ in range(10):  # 112 MiB each: more than 1 GiB
                    done, _ = await c.run(KIND, nfw(2048, ALL_MAPS), watch=True)
                    self.assertEqual(done["state"], "done", done)
                await c.close()
            self.run_async(fill(), timeout=150)
            self.assertEqual(k.stop(), 0, k.read_log()[-2000:])
            k.extra_env["KILN_STORE_MAP_SIZE_GB"] = "1"
            with self.assertRaises(RuntimeError) as e:
                k.start()
            self.assertEqual(k.proc.returncode, 1)
            self.assertRegex(str(e.exception), r"store\.map_size_gb = 1 is less than the store in \S+ already holds "
                                               r"\(1\.\d\d GiB\): set it to 3 or more")
            k.extra_env["KILN_STORE_MAP_SIZE_GB"] = "3"
            k.start()
            code, body = readyz(k.http)
            self.assertEqual(code, 200, body)
        finally:
            stop_and_check(k)

    def test_puts_sent_together_leave_the_room_kept_free(self):
        k = Kilnd(env={"KILN_STORE_MAP_SIZE_GB": "1", "KILN_STORE_SYNC": "off"}).start()
        try:
            async def go():
                c = await Client.connect(k.url)
                dim, n = 128, 56  # 1.3 GiB of vectors for a 1 GiB map
                rows = 24 * MiB // (4 * dim)
                payload, shape = vectors_payload(np.random.default_rng(2).standard_normal((rows, dim),
                                                                                          dtype=np.float32))
                ids = [str(i) for i in range(rows)]
                for i in range(n):  # every put before any reply
                    await send_frames(c, part_frames(f"put-{i}", "vectors", "f32", shape, payload))
                    await c.send({"op": "vec.put", "collection": f"together-{i}", "ids": ids, "metric": "l2",
                                  "ref": f"put-{i}"})
                replies = [await wait_for(c, lambda m: m.get("op") in ("vec", "error"), 120) for _ in range(n)]
                stored = sum(m["op"] == "vec" for m in replies)
                refused = [m for m in replies if m["op"] == "error"]
                self.assertTrue(refused, f"the map took {n} collections of 24 MiB")
                for m in refused:
                    self.assertEqual(m.get("code"), "unavailable", m)
                    self.assertIn("store", m.get("message", "").lower(), m)
                # The room is measured about once a second: wait for a reading taken
                # after the puts (it can leave no more free than they did), never
                # judge by one from before them, which shows more.
                bound = (1 << 30) - stored * 24 * MiB
                for _ in range(200):
                    code, body = readyz(k.http)
                    if body["store"]["map_free_bytes"] <= bound:
                        break
                    await asyncio.sleep(0.05)
                self.assertLessEqual(body["store"]["map_free_bytes"], bound, body)
                print(f"\ntogether: {stored} puts of 24 MiB stored, {len(refused)} refused; "
                      f"{body['store']['map_free_bytes'] >> 20} MiB of the map free")
                self.assertGreater(body["store"]["map_free_bytes"], 32 * MiB, body)
                r = await c.call({"op": "vec.drop", "collection": "together-0"})
                self.assertEqual(r.get("op"), "ok", r)
                await c.close()
            self.run_async(go(), timeout=150)
        finally:
            stop_and_check(k)


def tmpfs_mode():
    """How kilnd's state can go on a small tmpfs here: 'unshare' (a private mount
    namespace of its own), 'root' (mounted here, by root), or None."""
    try:
        if subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0:
            return "unshare"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "root" if os.geteuid() == 0 else None


class FileSizeLimitTest(FullStoreCase):
    """The store's file reaches the process's file size limit (systemd's LimitFSIZE=):
    a disk that ends there. Jobs past it are refused naming the store, and no
    accepted job fails (a write past the limit was an I/O error, and its signal
    could end kilnd)."""

    def test_the_file_size_limit_is_a_full_disk(self):
        k = Kilnd(env={"KILN_STORE_SYNC": "off"}).start()
        try:
            resource.prlimit(k.proc.pid, resource.RLIMIT_FSIZE, (96 * MiB, 96 * MiB))
            for _ in range(50):  # the room is measured about once a second
                code, body = readyz(k.http)
                if body["store"]["room_bytes"] <= 96 * MiB:
                    break
                time.sleep(0.1)
            self.assertLessEqual(body["store"]["room_bytes"], 96 * MiB, body)

            async def go():
                c = await Client.connect(k.url)
                accepted, refused = await burst_over_the_room(self, c, 512, 24)  # 7 MiB each
                print(f"\nfile size limit 96 MiB: {accepted} results stored, {refused} jobs refused")
                await c.close()
            self.run_async(go(), timeout=120)
            self.assertNotIn("Input/output error", k.read_log())
        finally:
            stop_and_check(k)


class TmpfsKilnd(Kilnd):
    """kilnd with its state on a tmpfs of `size_mib` holding a `filler_mib` file: in a
    mount namespace of its own (`unshare -rm`; the filler is reached through
    /proc/PID/root) or, with mode 'root', mounted here and unmounted by cleanup()."""

    def __init__(self, size_mib, filler_mib, env=None, binary=None, mode="unshare"):
        super().__init__(env=env, binary=binary)
        os.makedirs(self.state)
        self.size_mib, self.filler_mib, self.mode = size_mib, filler_mib, mode
        self.mounted = False

    def start(self, wait=True, args=()):
        self.log = open(self.log_path, "ab")
        mount = f'mount -t tmpfs -o size={self.size_mib}m none "$1"'
        prep = f'mkdir "$1/store" && head -c {self.filler_mib}M /dev/zero > "$1/filler"'
        cmd = [self.binary] + list(args)
        if self.mode == "unshare":
            cmd = ["unshare", "-rm", "sh", "-c", f'{mount} && {prep} && shift && exec "$@"', "sh", self.state] + cmd
        elif self.mode == "root":
            subprocess.run(["sh", "-c", mount, "sh", self.state], check=True)
            self.mounted = True
            subprocess.run(["sh", "-c", prep, "sh", self.state], check=True)
        else:
            raise ValueError(f"tmpfs mode {self.mode!r}: 'unshare' or 'root'")
        env = dict(self.environment(), KILN_STORE_PATH=os.path.join(self.state, "store"))
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def inside(self, *names):
        """A path in the state dir as kilnd sees it (unshare and sh exec kilnd: one pid)."""
        base = f"/proc/{self.proc.pid}/root{self.state}" if self.mode == "unshare" else self.state
        return os.path.join(base, *names)

    def fill_filesystem(self):
        """Grows the filler until the filesystem is full."""
        fd = os.open(self.inside("filler"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            while os.write(fd, bytes(MiB)) > 0:
                pass
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.mounted:
            subprocess.run(["umount", self.state], check=False)
            self.mounted = False
        super().cleanup()


@unittest.skipUnless(tmpfs_mode() == "unshare", "unshare -rm is not permitted here: no private tmpfs for the store")
class DiskFullTest(FullStoreCase):
    """The store's filesystem (a 128 MiB tmpfs, 48 MiB of it a file) fills: with
    results, then with the file, which is then deleted."""

    def test_full_filesystem_refuses_new_work_and_recovers_when_space_is_freed(self):
        k = TmpfsKilnd(128, 48, env={"KILN_STORE_SYNC": "off"}).start()
        try:
            async def go():
                c = await Client.connect(k.url)
                # Results (7 MiB each) more than the filesystem takes, at once.
                accepted, refused = await burst_over_the_room(self, c, 512, 16)
                print(f"\nfilesystem: {accepted} results stored, {refused} jobs refused")
                # Something else fills the disk: kilnd notices within seconds.
                k.fill_filesystem()
                await self.check_refused_while_full(k, c)
                # An operator frees space: kilnd serves again by itself.
                os.unlink(k.inside("filler"))
                await self.check_recovered(k, c)
                await c.close()
            self.run_async(go(), timeout=120)
        finally:
            stop_and_check(k)

    def test_a_start_on_a_full_filesystem_says_why_and_exits_1(self):
        # A store (its kilnd.lock there from an earlier run) without LMDB's lock
        # file, on a full filesystem: that file, sized sparse and written through a
        # mapping, was a SIGBUS with nothing in the log.
        k = Kilnd()
        try:
            full = ('mount -t tmpfs -o size=1m none "$1" && mkdir "$1/store" && echo 1 > "$1/store/kilnd.lock" && '
                    '{ cat /dev/zero > "$1/filler"; true; }')
            env = dict(k.environment(), KILN_STORE_PATH=os.path.join(k.tmp, "store"))
            r = subprocess.run(["unshare", "-rm", "sh", "-c", f'{full} 2>/dev/null && shift && exec "$@"', "sh",
                                k.tmp, k.binary], env=env, capture_output=True, text=True, timeout=30)
        finally:
            k.cleanup()
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"cannot open the job store in {k.tmp}/store: No space left on device", r.stderr)


if __name__ == "__main__":
    unittest.main()
