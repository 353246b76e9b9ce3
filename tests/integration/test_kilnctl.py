"""kilnctl (SPEC §5) against the real kilnd: submit with .npy output, result, status,
list, cancel, watch, stats, error replies, connection failures, usage errors,
`token new` (checked end to end by a daemon that requires the new token), and the
stored-object commands `model put|list|delete` and `vec put|info|list|delete|drop`
(uploads larger than one message split into frames with offsets; inputs that
cannot be sent refused before connecting).

Expected values never come from kilnctl itself: parts and scalars are compared with
what the fixture's own WebSocket client fetches for the same job.
"""
import asyncio
import base64
import hashlib
import json
import grp
import os
import pty
import re
import resource
import select
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np
import websockets

from kiln_fixture import KILNCTL, Client, Kilnd, KilndTestCase, encode_frame, free_port
from kiln_objects import start_with_tokens, unit_rows, xgb_model, xgb_model_of_size

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NFW = ["lens.nfw", "mass=1e14", "concentration=5", "grid_size=32", "maps=kappa,psi"]
BIG_NFW = ["lens.nfw", "mass=2e14", "concentration=4", "grid_size=2048", "maps=kappa,alpha_x"]  # 2 x 16 MiB


def drain_pty(master, wait):
    """What was written to the other side of pty `master` until every writer closed it
    (or nothing came for `wait` s)."""
    seen = b""
    while select.select([master], [], [], wait)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def ctl_env(extra=None):
    """The caller's environment without a KILN_URL/KILN_TOKEN that would leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_URL", "KILN_TOKEN")}
    env.update(extra or {})
    return env


def kilnctl(*args, env=None, timeout=120, **kw):
    return subprocess.run([KILNCTL, *args], env=ctl_env(env), capture_output=True, text=True, timeout=timeout,
                          **kw)


def tmpfile_works(path):
    """Whether the filesystem under `path` makes files without a name (O_TMPFILE)."""
    try:
        os.close(os.open(path, os.O_TMPFILE | os.O_WRONLY, 0o600))
        return True
    except OSError:
        return False


def fields_of(stdout):
    """kilnctl's "key   value" lines as a dict."""
    return dict(line.split(None, 1) for line in stdout.splitlines())


def table_of(stdout):
    """kilnctl's table: (headings, [row dicts keyed by lower-case heading])."""
    header, *rows = stdout.splitlines()
    heads = header.split()
    return heads, [dict(zip((h.lower() for h in heads), row.split())) for row in rows]


def npy_preamble_length(path):
    with open(path, "rb") as f:
        head = f.read(10)
    assert head[:8] == b"\x93NUMPY\x01\x00", head
    return 10 + int.from_bytes(head[8:10], "little")


