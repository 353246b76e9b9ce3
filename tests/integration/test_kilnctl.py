"""kilnctl (SPEC §5) against the real kilnd: submit with .npy output, result, status,
list, cancel, watch, stats, error replies, connection failures, usage errors, and
`token new` (checked end to end by a daemon that requires the new token).

Expected values never come from kilnctl itself: parts and scalars are compared with
what the fixture's own WebSocket client fetches for the same job.
"""
import hashlib
import json
import os
import pty
import re
import select
import stat
import subprocess
import tempfile
import time
import unittest

import numpy as np

from kiln_fixture import KILNCTL, Client, Kilnd, KilndTestCase, free_port

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NFW = ["lens.nfw", "mass=1e14", "concentration=5", "grid_size=32", "maps=kappa,psi"]


def ctl_env(extra=None):
    """The caller's environment without a KILN_URL/KILN_TOKEN that would leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("KILN_URL", "KILN_TOKEN")}
    env.update(extra or {})
    return env


def kilnctl(*args, env=None, timeout=120, **kw):
    return subprocess.run([KILNCTL, *args], env=ctl_env(env), capture_output=True, text=True, timeout=timeout,
                          **kw)


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

    def submit_ok(self, *args):
        r = self.ctl("submit", *args)
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
            r = self.ctl("result", job, "--out", os.path.join(tmp, "b"))
            self.assertEqual(r.returncode, 0, r.stderr)
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

    def test_large_result_is_received_whole(self):
        with tempfile.TemporaryDirectory() as tmp:
            job, _ = self.submit_ok("lens.nfw", "mass=2e14", "concentration=4", "grid_size=2048",
                                    "maps=kappa,alpha_x", "--out", tmp)
            _, parts = self.fetch(job)
            for name in ("kappa", "alpha_x"):
                a = np.load(os.path.join(tmp, name + ".npy"))
                self.assertEqual(a.shape, (2048, 2048))
                np.testing.assert_array_equal(a, parts[name])

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

        one = self.ctl("list", "--limit", "1")
        self.assertEqual(one.returncode, 0, one.stderr)
        self.assertEqual(len(one.stdout.splitlines()), 2)
        self.assertIn("--after", one.stderr)  # more than one job exists by now

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
            seen = b""
            while True:
                ready, _, _ = select.select([master], [], [], 60)
                self.assertTrue(ready, "kilnctl stalled")
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed
                    break
                if not chunk:
                    break
                seen += chunk
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

    def test_url_from_environment(self):
        r = kilnctl("stats", env={"KILN_URL": self.kilnd.url})
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
            ["--no-such-option", "stats"],
            ["--url", "http://127.0.0.1:1/", "stats"],
            ["token", "new", "alice", "acme"],
        ]
        for args in cases:
            r = kilnctl(*args, timeout=30)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("kilnctl: "), (args, r.stderr))

    def test_help(self):
        r = kilnctl("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: kilnctl", r.stdout)
        for cmd in ("submit", "status", "result", "list", "cancel", "stats", "watch", "token new"):
            self.assertIn(cmd, r.stdout)


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
        self.assertEqual(stat.S_IMODE(os.stat(self.file).st_mode), 0o600)
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
