"""sched.jobshop through the real kilnd (SPEC §1.5): instances sent as the part
`instance` (OR-Library text or JSON) give valid schedules, checked here operation by
operation; progress carries best, lower_bound and the incumbent schedule (valid, its
makespan the best); every bad instance is refused at
submit with the field named; results are cached by instance, seed and time limit;
a running search can be cancelled; kilnctl submits a file and kiln-bench runs its
jobshop scenario."""
import asyncio
import json
import os
import subprocess
import tempfile
import time
import unittest

from kiln_fixture import KILNCTL, KilndTestCase, encode_frame

KILN_BENCH = os.environ.get("KILN_BENCH", "build/daemon/bench/kiln-bench")
INSTANCES = os.path.join(os.path.dirname(__file__), "..", "bench", "jobshop", "instances")


def instance_text(name):
    with open(os.path.join(INSTANCES, name + ".txt")) as f:
        return f.read()


def read_orlib(text):
    """[(machine, duration), ...] per job, from OR-Library text."""
    nums = [int(t) for line in text.splitlines() for t in line.split("#")[0].split()]
    n, m = nums[0], nums[1]
    pairs = nums[2:]
    return [[(pairs[2 * (j * m + k)], pairs[2 * (j * m + k) + 1]) for k in range(m)] for j in range(n)]


def check_starts(test, jobs, starts):
    """The start times `starts` (per job, per operation) keep every job's order and
    never run two operations on one machine at once; returns where they end."""
    test.assertIsInstance(starts, list)
    test.assertEqual([len(s) for s in starts], [len(j) for j in jobs])
    by_machine = {}
    end = 0
    for j, (ops, st) in enumerate(zip(jobs, starts)):
        for k, ((mach, dur), s) in enumerate(zip(ops, st)):
            test.assertGreaterEqual(s, 0)
            if k:
                test.assertGreaterEqual(s, st[k - 1] + ops[k - 1][1], f"job {j} operation {k} starts early")
            by_machine.setdefault(mach, []).append((s, s + dur, j, k))
            end = max(end, s + dur)
    for mach, runs in by_machine.items():
        runs.sort()
        for a, b in zip(runs, runs[1:]):
            test.assertLessEqual(a[1], b[0], f"machine {mach}: {a} overlaps {b}")
    return end


def check_schedule(test, jobs, result):
    """The schedule of `result` is valid (check_starts) and ends at `makespan`."""
    end = check_starts(test, jobs, result["starts"])
    test.assertEqual(result["makespan"], end)
    test.assertLessEqual(result["lower_bound"], result["makespan"])
    test.assertEqual(result["optimal"], result["makespan"] == result["lower_bound"])
    test.assertAlmostEqual(result["gap"], (end - result["lower_bound"]) / result["lower_bound"])