class KilnctlJobs(KilndTestCase):

    def ctl(self, *args, **kw):
        return kilnctl("--url", self.kilnd.url, *args, **kw)

    def fetch(self, job):
        """The job's `done` and parts, fetched by the fixture's client (not kilnctl)."""
        async def go():
            c = await self.client()
            try:
                await c.send({"op": "result", "job": job})
                done, parts, _ = await c.read_done(job)
                return done, parts
            finally:
                await c.close()
        return self.run_async(go())

    def backends(self):
        r = self.ctl("--json", "stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [b.get("name", "") for b in json.loads(r.stdout).get("backends", [])]

    def submit_ok(self, *args, **kw):
        r = self.ctl("submit", *args, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        job = r.stdout.splitlines()[0]
        self.assertRegex(job, UUID_RE)
        return job, r

    def test_submit_writes_npy_parts_equal_to_the_servers_parts(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "new", "dir")  # created by kilnctl, parents included
            job, r = self.submit_ok(*NFW, "--out", out)
            self.assertNotIn("\r", r.stderr, "no progress bar when stderr is not a terminal")
            self.assertEqual(sorted(os.listdir(out)), ["kappa.npy", "psi.npy"])

            done, parts = self.fetch(job)
            self.assertEqual(done["state"], "done")
            for name in ("kappa", "psi"):
                path = os.path.join(out, name + ".npy")
                self.assertEqual(npy_preamble_length(path) % 64, 0)
                a = np.load(path)
                self.assertEqual(a.shape, (32, 32))
                self.assertEqual(a.dtype, np.float32)
                np.testing.assert_array_equal(a, parts[name])
            self.assertTrue(np.isfinite(np.load(os.path.join(out, "kappa.npy"))).all())

            # One "name = value" line per scalar, with the server's values.
            lines = r.stdout.splitlines()[1:]
            scalars = dict(line.split(" = ", 1) for line in lines)
            self.assertEqual(set(scalars), set(done["result"]))
            for k, v in done["result"].items():
                if v is None:
                    self.assertEqual(scalars[k], "null")
                else:
                    self.assertAlmostEqual(float(scalars[k]), v, delta=abs(v) * 1e-9)

    def test_result_resends_the_parts(self):
        with tempfile.TemporaryDirectory() as tmp:
            job, _ = self.submit_ok(*NFW, "--out", os.path.join(tmp, "a"))
            r = self.ctl("result", job, "--out", os.path.join(tmp, "b") + "/")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"wrote {tmp}/b/kappa.npy\n", r.stderr)  # one slash, as given or not
            for name in ("kappa", "psi"):
                with open(os.path.join(tmp, "a", name + ".npy"), "rb") as fa, \
                        open(os.path.join(tmp, "b", name + ".npy"), "rb") as fb:
                    self.assertEqual(fa.read(), fb.read())
            self.assertIn("r200_kpc = ", r.stdout)

    def test_submit_json_prints_the_done_message(self):
        r = self.ctl("--json", "submit", *NFW)
        self.assertEqual(r.returncode, 0, r.stderr)
        done = json.loads(r.stdout)
        self.assertEqual(done["op"], "done")
        self.assertEqual(done["state"], "done")
        self.assertEqual([p["name"] for p in done["parts"]], ["kappa", "psi"])
        theirs, _ = self.fetch(done["job"])
        self.assertEqual(done["result"], theirs["result"])

    def test_large_result_is_written_as_it_arrives(self):
        # Two parts of 16 MiB each, received within a data limit of 16 MiB (heap and
        # private mappings, RLIMIT_DATA): kilnctl writes a part to its file as it
        # arrives and never holds one whole, on both framings. AddressSanitizer's
        # own mappings do not fit such a limit.
        part = 2048 * 2048 * 4
        limit = None if os.environ.get("KILN_SANITIZED") else \
            (lambda: resource.setrlimit(resource.RLIMIT_DATA, (part, part)))
        for env in ({}, {"KILNCTL_LWS_WS": "1"}):
            with self.subTest(env=env), tempfile.TemporaryDirectory() as tmp:
                job, _ = self.submit_ok(*BIG_NFW, "--out", tmp, env=env, preexec_fn=limit)
                _, parts = self.fetch(job)
                for name in ("kappa", "alpha_x"):
                    a = np.load(os.path.join(tmp, name + ".npy"))
                    self.assertEqual(a.shape, (2048, 2048))
                    np.testing.assert_array_equal(a, parts[name])
                self.assertEqual(sorted(os.listdir(tmp)), ["alpha_x.npy", "kappa.npy"])

    def test_a_part_cut_short_leaves_no_file(self):
        # A file size limit of 1 MiB stops kilnctl inside the first 16 MiB part: by
        # SIGXFSZ (its default action, as when kilnctl is killed), or, with the
        # signal ignored, by a write that fails with EFBIG, which kilnctl reports.
        limit = 1 << 20

        def capped(ignore_signal):
            def pre():
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
                if ignore_signal:
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            return pre
        for ignore in (False, True):
            with self.subTest(ignore_sigxfsz=ignore), tempfile.TemporaryDirectory() as out:
                with open(os.path.join(out, "kappa.npy"), "wb") as f:
                    f.write(b"an earlier result")
                r = self.ctl("submit", *BIG_NFW, "--out", out, preexec_fn=capped(ignore))
                if ignore:
                    self.assertEqual(r.returncode, 1, r.stderr)
                    self.assertIn("cannot write " + os.path.join(out, "kappa.npy") + ": File too large", r.stderr)
                else:
                    self.assertEqual(r.returncode, -signal.SIGXFSZ, r.stderr)
                names = sorted(os.listdir(out))
                if ignore or tmpfile_works(out):
                    self.assertEqual(names, ["kappa.npy"], "nothing but the earlier file")
                else:  # killed, a hidden file is left where O_TMPFILE is missing (kilnctl(1))
                    self.assertEqual([n for n in names if not n.startswith(".")], ["kappa.npy"])
                with open(os.path.join(out, "kappa.npy"), "rb") as f:
                    self.assertEqual(f.read(), b"an earlier result")

    def test_no_wait_status_and_list(self):
        r = self.ctl("submit", "--no-wait", "lens.nfw", "mass=3e13", "concentration=7", "grid_size=16")
        self.assertEqual(r.returncode, 0, r.stderr)
        job = r.stdout.strip()
        self.assertRegex(job, UUID_RE)
        w = self.ctl("watch", job)
        self.assertEqual(w.returncode, 0, w.stderr)
        self.assertIn("kappa_s = ", w.stdout)

        s = self.ctl("status", job)
        self.assertEqual(s.returncode, 0, s.stderr)
        fields = dict(line.split(None, 1) for line in s.stdout.splitlines())
        self.assertEqual(fields["job"], job)
        self.assertEqual(fields["kind"], "lens.nfw")
        self.assertEqual(fields["state"], "done")
        self.assertRegex(fields["submitted"], r"^\d{4}-\d\d-\d\dT")

        lst = self.ctl("list", "--kind", "lens.nfw", "--limit", "1000")
        self.assertEqual(lst.returncode, 0, lst.stderr)
        header, *rows = lst.stdout.splitlines()
        self.assertEqual(header.split(), ["JOB", "KIND", "STATE", "SUBMITTED"])
        mine = [row.split() for row in rows if row.startswith(job)]
        self.assertEqual(len(mine), 1, lst.stdout)
        self.assertEqual(mine[0][1:3], ["lens.nfw", "done"])

        lst = self.ctl("list", "--state", "failed")
        self.assertEqual(lst.returncode, 0, lst.stderr)
        self.assertNotIn(job, lst.stdout)

        self.submit_ok("lens.nfw", "mass=2.5e14", "concentration=4", "grid_size=8")  # a second one at least
        one = self.ctl("list", "--limit", "1", "--kind", "lens.nfw")
        self.assertEqual(one.returncode, 0, one.stderr)
        self.assertEqual(len(one.stdout.splitlines()), 2)
        # More than one job exists by now: the hint is the next page of the same list.
        hint = re.search(r"more: (kilnctl .*)", one.stderr)
        self.assertIsNotNone(hint, one.stderr)
        words = hint.group(1).split()
        self.assertEqual(words[:4], ["kilnctl", "--url", self.kilnd.url, "list"])
        self.assertEqual(words[4:8], ["--kind", "lens.nfw", "--limit", "1"])
        page2 = self.ctl(*words[3:])
        self.assertEqual(page2.returncode, 0, page2.stderr)
        self.assertEqual(len(page2.stdout.splitlines()), 2)
        self.assertNotEqual(page2.stdout.splitlines()[1], one.stdout.splitlines()[1])

    def test_cancel_ends_a_running_job(self):
        r = self.ctl("submit", "--no-wait", "lens.nfw", "mass=5e14", "concentration=3", "grid_size=4096",
                     "maps=kappa,psi,mu,gamma1,gamma2,alpha_x,alpha_y")
        self.assertEqual(r.returncode, 0, r.stderr)
        job = r.stdout.strip()
        c = self.ctl("cancel", job)
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertEqual(c.stdout.split()[0], job)
        w = self.ctl("watch", job)
        if any(b.startswith("cuda") for b in self.backends()) and w.returncode == 0:
            return  # a GPU may finish the job before the cancel arrives
        self.assertEqual(w.returncode, 1, w.stdout + w.stderr)
        self.assertIn("cancelled", w.stderr)
        s = self.ctl("status", job)
        self.assertRegex(s.stdout, r"(?m)^state\s+cancelled$")

    def test_timeout_s_gives_up_waiting(self):
        job = self.ctl("submit", "--no-wait", "lens.nfw", "mass=6e14", "concentration=3", "grid_size=4096",
                       "maps=kappa,psi,mu,gamma1,gamma2").stdout.strip()
        self.assertRegex(job, UUID_RE)
        t0 = time.monotonic()
        w = self.ctl("--timeout-s", "0.05", "watch", job)
        elapsed = time.monotonic() - t0
        self.ctl("cancel", job)
        if w.returncode == 0:
            self.assertTrue(any(b.startswith("cuda") for b in self.backends()), "finished within 0.05 s on a CPU?")
            return
        self.assertEqual(w.returncode, 1)
        self.assertIn("timed out", w.stderr)
        self.assertLess(elapsed, 5)

    def test_json_submit_that_stops_waiting_still_names_its_job(self):
        # A script needs the id to watch or cancel the job, which goes on.
        r = self.ctl("--json", "--timeout-s", "0.3", "submit", "lens.nfw", "mass=6.5e14", "concentration=3",
                     "grid_size=4096", "maps=kappa,psi,mu,gamma1,gamma2")
        if r.returncode == 0:
            self.assertTrue(any(b.startswith("cuda") for b in self.backends()), "finished within 0.3 s on a CPU?")
            return
        self.assertEqual(r.returncode, 1, r.stderr)
        e = json.loads(r.stdout)
        self.assertEqual((e["op"], e["code"]), ("error", "timeout"), e)
        self.assertRegex(e["job"], UUID_RE)
        self.assertIn("goes on", e["message"])
        c = self.ctl("cancel", e["job"])
        self.assertEqual(c.returncode, 0, c.stderr)

    def test_progress_bar_on_a_terminal(self):
        if any(b.startswith("cuda") for b in self.backends()):
            self.skipTest("a GPU finishes this job before any progress is reported")
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([KILNCTL, "--url", self.kilnd.url, "submit", "lens.nfw", "mass=7e14",
                                  "concentration=3", "grid_size=4096", "maps=kappa,psi,mu"],
                                 env=ctl_env(), stdout=subprocess.PIPE, stderr=slave, text=True)
            os.close(slave)
            slave = None
            seen = drain_pty(master, 60)
            out, _ = p.communicate(timeout=60)
        finally:
            os.close(master)
            if slave is not None:
                os.close(slave)
        self.assertEqual(p.returncode, 0, seen)
        self.assertRegex(seen.decode(), r"\[#+\.*\] +\d+%")
        self.assertRegex(out.splitlines()[0], UUID_RE)

    def test_stats_pretty_prints_json(self):
        r = self.ctl("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("\n  ", r.stdout)
        stats = json.loads(r.stdout)
        self.assertIn("uptime_s", stats)

    def test_bad_param_is_the_servers_bad_params(self):
        for value in ("heavy", "1e30"):
            r = self.ctl("submit", "lens.nfw", f"mass={value}", "concentration=5")
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("bad_params", r.stderr)
            self.assertIn("params.mass", r.stderr)
            self.assertEqual(r.stdout, "")

    def test_unknown_parameter_is_named(self):
        r = self.ctl("submit", "lens.nfw", "mass=1e14", "concentration=5", "colour=red")
        self.assertEqual(r.returncode, 1)
        self.assertIn("params.colour", r.stderr)

    def test_unknown_kind(self):
        r = self.ctl("submit", "lens.nope", "mass=1e14")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown_kind", r.stderr)

    def test_unknown_job(self):
        for cmd in ("status", "result", "cancel", "watch"):
            r = self.ctl(cmd, "01890a5d-ac96-774b-bcce-b302099a8057")
            self.assertEqual(r.returncode, 1, cmd)
            self.assertIn("not_found", r.stderr, cmd)
            # --json: the error reply itself on stdout, as every other reply.
            r = self.ctl("--json", cmd, "01890a5d-ac96-774b-bcce-b302099a8057")
            self.assertEqual(r.returncode, 1, cmd)
            e = json.loads(r.stdout)
            self.assertEqual((e["op"], e["code"], e["field"]), ("error", "not_found", "job"), cmd)

    def test_a_result_whose_parts_cannot_be_saved_is_not_printed(self):
        # /proc takes no new folder, root or not: refused before the job or after it
        # ran, never with the scalars printed as if the result were whole.
        r = self.ctl("submit", *NFW, "--out", "/proc/kiln-no-such-dir")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertNotIn("r200_kpc", r.stdout)
        self.assertIn("/proc/kiln-no-such-dir", r.stderr)

    def test_cancel_of_a_finished_job_says_nothing_was_cancelled(self):
        r = self.ctl("submit", *NFW, "--no-wait")
        job = r.stdout.strip()
        self.assertEqual(self.ctl("watch", job).returncode, 0)
        c = self.ctl("cancel", job)
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertEqual(c.stdout.strip(), f"{job} done: already finished, nothing cancelled")

    def test_a_second_cancel_says_nothing_was_cancelled(self):
        job = self.ctl("submit", "--no-wait", "lens.nfw", "mass=6.6e14", "concentration=3", "grid_size=4096",
                       "maps=kappa,psi,mu,gamma1,gamma2").stdout.strip()
        self.assertRegex(job, UUID_RE)
        self.assertEqual(self.ctl("cancel", job).returncode, 0)
        w = self.ctl("watch", job)
        if any(b.startswith("cuda") for b in self.backends()) and w.returncode == 0:
            return  # a GPU may finish the job before the cancel arrives
        self.assertEqual(w.returncode, 1)  # it ended cancelled
        self.assertRegex(w.stderr, f"kilnctl: job {job} cancelled: the job was cancelled( while running)?\\n")
        again = self.ctl("cancel", job)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(again.stdout.strip(), f"{job} cancelled: already finished, nothing cancelled")
        r = self.ctl("--json", "cancel", job)
        self.assertEqual(json.loads(r.stdout), {"op": "ok", "job": job, "state": "cancelled", "was": "cancelled"})

    def test_url_from_environment(self):
        r = kilnctl("stats", env={"KILN_URL": self.kilnd.url})
        self.assertEqual(r.returncode, 0, r.stderr)


class KilnctlIdlePings(KilndTestCase):
    """kilnctl waiting on a job longer than server.idle_timeout_s answers the
    server's pings (after half of it) and so is not closed as idle: on ws:// with
    its own framing, and with libwebsockets' client (KILNCTL_LWS_WS=1, what wss://
    uses)."""
    env = {"KILN_SERVER_IDLE_TIMEOUT_S": "2"}

    def test_kilnctl_waits_through_pings_for_a_job_longer_than_the_idle_timeout(self):
        ft10 = os.path.join(os.path.dirname(__file__), "..", "bench", "jobshop", "instances", "ft10.txt")
        for seed, env in ((1, None), (2, {"KILNCTL_LWS_WS": "1"})):
            t0 = time.monotonic()
            r = kilnctl("--url", self.kilnd.url, "submit", "sched.jobshop", "--instance", ft10, "time_limit_ms=3500",
                        f"seed={seed}", env=env)
            self.assertEqual(r.returncode, 0, (env, r.stderr))
            self.assertIn("makespan", r.stdout)
            self.assertGreater(time.monotonic() - t0, 3.0, "the job ended before the idle timeout was tested")


def scripted(on_submit):
    """A WebSocket handler that welcomes a hello and answers each submit with
    `await on_submit(ws, message)`."""
    async def handler(ws):
        async for text in ws:
            m = json.loads(text)
            if m["op"] == "hello":
                await ws.send(json.dumps({"op": "welcome", "server": "kiln/0", "protocol": 1, "tenant": "t",
                                          "role": "admin", "kinds": [], "limits": {}, "ref": m["ref"]}))
            elif m["op"] == "submit":
                await on_submit(ws, m)
    return handler


def accepted(job, m):
    return json.dumps({"op": "accepted", "job": job, "state": "queued", "cached": False, "ref": m["ref"]})


class KilnctlAgainstAScriptedServer(unittest.TestCase):
    """Frames kilnd never sends, from a server of the test's own: kilnctl keeps
    each result part with its own message."""

    def test_stray_parts_never_reach_the_result(self):
        job, other = "0190f2d0-0000-7000-8000-000000000001", "0190f2d0-0000-7000-8000-0000000000ff"
        good, stale = np.arange(1, 5, dtype=np.float32), np.full(4, 9, dtype=np.float32)

        def part(owner, name, data):
            return encode_frame({"job": owner, "part": name, "dtype": "f32", "shape": [4]}, data.tobytes())

        async def on_submit(ws, m):
            # Binary messages kilnctl reads and drops: before `accepted`, and between
            # it and the `done`; then the real part.
            await ws.send(part(other, "psi", stale))
            await ws.send(accepted(job, m))
            await ws.send(part(other, "kappa", stale))
            await ws.send(json.dumps({"op": "done", "job": job, "state": "done", "result": {"x": 1},
                                      "parts": [{"name": "kappa", "dtype": "f32", "shape": [4], "bytes": 16}]}))
            await ws.send(part(job, "kappa", good))

        async def go(out):
            async with websockets.serve(scripted(on_submit), "127.0.0.1", 0, subprotocols=["kiln.v1"]) as server:
                port = server.sockets[0].getsockname()[1]
                p = await asyncio.create_subprocess_exec(
                    KILNCTL, "--url", f"ws://127.0.0.1:{port}/ws", "submit", "lens.nfw", "--out", out,
                    env=ctl_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                _, err = await asyncio.wait_for(p.communicate(), 60)
                return p.returncode, err.decode()

        with tempfile.TemporaryDirectory() as out:
            rc, err = asyncio.run(go(out))
            self.assertEqual(rc, 0, err)
            self.assertEqual(os.listdir(out), ["kappa.npy"])
            np.testing.assert_array_equal(np.load(os.path.join(out, "kappa.npy")), good)

    def test_progress_out_of_range_is_drawn_within_the_bar(self):
        """A server's pct of 150 or -5 is drawn as 100 % and 0 %, not past the bar."""
        job = "0190f2d0-0000-7000-8000-000000000002"

        async def on_submit(ws, m):
            await ws.send(accepted(job, m))
            for pct in (150, -5, 2 ** 40):
                await ws.send(json.dumps({"op": "progress", "job": job, "pct": pct}))
            await ws.send(json.dumps({"op": "done", "job": job, "state": "done", "result": {"x": 1}, "parts": []}))

        async def go():
            master, slave = pty.openpty()
            try:
                async with websockets.serve(scripted(on_submit), "127.0.0.1", 0, subprotocols=["kiln.v1"]) as server:
                    port = server.sockets[0].getsockname()[1]
                    p = await asyncio.create_subprocess_exec(
                        KILNCTL, "--url", f"ws://127.0.0.1:{port}/ws", "submit", "lens.nfw", env=ctl_env(),
                        stdout=asyncio.subprocess.PIPE, stderr=slave)
                    os.close(slave)
                    slave = None
                    await asyncio.wait_for(p.communicate(), 60)
                return p.returncode, drain_pty(master, 0).decode(errors="replace")
            finally:
                os.close(master)
                if slave is not None:
                    os.close(slave)

        rc, seen = asyncio.run(go())
        self.assertEqual(rc, 0, seen)
        self.assertIn("[" + "#" * 30 + "] 100%", seen)
        self.assertIn("[" + "." * 30 + "]   0%", seen)

    def test_a_frame_too_long_to_hold_is_an_error_not_a_hang(self):
        """A continuation frame of 2^63 - 1 bytes, in the same write as the 101."""
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]

        def serve():
            conn, _ = srv.accept()
            with conn:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    req += chunk
                key = re.search(rb"Sec-WebSocket-Key: *(\S+)", req, re.I).group(1)
                accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Protocol: kiln.v1\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" +
                             bytes([0x01, 0x01]) + b"a" + bytes([0x00, 127]) + (2 ** 63 - 1).to_bytes(8, "big"))
                conn.recv(4096)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            r = kilnctl("--url", f"ws://127.0.0.1:{port}/ws", "model", "list", timeout=30)
        finally:
            srv.close()
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("out of memory receiving a message", r.stderr)


class KilnctlObjects(KilndTestCase):
    """Messages are at most 64 KiB here, so every upload below is sent in frames."""

    env = {"KILN_SERVER_MAX_MESSAGE_BYTES": "65536"}

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def ctl(self, *args, **kw):
        return kilnctl("--url", self.kilnd.url, *args, **kw)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def write(self, name, data):
        with open(self.path(name), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return self.path(name)

    def server_view(self, *msgs):
        """The server's replies to msgs, asked by the fixture's client (not kilnctl)."""
        async def go():
            c = await Client.connect(self.kilnd.url)
            try:
                return [await c.call(m) for m in msgs]
            finally:
                await c.close()
        return self.run_async(go())

    def test_model_put_sends_a_large_model_in_frames_and_prints_the_reply(self):
        data, trees = xgb_model_of_size(300_000)
        r = self.ctl("model", "put", self.write("risk.json", data), "--name", "risk-a")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = fields_of(r.stdout)
        self.assertEqual({k: got[k] for k in ("name", "trees", "features", "bytes")},
                         {"name": "risk-a", "trees": str(trees), "features": "5", "bytes": str(len(data))})
        (listed,) = self.server_view({"op": "model.list"})
        entry = [m for m in listed["models"] if m["name"] == "risk-a"][0]
        self.assertEqual(got["version"], str(entry["version"]))
        self.assertEqual(entry["bytes"], len(data))

    def test_model_put_names_the_model_after_its_file(self):
        r = self.ctl("model", "put", self.write("credit-2024.json", xgb_model()))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields_of(r.stdout)["name"], "credit-2024")

    def test_model_list_and_delete(self):
        for name, n in (("ml-a", 2), ("ml-b", 3)):
            r = self.ctl("model", "put", self.write(f"{name}.json", xgb_model(n_trees=n)))
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("model", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        heads, rows = table_of(r.stdout)
        self.assertEqual(heads, ["NAME", "VERSION", "TREES", "FEATURES", "BYTES"])
        by_name = {row["name"]: row for row in rows}
        self.assertEqual(by_name["ml-a"]["trees"], "2")
        self.assertEqual(by_name["ml-b"]["trees"], "3")
        self.assertEqual(by_name["ml-b"]["bytes"], str(len(xgb_model(n_trees=3))))

        d = self.ctl("model", "delete", "ml-a")
        self.assertEqual(d.returncode, 0, d.stderr)
        _, rows = table_of(self.ctl("model", "list").stdout)
        self.assertNotIn("ml-a", [row["name"] for row in rows])
        again = self.ctl("model", "delete", "ml-a")
        self.assertEqual(again.returncode, 1)
        self.assertIn("error not_found (field name)", again.stderr)

    def test_model_put_of_an_unsupported_model_prints_the_servers_error(self):
        r = self.ctl("model", "put", self.write("reg.json", xgb_model(objective="reg:squarederror")))
        self.assertEqual(r.returncode, 1)
        self.assertIn("kilnctl: error bad_params", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_json_prints_the_servers_replies(self):
        r = self.ctl("--json", "model", "put", self.write("j.json", xgb_model(n_trees=4)))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["op"], "model")
        self.assertEqual(json.loads(r.stdout)["trees"], 4)
        for args, op in ((["model", "list"], "models"), (["vec", "list"], "collections")):
            r = self.ctl("--json", *args)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["op"], op)

    def test_vec_put_info_list_delete_and_drop(self):
        v = unit_rows(600, 32, seed=1)  # 76,800 bytes: several frames
        ids = [f"doc-{i:04d}" for i in range(600)]
        np.save(self.path("v.npy"), v)
        self.write("ids.txt", "\n".join(ids) + "\n")
        r = self.ctl("vec", "put", "docs", self.path("v.npy"), self.path("ids.txt"), "--metric", "cosine")
        self.assertEqual(r.returncode, 0, r.stderr)
        put = fields_of(r.stdout)
        self.assertEqual({k: put[k] for k in ("collection", "count", "dim", "metric")},
                         {"collection": "docs", "count": "600", "dim": "32", "metric": "cosine"})
        (info,) = self.server_view({"op": "vec.info", "collection": "docs"})
        self.assertEqual(put["version"], str(info["version"]))

        r = self.ctl("vec", "info", "docs")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields_of(r.stdout), put)
        r = self.ctl("vec", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        heads, rows = table_of(r.stdout)
        self.assertEqual(heads, ["COLLECTION", "VERSION", "COUNT", "DIM", "METRIC"])
        self.assertIn({"collection": "docs", "version": put["version"], "count": "600", "dim": "32",
                       "metric": "cosine"}, rows)

        r = self.ctl("vec", "delete", "docs", "doc-0000", "doc-0001")
        self.assertEqual(r.returncode, 0, r.stderr)
        after = fields_of(r.stdout)
        self.assertEqual(after["count"], "598")
        self.assertGreater(int(after["version"]), int(put["version"]))
        self.write("gone.txt", "\n".join(ids[100:110]) + "\n")
        r = self.ctl("vec", "delete", "docs", "--ids", self.path("gone.txt"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields_of(r.stdout)["count"], "588")

        r = self.ctl("vec", "drop", "docs")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("vec", "info", "docs")
        self.assertEqual(r.returncode, 1)
        self.assertIn("error not_found (field collection)", r.stderr)

    def test_vec_put_with_more_ids_than_one_message_holds_sends_several_puts(self):
        n = 12000  # about 150 KB of ids in JSON
        np.save(self.path("many.npy"), unit_rows(n, 2, seed=2))
        self.write("many.txt", "".join(f"item-{i:06d}\n" for i in range(n)))
        r = self.ctl("vec", "put", "many", self.path("many.npy"), self.path("many.txt"), "--metric", "l2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields_of(r.stdout)["count"], str(n))
        self.assertIn("puts", r.stderr)
        (info,) = self.server_view({"op": "vec.info", "collection": "many"})
        self.assertEqual(info["count"], n)

    def test_vec_put_of_another_metric_prints_the_servers_error(self):
        np.save(self.path("m.npy"), unit_rows(2, 3, seed=3))
        self.write("m.txt", "a\nb\n")
        ok = self.ctl("vec", "put", "fixed", self.path("m.npy"), self.path("m.txt"), "--metric", "l2")
        self.assertEqual(ok.returncode, 0, ok.stderr)
        r = self.ctl("vec", "put", "fixed", self.path("m.npy"), self.path("m.txt"), "--metric", "ip")
        self.assertEqual(r.returncode, 1)
        self.assertIn("error bad_params (field metric)", r.stderr)


class KilnctlObjectRoles(unittest.TestCase):
    """Roles reach kilnctl as the server's forbidden errors."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = start_with_tokens()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        code = cls.kilnd.stop()
        log = cls.kilnd.read_log()
        cls.kilnd.cleanup()
        if code != 0:
            raise AssertionError(f"kilnd exited with {code}:\n{log}")

    def ctl(self, token, *args):
        return kilnctl("--url", self.kilnd.url, "--token", token, *args)

    def test_only_admins_put_models_and_writers_put_vectors(self):
        model = os.path.join(self.tmp.name, "m.json")
        with open(model, "wb") as f:
            f.write(xgb_model())
        npy, ids = os.path.join(self.tmp.name, "v.npy"), os.path.join(self.tmp.name, "ids.txt")
        np.save(npy, unit_rows(2, 4, seed=4))
        with open(ids, "w") as f:
            f.write("a\nb\n")
        for token in ("obj-read", "obj-writer"):
            r = self.ctl(token, "model", "put", model)
            self.assertEqual(r.returncode, 1, token)
            self.assertIn("kilnctl: error forbidden", r.stderr, token)
        r = self.ctl("obj-read", "vec", "put", "roles", npy, ids, "--metric", "l2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("kilnctl: error forbidden", r.stderr)
        r = self.ctl("obj-writer", "vec", "put", "roles", npy, ids, "--metric", "l2")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("obj-read", "vec", "info", "roles")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(fields_of(r.stdout)["count"], "2")
        r = self.ctl("obj-admin", "model", "put", model)
        self.assertEqual(r.returncode, 0, r.stderr)


class KilnctlWithoutServer(unittest.TestCase):

    def test_cannot_connect(self):
        url = f"ws://127.0.0.1:{free_port()}/ws"
        for args, env in ((["--url", url, "stats"], None), (["list"], {"KILN_URL": url})):
            r = kilnctl(*args, env=env, timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"cannot connect to {url}: Connection refused", r.stderr)

    def test_usage_errors(self):
        cases = [
            [],
            ["frobnicate"],
            ["status"],
            ["status", "not-a-uuid"],
            ["submit"],
            ["submit", "lens.nfw", "mass"],
            ["submit", "lens.nfw", "mass=1e14", "--priority", "urgent"],
            ["submit", "lens.nfw", "--timeout-ms", "soon"],
            ["list", "--out", "x"],
            ["list", "--limit", "0"],
            ["submit", "lens.nfw", "mass=1e14", "--no-wait", "--out", "x"],  # nothing would be written
            ["--no-such-option", "stats"],
            ["--url", "http://127.0.0.1:1/", "stats"],
            ["token", "new", "alice", "acme"],
            ["model"],
            ["model", "frob"],
            ["model", "put"],
            ["model", "put", "a.json", "b.json"],
            ["model", "list", "extra"],
            ["model", "list", "--name", "x"],
            ["model", "delete"],
            ["vec"],
            ["vec", "put", "c", "x.npy"],
            ["vec", "put", "c", "x.npy", "ids.txt", "--metric", "hamming"],
            ["vec", "info"],
            ["vec", "info", "--metric", "l2", "c"],
            ["vec", "delete", "c"],
            ["vec", "delete", "c", "a", "--ids", "ids.txt"],
            ["vec", "delete", "c", "x" * 257],
            ["vec", "drop"],
            ["vec", "list", "--ids", "ids.txt"],
            ["submit", "lens.nfw", "--metric", "l2"],
            # A key given twice; an --out that is no folder (before anything is sent).
            ["submit", "lens.nfw", "mass=1e14", "mass=2e14"],
            ["submit", "lens.raytrace", "source=1", "source.x_arcsec=2"],
            ["submit", "lens.nfw", "mass=1e14", "concentration=5", "--out", "/dev/null"],
            ["submit", "lens.nfw", "mass=1e14", "concentration=5", "--out", "/dev/null/parts"],
        ]
        for args in cases:
            r = kilnctl(*args, timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("kilnctl: "), (args, r.stderr))

    def test_help(self):
        r = kilnctl("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: kilnctl", r.stdout)
        for cmd in ("submit", "status", "result", "list", "cancel", "stats", "watch", "token new", "model put",
                    "model list", "model delete", "vec put", "vec info", "vec list", "vec delete", "vec drop"):
            self.assertIn(cmd, r.stdout)

    def test_vec_put_refuses_unusable_files_before_connecting(self):
        url = f"ws://127.0.0.1:{free_port()}/ws"
        with tempfile.TemporaryDirectory() as tmp:
            def p(name):
                return os.path.join(tmp, name)
            np.save(p("good.npy"), np.zeros((3, 4), np.float32))
            np.save(p("f64.npy"), np.zeros((3, 4)))
            np.save(p("flat.npy"), np.zeros(12, np.float32))
            np.save(p("fortran.npy"), np.asfortranarray(np.zeros((3, 4), np.float32)))
            np.save(p("big-endian.npy"), np.zeros((3, 4), ">f4"))
            with open(p("good.npy"), "rb") as f:
                good = f.read()
            with open(p("short.npy"), "wb") as f:
                f.write(good[:-4])
            with open(p("text.npy"), "w") as f:
                f.write("1 2 3\n")
            for name, text in (("ids.txt", "a\nb\nc\n"), ("two.txt", "a\nb\n"), ("blank.txt", "a\n\nc\n")):
                with open(p(name), "w") as f:
                    f.write(text)
            cases = [  # (FILE.npy, IDS.txt, what the message says, the file it names)
                ("f64.npy", "ids.txt", "float64", "f64.npy"),
                ("flat.npy", "ids.txt", "shape (12,)", "flat.npy"),
                ("fortran.npy", "ids.txt", "Fortran order", "fortran.npy"),
                ("big-endian.npy", "ids.txt", "big-endian", "big-endian.npy"),
                ("short.npy", "ids.txt", "bytes of data", "short.npy"),
                ("text.npy", "ids.txt", "not a NumPy .npy file", "text.npy"),
                ("absent.npy", "ids.txt", "No such file", "absent.npy"),
                ("good.npy", "two.txt", "holds 3 vectors but", "two.txt"),
                ("good.npy", "blank.txt", "line 2 is empty", "blank.txt"),
                ("good.npy", "absent.txt", "No such file", "absent.txt"),
            ]
            for npy, ids, says, names in cases:
                r = kilnctl("--url", url, "vec", "put", "c", p(npy), p(ids), "--metric", "l2", timeout=30)
                self.assertEqual(r.returncode, 2, (npy, ids, r.stderr))
                self.assertIn(says, r.stderr, (npy, ids))
                self.assertIn(p(names), r.stderr, (npy, ids))
                self.assertNotIn("cannot connect", r.stderr)
            # The same files are fine once they match: now kilnctl tries to connect.
            r = kilnctl("--url", url, "vec", "put", "c", p("good.npy"), p("ids.txt"), timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertIn("cannot connect", r.stderr)

    def test_model_put_refuses_missing_or_empty_files_before_connecting(self):
        url = f"ws://127.0.0.1:{free_port()}/ws"
        with tempfile.TemporaryDirectory() as tmp:
            empty = os.path.join(tmp, "empty.json")
            open(empty, "w").close()
            for path, says in ((empty, "is empty"), (os.path.join(tmp, "absent.json"), "No such file"),
                               (tmp, "not a regular file")):
                r = kilnctl("--url", url, "model", "put", path, timeout=30)
                self.assertEqual(r.returncode, 2, (path, r.stderr))
                self.assertIn(says, r.stderr)
                self.assertIn(path, r.stderr)


class KilnctlToken(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.file = os.path.join(self.tmp.name, "tokens")

    def tearDown(self):
        self.tmp.cleanup()

    def new(self, *args):
        return kilnctl("token", "new", *args, "--tokens-file", self.file, timeout=30)

    def test_token_new_appends_the_hash(self):
        r = self.new("alice", "acme", "admin")
        self.assertEqual(r.returncode, 0, r.stderr)
        token = r.stdout.strip()
        self.assertGreaterEqual(len(token), 43)
        st = os.stat(self.file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)  # as the package makes it: the service reads it
        try:
            self.assertEqual(st.st_gid, grp.getgrnam("kiln").gr_gid)
        except KeyError:
            pass  # no group kiln on this machine: the creator's group
        r2 = self.new("bob.ci", "acme-2", "read")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        token2 = r2.stdout.strip()
        self.assertNotEqual(token, token2)
        with open(self.file) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines, [
            f"alice acme admin {hashlib.sha256(token.encode()).hexdigest()}",
            f"bob.ci acme-2 read {hashlib.sha256(token2.encode()).hexdigest()}",
        ])

    def test_token_new_refuses_bad_input(self):
        for args in (("a b", "acme", "read"), ("alice", "ac/me", "read"), ("x" * 64, "acme", "read"),
                     ("alice", "acme", "root"), ("", "acme", "read")):
            r = self.new(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stdout, "", args)
        self.assertFalse(os.path.exists(self.file))
        self.assertEqual(self.new("alice", "acme", "read").returncode, 0)
        dup = self.new("alice", "other", "admin")
        self.assertEqual(dup.returncode, 1)
        self.assertEqual(dup.stdout, "")
        with open(self.file) as f:
            self.assertEqual(len(f.read().splitlines()), 1)

    def test_token_new_adds_nothing_to_a_file_kilnd_would_refuse(self):
        # A line added there would sign in nowhere.
        with open(self.file, "w") as f:
            f.write("alice acme admin " + "0" * 64 + "\n")
        os.chmod(self.file, 0o666)
        loose = self.new("bob", "acme", "read")
        os.chmod(self.file, 0o600)
        with open(self.file, "a") as f:
            f.write("\x89PNG\r\n")
        broken = self.new("bob", "acme", "read")
        for r, why in ((loose, "writable by its group or by others"), (broken, ":2: malformed token line")):
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stdout, "", "no token shown")
            self.assertIn(why, r.stderr)
            self.assertIn("(kilnd would refuse this tokens file); nothing was added", r.stderr)
        with open(self.file, "rb") as f:
            self.assertEqual(f.read().count(b"\n"), 2)

    @unittest.skipUnless(os.geteuid() == 0, "making a file another user's needs root")
    def test_token_new_takes_a_file_kilnd_takes_by_its_owner(self):
        # kilnd takes a file of root's or of its own user (kiln, as packaged);
        # kilnctl, run by root, takes the same and refuses another user's.
        import pwd
        try:
            kiln = pwd.getpwnam("kiln").pw_uid
        except KeyError:
            kiln = None
        for owner, ok in ((kiln, True), (54321, False)):
            with self.subTest(owner=owner):
                if owner is None:
                    self.skipTest("no user kiln on this machine (the package makes it)")
                with open(self.file, "w") as f:
                    f.write("alice acme admin " + "0" * 64 + "\n")
                os.chmod(self.file, 0o600)
                os.chown(self.file, owner, -1)
                r = self.new("bob", "acme", "read")
                self.assertEqual(r.returncode, 0 if ok else 1, r.stderr)
                if not ok:
                    self.assertIn("owned by a user other than root or kilnd's", r.stderr)
                with open(self.file) as f:
                    self.assertEqual(len(f.read().splitlines()), 2 if ok else 1)

    def test_token_new_adds_no_token_it_could_not_show(self):
        # A token added but never seen would be a credential nobody holds.
        with open("/dev/full", "w") as full:
            r = subprocess.run([KILNCTL, "token", "new", "carol", "acme", "read", "--tokens-file", self.file],
                               stdout=full, stderr=subprocess.PIPE, text=True, timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot write the token to standard output", r.stderr)
        self.assertFalse(os.path.exists(self.file))

    def test_daemon_accepts_the_new_token(self):
        kilnd = Kilnd(env={"KILN_AUTH_REQUIRED": "true"})
        try:
            tokens = os.path.join(kilnd.tmp, "tokens")  # the fixture's KILN_AUTH_TOKENS_FILE
            r = kilnctl("token", "new", "ci", "acme", "submit", "--tokens-file", tokens, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            token = r.stdout.strip()
            kilnd.start()
            ok = kilnctl("--url", kilnd.url, "--token", token, "submit", "lens.nfw", "mass=1e14",
                         "concentration=5", "grid_size=8")
            self.assertEqual(ok.returncode, 0, ok.stderr)
            env_ok = kilnctl("--url", kilnd.url, "list", env={"KILN_TOKEN": token})
            self.assertEqual(env_ok.returncode, 0, env_ok.stderr)
            self.assertIn(ok.stdout.splitlines()[0], env_ok.stdout)
            bad = kilnctl("--url", kilnd.url, "--token", "0" * 64, "stats")
            self.assertEqual(bad.returncode, 1)
            self.assertIn("unauthorized", bad.stderr)
            self.assertEqual(kilnd.stop(), 0, kilnd.read_log())
        finally:
            kilnd.cleanup()


if __name__ == "__main__":
    unittest.main()
