"""GET /metrics: Prometheus text format, valid for promtool, the families of SPEC §3,
and counters that follow what the daemon did."""
import asyncio
import shutil
import subprocess
import unittest
import urllib.request

from kiln_fixture import Client, KilndTestCase, parse_metrics as parse

FAMILIES = [
    "kiln_jobs_total", "kiln_queue_depth", "kiln_job_queue_seconds", "kiln_job_run_seconds",
    "kiln_batch_size", "kiln_cache_hits_total", "kiln_cache_misses_total", "kiln_cache_bytes",
    "kiln_device_utilization_ratio", "kiln_device_memory_used_bytes", "kiln_connections",
    "kiln_ws_messages_total", "kiln_rejected_total",
]


class MetricsTest(KilndTestCase):
    env = {"KILN_CPU_THREADS": "2", "KILN_TEST_CACHE_MERGE_AT": "20"}

    def scrape(self):
        with urllib.request.urlopen(self.kilnd.http + "/metrics", timeout=10) as r:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/plain"))
            return r.read().decode()

    def promtool(self, text):
        tool = shutil.which("promtool")
        self.assertIsNotNone(tool, "promtool (Debian package prometheus) is needed for this test")
        p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode())

    def test_scrape_under_load_is_valid_for_promtool(self):
        async def go():
            clients = [await self.client() for _ in range(4)]
            jobs = []
            for i, c in enumerate(clients):
                for k in range(5):
                    acc = await c.submit("lens.nfw", {"mass": 1e13 * (1 + i + 7 * k), "concentration": 5,
                                                      "grid_size": 512, "maps": ["kappa", "psi"]})
                    jobs.append((c, acc["job"]))
            # Scrape while the jobs are queued and running.
            text = await asyncio.get_running_loop().run_in_executor(None, self.scrape)
            # Each client's jobs finish in any order: wait for all of its `done`s.
            for c in clients:
                pending = {job for cc, job in jobs if cc is c}
                while pending:
                    done, _, _ = await c.read_done(None)
                    pending.discard(done["job"])
            for c in clients:
                await c.close()
            return text

        text = self.run_async(go())
        self.promtool(text)
        for fam in FAMILIES:
            self.assertRegex(text, rf"(?m)^# TYPE {fam} ", fam)

    def test_counters_follow_jobs_and_errors(self):
        before = parse(self.scrape())

        async def go():
            c = await self.client()
            for i in range(3):
                await c.run("lens.nfw", {"mass": 3e13 * (i + 1), "concentration": 4, "grid_size": 32})
            err = await c.call({"op": "submit", "kind": "no.such.kind", "params": {}})
            self.assertEqual(err["code"], "unknown_kind")
            text = self.scrape()
            await c.close()
            return text

        text = self.run_async(go())
        self.promtool(text)
        after = parse(text)
        done = ("kiln_jobs_total", frozenset({("kind", "lens.nfw"), ("state", "done")}))
        self.assertEqual(after[done] - before.get(done, 0), 3)
        run_count = ("kiln_job_run_seconds_count", frozenset({("kind", "lens.nfw")}))
        self.assertEqual(after[run_count] - before.get(run_count, 0), 3)
        rej = ("kiln_rejected_total", frozenset({("code", "unknown_kind")}))
        self.assertEqual(after[rej] - before.get(rej, 0), 1)
        msgs_in = ("kiln_ws_messages_total", frozenset({("direction", "in")}))
        self.assertGreaterEqual(after[msgs_in] - before.get(msgs_in, 0), 5)
        self.assertGreaterEqual(after[("kiln_connections", frozenset())], 1)
        # The store's writer: each job's records went in some commit, several to one at most.
        ops, commits = ("kiln_store_operations_total", frozenset()), ("kiln_store_commits_total", frozenset())
        d_ops, d_commits = after[ops] - before.get(ops, 0), after[commits] - before.get(commits, 0)
        self.assertGreaterEqual(d_ops, 3)
        self.assertGreaterEqual(d_commits, 1)
        self.assertLessEqual(d_commits, d_ops)
        # Histogram buckets are cumulative and end at the count.
        buckets = sorted((float(dict(k[1])["le"].replace("+Inf", "inf")), v) for k, v in after.items()
                         if k[0] == "kiln_job_run_seconds_bucket" and ("kind", "lens.nfw") in k[1])
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
        self.assertEqual(buckets[-1][1], after[run_count])
        # A batch histogram exists for the CPU backend once jobs ran.
        self.assertIn(("kiln_batch_size_count", frozenset({("kind", "lens.nfw"), ("backend", "cpu")})), after)
        # The CPU shows up as a device.
        self.assertIn(("kiln_device_utilization_ratio", frozenset({("device", "cpu")})), after)

    def test_run_seconds_resolve_jobs_shorter_than_a_millisecond(self):
        # A one-row score runs in microseconds: its time counts, not 0.
        before = parse(self.scrape())

        async def go():
            c = await self.client()
            for i in range(10):
                done, _ = await c.run("risk.score", {"model": "altman-z2", "rows": [[0.3 + i / 997, 0.2, 0.1, 1.2]]},
                                      cache=False)
                self.assertEqual(done["state"], "done", done)
            await c.close()

        self.run_async(go())
        after = parse(self.scrape())
        key = frozenset({("kind", "risk.score")})
        count, total = ("kiln_job_run_seconds_count", key), ("kiln_job_run_seconds_sum", key)
        self.assertEqual(after[count] - before.get(count, 0), 10)
        self.assertGreater(after[total] - before.get(total, 0), 0)

    def test_cache_log_and_merges_are_shown(self):
        # New cache entries wait in the store's log; with a merge every 20 of them
        # (KILN_TEST_CACHE_MERGE_AT), 30 new results make at least one.
        before = parse(self.scrape())
        merges = ("kiln_cache_merges_total", frozenset())

        async def go():
            c = await self.client()
            for i in range(30):
                done, _ = await c.run("risk.score", {"model": "altman-z2", "rows": [[0.1 + i / 1000, 0.2, 0.3, 1.4]]})
                self.assertEqual(done["state"], "done", done)
            for _ in range(100):  # the writer merges between batches: wait for it
                after = parse(self.scrape())
                if after[merges] > before[merges]:
                    break
                await asyncio.sleep(0.05)
            await c.close()
            return after

        after = self.run_async(go())
        self.assertGreaterEqual(after[merges] - before[merges], 1)
        self.assertLess(after[("kiln_cache_recent_entries", frozenset())], 20)


if __name__ == "__main__":
    unittest.main()
