"""Shared fixture for kiln's integration tests: the real kilnd on a free loopback
port with its state in a fresh directory, and a small WebSocket client that speaks
SPEC §2 (python3-websockets from Debian).

Paths come from the environment CTest sets: KILND, KILNCTL, KILN_WEB_ROOT.
"""
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.request

import numpy as np
import websockets

KILND = os.environ.get("KILND", "build/daemon/kilnd")
KILNCTL = os.environ.get("KILNCTL", "build/daemon/ctl/kilnctl")
WEB_ROOT = os.environ.get("KILN_WEB_ROOT", os.path.join(os.path.dirname(__file__), "..", "..", "web_ui"))

DTYPES = {"f32": np.float32, "u8": np.uint8, "u32": np.uint32, "bytes": np.uint8}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kilnd:
    """One kilnd process (`binary`, else $KILND). `env` adds KILN_* overrides; the
    state dir survives restarts of the same object (start() after stop()/kill())."""

    def __init__(self, env=None, state_dir=None, config_text=None, binary=None):
        self.binary = binary or KILND
        self.tmp = tempfile.mkdtemp(prefix="kiln-it-")
        self.state = state_dir or os.path.join(self.tmp, "state")
        self.port = free_port()
        self.extra_env = dict(env or {})
        self.config = None
        if config_text is not None:
            self.config = os.path.join(self.tmp, "kiln.conf")
            with open(self.config, "w") as f:
                f.write(config_text)
        self.proc = None
        self.log_path = os.path.join(self.tmp, "kilnd.log")

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") or k.startswith("KILN_TEST")}
        env.update({
            "KILN_SERVER_LISTEN": f"127.0.0.1:{self.port}",
            "KILN_STORE_PATH": self.state,
            "KILN_STORE_MAP_SIZE_GB": "4",
            "KILN_AUTH_REQUIRED": "false",
            "KILN_AUTH_TOKENS_FILE": os.path.join(self.tmp, "tokens"),
            "KILN_SERVER_WEB_ROOT": WEB_ROOT,
            "KILN_LOG_TARGET": "stderr",
        })
        env.update(self.extra_env)
        return env

    def start(self, wait=True, args=()):
        cmd = [self.binary] + (["--config", self.config] if self.config else []) + list(args)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.environment(), stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kilnd exited with {self.proc.returncode}:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"kilnd did not become healthy:\n{self.read_log()}")

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon and returns its exit code."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self):
        return self.stop(signal.SIGKILL)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Client:
    """A WebSocket client: send ops, read replies, collect `done` messages with their
    binary parts decoded into numpy arrays."""

    def __init__(self, ws):
        self.ws = ws
        self.ref = 0
        self.backlog = []

    @classmethod
    async def connect(cls, url, subprotocol="kiln.v1", hello=True, token=None, **kw):
        kw.setdefault("max_size", None)
        kw.setdefault("open_timeout", 10)
        ws = await websockets.connect(url, subprotocols=[subprotocol] if subprotocol else None, **kw)
        c = cls(ws)
        if hello:
            msg = {"op": "hello", "client": "kiln-tests/1"}
            if token:
                msg["token"] = token
            w = await c.call(msg)
            assert w["op"] == "welcome", w
        return c

    async def close(self):
        await self.ws.close()

    async def send(self, msg):
        if "ref" not in msg:
            self.ref += 1
            msg = dict(msg, ref=self.ref)
        await self.ws.send(json.dumps(msg))
        return msg["ref"]

    async def recv(self, timeout=30):
        if self.backlog:
            return self.backlog.pop(0)
        m = await asyncio.wait_for(self.ws.recv(), timeout)
        return m if isinstance(m, bytes) else json.loads(m)

    async def call(self, msg, timeout=30):
        """Sends one op and returns the first text reply carrying its ref; other
        messages that arrive meanwhile are kept for later recv() calls."""
        ref = await self.send(msg)
        kept = []
        try:
            while True:
                m = await asyncio.wait_for(self.ws.recv(), timeout)
                if not isinstance(m, bytes):
                    m = json.loads(m)
                    if m.get("ref") == ref:
                        return m
                kept.append(m)
        finally:
            self.backlog.extend(kept)

    async def read_done(self, job=None, timeout=60):
        """Reads until the `done` of `job` (any job when None) and its parts.
        Returns (done, {part: ndarray}, progress_messages)."""
        progress = []
        end = time.monotonic() + timeout
        while True:
            m = await self.recv(max(0.1, end - time.monotonic()))
            if isinstance(m, bytes):
                continue
            if m.get("op") == "progress":
                progress.append(m)
                continue
            if m.get("op") == "done" and (job is None or m["job"] == job):
                parts = {}
                for p in m.get("parts", []):
                    frame = await self.recv(max(0.1, end - time.monotonic()))
                    assert isinstance(frame, bytes), frame
                    name, arr = decode_frame(frame)
                    assert name == p["name"], (name, p)
                    parts[name] = arr
                return m, parts, progress

    async def submit(self, kind, params, **kw):
        msg = {"op": "submit", "kind": kind, "params": params}
        msg.update(kw)
        return await self.call(msg)

    async def run(self, kind, params, **kw):
        """Submit and wait for the result: (done, parts)."""
        acc = await self.submit(kind, params, **kw)
        assert acc["op"] == "accepted", acc
        done, parts, _ = await self.read_done(acc["job"])
        return done, parts