class JobshopTest(KilndTestCase):
    async def jobshop(self, c, instance, params=None, dtype="bytes", watch=True, read=True):
        """Sends `instance` (str or bytes) as the part `instance` and submits; returns
        (accepted-or-error, done, progress) (done None when refused or not read)."""
        payload = instance.encode() if isinstance(instance, str) else instance
        c.ref += 1
        ref = c.ref
        await c.ws.send(encode_frame({"ref": ref, "part": "instance", "dtype": dtype, "shape": [len(payload)]},
                                     payload))
        acc = await c.call({"op": "submit", "kind": "sched.jobshop", "params": params or {}, "ref": ref,
                            "watch": watch})
        if acc["op"] != "accepted" or not read:
            return acc, None, None
        done, _, progress = await c.read_done(acc["job"], timeout=120)
        return acc, done, progress

    def test_ft06_and_la02_reach_their_optima_with_valid_schedules(self):
        async def go():
            c = await self.client()
            out = []
            for name, params in (("ft06", {"target": 55, "time_limit_ms": 20000, "walks": 1}),
                                 ("la02", {"time_limit_ms": 30000, "seed": 3, "walks": 1}),
                                 ("ft10", {"time_limit_ms": 300, "seed": 1}),
                                 ("ta01", {"time_limit_ms": 300, "seed": 2, "walks": 2})):
                out.append((name, params) + (await self.jobshop(c, instance_text(name), params))[1:])
            await c.close()
            return out
        for name, params, done, progress in self.run_async(go()):
            self.assertEqual(done["state"], "done", done)
            r = done["result"]
            check_schedule(self, read_orlib(instance_text(name)), r)
            self.assertEqual(done["parts"], [])
            for key in ("iterations", "ms_to_best", "walks", "moves"):
                self.assertIsInstance(r[key], int, key)
            self.assertLessEqual(r["ms_to_best"], params["time_limit_ms"])
            if name == "ft06":
                self.assertEqual(r["makespan"], 55)
                self.assertEqual(r["walks"], 1)
            if name == "la02":
                # la02's bound is its optimum: the search ends on its own, optimal.
                self.assertEqual(r["makespan"], 655)
                self.assertTrue(r["optimal"])

    def test_json_instances_read_like_the_text(self):
        jobs = [[[0, 3], [1, 2], [2, 2]], [[0, 2], [2, 1], [1, 4]], [[1, 4], [2, 3]]]
        async def go():
            c = await self.client()
            a = await self.jobshop(c, json.dumps({"jobs": jobs}), {"time_limit_ms": 500})
            text = "3 2\n0 4 1 5\n1 1 0 1\n0 2 1 2\n"
            b = await self.jobshop(c, json.dumps({"format": "orlib", "text": text}), {"time_limit_ms": 500},
                                   dtype="u8")
            await c.close()
            return a, b, text
        a, b, text = self.run_async(go())
        check_schedule(self, [[tuple(op) for op in j] for j in jobs], a[1]["result"])
        self.assertEqual(a[1]["result"]["makespan"], 11)   # the optimum (all 72 machine orders tried)
        check_schedule(self, read_orlib(text), b[1]["result"])

    def test_progress_carries_best_lower_bound_and_the_incumbent_schedule(self):
        # Each progress with a best carries that schedule's start times as JSON, in
        # the shape of the result's `starts`, so that a client redraws its chart as
        # the search improves.
        async def go():
            c = await self.client()
            r = await self.jobshop(c, instance_text("ta01"), {"time_limit_ms": 2000, "seed": 7, "walks": 1})
            await c.close()
            return r
        _, done, progress = self.run_async(go())
        r = done["result"]
        jobs = read_orlib(instance_text("ta01"))
        marked = [p for p in progress if "best" in p]
        summary = [{k: v for k, v in p.items() if k != "starts"} for p in progress]
        self.assertGreaterEqual(len(marked), 2, summary)
        for p in marked:
            self.assertEqual(p["lower_bound"], r["lower_bound"])
            self.assertTrue(0 <= p["pct"] <= 100)
            self.assertIn("starts", p, summary)
            self.assertEqual(check_starts(self, jobs, p["starts"]), p["best"], p["pct"])
        bests = [p["best"] for p in marked]
        self.assertEqual(bests, sorted(bests, reverse=True))   # the incumbent only improves
        self.assertGreaterEqual(len(set(bests)), 2, summary)   # it redrew as the best fell
        self.assertGreaterEqual(bests[-1], r["makespan"])
        check_schedule(self, jobs, r)

    def test_the_instance_inline_in_params_is_the_same_job(self):
        # SPEC §1.5: params.instance is the JSON object (or its OR-Library form);
        # the same instance sent as the part gives the same result from the cache.
        jobs = [[[0, 3], [1, 2], [2, 2]], [[0, 2], [2, 1], [1, 4]], [[1, 4], [2, 3]]]
        params = {"time_limit_ms": 300, "seed": 5, "walks": 1}

        async def go():
            c = await self.client()
            inline = await c.call({"op": "submit", "kind": "sched.jobshop",
                                   "params": dict(params, instance={"jobs": jobs})})
            done, _, _ = await c.read_done(inline["job"], timeout=60)
            text = json.dumps({"jobs": jobs}, separators=(",", ":"), sort_keys=True)
            as_part = await self.jobshop(c, text, params)
            orlib = await c.call({"op": "submit", "kind": "sched.jobshop",
                                  "params": dict(params, instance={"format": "orlib", "text": "2 2\n0 3 1 2\n1 4 0 1\n"})})
            done_orlib, _, _ = await c.read_done(orlib["job"], timeout=60)
            bad = await c.call({"op": "submit", "kind": "sched.jobshop",
                                "params": dict(params, instance={"jobs": [[[0, 3], [0, 2]]]})})
            await c.close()
            return inline, done, as_part, done_orlib, bad
        inline, done, as_part, done_orlib, bad = self.run_async(go())
        self.assertEqual(inline["op"], "accepted", inline)
        self.assertEqual(done["state"], "done", done)
        check_schedule(self, [[tuple(op) for op in j] for j in jobs], done["result"])
        self.assertTrue(as_part[0]["cached"], as_part[0])       # one cache key for both forms
        self.assertEqual(as_part[1]["result"], done["result"])
        self.assertEqual(done_orlib["state"], "done", done_orlib)
        self.assertEqual(done_orlib["result"]["makespan"], 6)   # J0 m0 0-3, J1 m1 0-4, J0 m1 4-6
        self.assertEqual(bad["op"], "error", bad)
        self.assertEqual(bad["code"], "bad_params", bad)
        self.assertTrue(bad["field"].startswith("params.instance"), bad)

    def test_every_bad_instance_is_refused_with_its_field(self):
        cases = [
            ("2 2\n0 1 0 2\n1 1 0 1\n", "params.instance", "twice"),
            ('{"jobs": [[[0, 1], [0, 2]]]}', "params.instance.jobs[0][1][0]", "second time"),
            ("2 2\n0 1 2 1\n0 1 1 1\n", "params.instance", "machine 2"),
            ('{"jobs": [[[-1, 4]]]}', "params.instance.jobs[0][0][0]", "machine -1"),
            ("1 2\n0 -5 1 1\n", "params.instance", "duration -5"),
            ('{"jobs": [[[0, 1], [1, -2]]]}', "params.instance.jobs[0][1][1]", "duration -2"),
            ("2 2\n0 1 1 one\n0 1 1 1\n", "params.instance", "malformed"),
            ("3 3\n0 1 1 1 2 1\n", "params.instance", "ends"),
            ('{"format": "orlib", "text": "1 1\\n0 1 9"}', "params.instance.text", "unexpected text"),
            ("101 100\n", "params.instance", "more than 10000 operations"),
            ('{"jobs": [[[0, 1]]], "machines": 3}', "params.instance", "not a field"),
            ('{"jobs": [[[0, 1]]]', "params.instance", "well-formed"),
        ]
        async def go():
            c = await self.client()
            out = [(await self.jobshop(c, text))[0] for text, _, _ in cases]
            missing = await c.call({"op": "submit", "kind": "sched.jobshop", "params": {}})
            limit = await c.call({"op": "submit", "kind": "sched.jobshop", "params": {"time_limit_ms": 0}})
            still = await self.jobshop(c, instance_text("ft06"), {"target": 55, "walks": 1})
            await c.close()
            return out, missing, limit, still
        out, missing, limit, still = self.run_async(go())
        for (text, field, words), err in zip(cases, out):
            self.assertEqual(err["op"], "error", text)
            self.assertEqual(err["code"], "bad_params", text)
            self.assertEqual(err["field"], field, (text, err))
            self.assertIn(words, err["message"], text)
        self.assertEqual((missing["code"], missing["field"]), ("bad_params", "inputs.instance"))
        self.assertEqual((limit["code"], limit["field"]), ("bad_params", "params.time_limit_ms"))
        self.assertEqual(still[1]["result"]["makespan"], 55)   # the connection serves on

    def test_results_are_cached_by_instance_seed_and_limit(self):
        async def go():
            c = await self.client()
            p = {"time_limit_ms": 200, "seed": 11, "walks": 1}
            first = await self.jobshop(c, instance_text("ft10"), p)
            again = await self.jobshop(c, instance_text("ft10"), p)
            other = await self.jobshop(c, instance_text("ft10"), dict(p, seed=12))
            await c.close()
            return first, again, other
        first, again, other = self.run_async(go())
        self.assertFalse(first[0]["cached"])
        self.assertTrue(again[0]["cached"])
        self.assertEqual(again[1]["result"], first[1]["result"])
        self.assertFalse(other[0]["cached"])

    def test_a_long_search_can_be_cancelled(self):
        async def go():
            c = await self.client()
            acc, _, _ = await self.jobshop(c, instance_text("ta01"), {"time_limit_ms": 600000}, read=False)
            self.assertEqual(acc["op"], "accepted", acc)
            # Cancel once it runs: its first progress says so.
            while True:
                m = await c.recv(30)
                if isinstance(m, dict) and m.get("op") == "progress" and m.get("job") == acc["job"]:
                    break
            t0 = time.monotonic()
            ok = await c.call({"op": "cancel", "job": acc["job"]})
            done, _, _ = await c.read_done(acc["job"], timeout=30)
            await c.close()
            return ok, done, time.monotonic() - t0
        ok, done, took = self.run_async(go())
        self.assertEqual(ok["op"], "ok", ok)
        self.assertEqual(done["state"], "cancelled", done)
        self.assertLess(took, 10)

    def test_kilnctl_submits_an_instance_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "ft06.txt")
            with open(path, "w") as f:
                f.write(instance_text("ft06"))
            env = dict(os.environ, KILNCTL_NO_PROGRESS="1")
            p = subprocess.run([KILNCTL, "--url", self.kilnd.url, "--json", "submit", "sched.jobshop", "target=55",
                                "time_limit_ms=20000", "--instance", path], capture_output=True, text=True,
                               timeout=60, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            done = json.loads(p.stdout.strip().splitlines()[-1])
            check_schedule(self, read_orlib(instance_text("ft06")), done["result"])
            self.assertEqual(done["result"]["makespan"], 55)
            bad = os.path.join(tmp, "bad.txt")
            with open(bad, "w") as f:
                f.write("1 2\n0 5 0 5\n")
            p = subprocess.run([KILNCTL, "--url", self.kilnd.url, "submit", "sched.jobshop", "--instance", bad],
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(p.returncode, 1)
            self.assertIn("params.instance", p.stderr)
            p = subprocess.run([KILNCTL, "--url", self.kilnd.url, "submit", "sched.jobshop", "--instance",
                                os.path.join(tmp, "missing.txt")], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2)

    def test_kiln_bench_runs_the_jobshop_scenario(self):
        p = subprocess.run([KILN_BENCH, "--url", self.kilnd.url, "--scenario", "jobshop", "--connections", "2",
                            "--duration", "1", "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        self.assertEqual(r["scenario"], "jobshop")
        self.assertEqual(r["errors"], 0, r)
        self.assertGreater(r["jobs"], 0, r)


if __name__ == "__main__":
    unittest.main()