async def wait_for(c, pred, timeout=30):
    """Reads until a text message satisfies pred and returns it; the messages read on
    the way stay queued, in order, for later recv() calls."""
    kept = []
    end = time.monotonic() + timeout
    try:
        while True:
            m = await c.recv(max(0.1, end - time.monotonic()))
            if not isinstance(m, bytes) and pred(m):
                return m
            kept.append(m)
    finally:
        c.backlog[:0] = kept


def done_of(job):
    """A wait_for predicate: the `done` of `job`."""
    return lambda m: m.get("op") == "done" and m.get("job") == job


def decode_frame(frame):
    assert frame[:4] == b"KLNB", frame[:16]
    (hl,) = struct.unpack("<I", frame[4:8])
    hdr = json.loads(frame[8:8 + hl])
    arr = np.frombuffer(frame[8 + hl:], dtype=DTYPES[hdr["dtype"]]).reshape(hdr["shape"])
    return hdr["part"], arr


def encode_frame(header, payload):
    h = json.dumps(header).encode()
    return b"KLNB" + struct.pack("<I", len(h)) + h + payload


def parse_metrics(text):
    """{(name, frozenset(labels)): value} for every sample line of Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, f"malformed sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metrics(kilnd):
    """kilnd's /metrics, parsed (parse_metrics)."""
    with urllib.request.urlopen(kilnd.http + "/metrics", timeout=10) as r:
        return parse_metrics(r.read().decode())


async def collect_done(client, ids, timeout=90):
    """Reads until the `done` of every id (and its parts) arrived on client; an
    `error` reply (say `not_found` for a lost job) fails at once.
    Returns {id: (done, {part: ndarray})}."""
    want = set(ids)
    got = {}
    end = time.monotonic() + timeout
    while want:
        m = await client.recv(max(0.1, end - time.monotonic()))
        assert not isinstance(m, bytes), "a part frame without its done"
        assert m.get("op") != "error", f"kilnd answered an error: {m}"
        if m.get("op") != "done":
            continue
        parts = {}
        for p in m.get("parts", []):
            name, arr = decode_frame(await client.recv(max(0.1, end - time.monotonic())))
            assert name == p["name"], (name, p)
            parts[name] = arr
        if m["job"] in want:
            want.discard(m["job"])
            got[m["job"]] = (m, parts)
    return got


class KilndTestCase(unittest.TestCase):
    """Starts one kilnd per test class (override `env` for KILN_* settings)."""

    env = {}

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env=cls.env).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.kilnd.stop()
        log = cls.kilnd.read_log()
        cls.kilnd.cleanup()
        if code != 0:
            raise AssertionError(f"kilnd exited with {code} on SIGTERM:\n{log}")

    def run_async(self, coro, timeout=120):
        return asyncio.run(asyncio.wait_for(coro, timeout))

    async def client(self, **kw):
        return await Client.connect(self.kilnd.url, **kw)
