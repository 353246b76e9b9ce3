"""The result cache, coalescing, idempotency keys and job retention (SPEC §2.2,
§4 [cache] [jobs], §7): the real kilnd, real sockets, real LMDB files."""
import asyncio
import hashlib
import os
import sys
import time
import unittest

import numpy as np

from kiln_fixture import Client, Kilnd, KilndTestCase

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))

KIND = "lens.nfw"
# Every default of lens.nfw spelled out (gpu/kinds/lens_nfw/kind.c).
DEFAULTS = {"z_lens": 0.3, "z_source": 1.0, "grid_size": 64, "fov_arcsec": 60, "maps": ["kappa"], "h": 0.7,
            "omega_m": 0.3}


def unique_params(**kw):
    """Parameters no other test uses (a distinct concentration), so each test starts cold."""
    unique_params.n += 1
    p = {"mass": 1e14, "concentration": 1.0 + unique_params.n * 0.013 + (os.getpid() % 997) * 1e-6}
    p.update(kw)
    return p


unique_params.n = 0


def run_async(coro, timeout=180):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def run_job(c, params, **kw):
    acc = await c.submit(KIND, params, **kw)
    assert acc["op"] == "accepted", acc
    done, parts, _ = await c.read_done(acc["job"])
    return acc, done, parts


async def wait_for(predicate, what, timeout=30):
    """Polls an asynchronous condition until it holds (the daemon's background work
    has no event to wait on); fails after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = await predicate()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


class CacheTest(KilndTestCase):
    env = {"KILN_CPU_THREADS": "2"}

    def test_repeat_is_answered_from_cache_with_defaults_filled(self):
        async def go():
            c = await self.client()
            p = unique_params()
            acc1, done1, parts1 = await run_job(c, p)
            self.assertFalse(acc1["cached"])
            self.assertEqual(acc1["state"], "queued")
            # The same job with every default spelled out is the same cache entry.
            acc2, done2, parts2 = await run_job(c, dict(DEFAULTS, **p))
            self.assertTrue(acc2["cached"], acc2)
            self.assertEqual(acc2["state"], "done")
            self.assertNotEqual(acc2["job"], acc1["job"])
            self.assertEqual(done2["result"], done1["result"])
            self.assertEqual(parts1["kappa"].tobytes(), parts2["kappa"].tobytes())
            # The cache hit is a job of its own: status and result work for its id.
            st = await c.call({"op": "status", "job": acc2["job"]})
            self.assertEqual((st["op"], st["state"]), ("status", "done"))
            await c.send({"op": "result", "job": acc2["job"]})
            done3, parts3, _ = await c.read_done(acc2["job"])
            self.assertEqual(parts3["kappa"].tobytes(), parts1["kappa"].tobytes())
            # A different parameter is a different entry.
            acc4, _, parts4 = await run_job(c, dict(p, grid_size=65))
            self.assertFalse(acc4["cached"])
            self.assertEqual(parts4["kappa"].shape, (65, 65))
            await c.close()
        self.run_async(go())

    def test_big_results_are_sent_from_the_store_whole_and_right(self):
        """Results over 1 MiB leave memory once stored and go out read from the store
        piece by piece: the first run's watchers, a cache hit (never copied out of
        the store whole), `result` of either, and the same key again all get the same
        bytes."""
        async def go():
            c = await self.client()
            p = unique_params(grid_size=512, maps=["kappa", "gamma1", "gamma2"])  # 3 MiB
            acc1, done1, parts1 = await run_job(c, p)
            self.assertFalse(acc1["cached"])
            self.assertEqual(sum(x["bytes"] for x in done1["parts"]), 3 * 512 * 512 * 4)
            self.assertNotIn("stored", done1)
            acc2, done2, parts2 = await run_job(c, p)
            self.assertTrue(acc2["cached"], acc2)
            for name in ("kappa", "gamma1", "gamma2"):
                self.assertEqual(parts1[name].shape, (512, 512))
                self.assertEqual(parts2[name].tobytes(), parts1[name].tobytes())
            for job in (acc1["job"], acc2["job"]):
                await c.send({"op": "result", "job": job})
                done3, parts3, _ = await c.read_done(job)
                self.assertEqual(done3["result"], done1["result"])
                for name in ("kappa", "gamma1", "gamma2"):
                    self.assertEqual(parts3[name].tobytes(), parts1[name].tobytes())
            await c.close()

        run_async(go())

    def test_hot_copies_answer_repeats_and_follow_the_store(self):
        # The first hit comes from the store and leaves a copy in memory; later ones
        # are answered from the copy (daemon/hotcache.h) and are jobs all the same.
        async def go():
            c = await self.client()
            p = unique_params(grid_size=48)
            s0 = (await c.call({"op": "stats"}))["cache"]
            acc1, done1, parts1 = await run_job(c, p)
            accs = [await run_job(c, p) for _ in range(3)]
            for acc, done, parts in accs:
                self.assertTrue(acc["cached"], acc)
                self.assertEqual(acc["state"], "done")
                self.assertEqual(done["result"], done1["result"])
                self.assertEqual(parts["kappa"].tobytes(), parts1["kappa"].tobytes())
                self.assertEqual(done["job"], acc["job"])
            self.assertEqual(len({a["job"] for a, _, _ in accs} | {acc1["job"]}), 4)
            hot = accs[-1][0]["job"]
            st = await c.call({"op": "status", "job": hot})
            self.assertEqual((st["op"], st["state"]), ("status", "done"))
            await c.send({"op": "result", "job": hot})
            _, parts, _ = await c.read_done(hot)
            self.assertEqual(parts["kappa"].tobytes(), parts1["kappa"].tobytes())
            listed = await c.call({"op": "list", "limit": 10})
            self.assertIn(hot, [j["job"] for j in listed["jobs"]])
            s1 = (await c.call({"op": "stats"}))["cache"]
            self.assertEqual(s1["hits"] - s0["hits"], 3)
            self.assertGreater(s1["hot_bytes"], 48 * 48 * 4, s1)
            # A purge drops the copies too: the next submission is computed, and
            # their memory goes within a tick, asked for or not.
            r = await c.call({"op": "cache.purge", "kind": KIND})
            self.assertEqual(r["op"], "ok", r)

            async def copies_gone():
                return (await c.call({"op": "stats"}))["cache"]["hot_bytes"] == 0
            await wait_for(copies_gone, "the purged copies to leave memory", timeout=10)
            acc, _, parts = await run_job(c, p)
            self.assertFalse(acc["cached"], acc)
            self.assertEqual(parts["kappa"].tobytes(), parts1["kappa"].tobytes())
            # The answered job keeps its result although its cache entry went.
            await c.send({"op": "result", "job": hot})
            _, parts, _ = await c.read_done(hot)
            self.assertEqual(parts["kappa"].tobytes(), parts1["kappa"].tobytes())
            # cache: false never takes a copy either.
            await run_job(c, p)
            acc, _, _ = await run_job(c, p, cache=False)
            self.assertFalse(acc["cached"])
            await c.close()
        self.run_async(go())

    def test_cache_false_bypasses_lookup_but_stores(self):
        async def go():
            c = await self.client()
            p = unique_params(grid_size=96)
            before = (await c.call({"op": "stats"}))["cache"]
            acc1, _, parts1 = await run_job(c, p, cache=False)
            self.assertFalse(acc1["cached"])
            acc2, done2, _ = await run_job(c, p, cache=False)
            self.assertFalse(acc2["cached"])  # no lookup: computed again
            after = (await c.call({"op": "stats"}))["cache"]
            self.assertEqual(after["misses"], before["misses"])  # bypassed lookups are not misses
            self.assertGreaterEqual(after["stored"], before["stored"] + 1)
            acc3, _, parts3 = await run_job(c, p)
            self.assertTrue(acc3["cached"])  # ... but the results were stored
            self.assertEqual(parts3["kappa"].tobytes(), parts1["kappa"].tobytes())
            await c.close()
        self.run_async(go())

    def test_six_identical_heavy_jobs_from_six_connections_run_once(self):
        async def go():
            clients = [await self.client() for _ in range(6)]
            p = unique_params(grid_size=2048, maps=["kappa", "gamma1"])
            s0 = await clients[0].call({"op": "stats"})
            accs = await asyncio.gather(*(c.submit(KIND, p) for c in clients))
            for a in accs:
                self.assertEqual(a["op"], "accepted", a)
            ids = {a["job"] for a in accs}
            self.assertEqual(len(ids), 1, accs)  # every accepted names the one job
            job = ids.pop()
            results = await asyncio.gather(*(c.read_done(job, timeout=120) for c in clients))
            ref = results[0][1]
            for done, parts, _ in results:
                self.assertEqual(done["state"], "done")
                self.assertEqual(parts["kappa"].tobytes(), ref["kappa"].tobytes())
                self.assertEqual(parts["gamma1"].tobytes(), ref["gamma1"].tobytes())
            s1 = await clients[0].call({"op": "stats"})
            self.assertEqual(s1["finished"]["done"] - s0["finished"]["done"], 1)  # one computation
            self.assertEqual(s1["cache"]["coalesced"] - s0["cache"]["coalesced"], 5)
            for c in clients:
                await c.close()
        self.run_async(go())

    def test_stats_report_cache_counters(self):
        async def go():
            c = await self.client()
            p = unique_params()
            s0 = (await c.call({"op": "stats"}))["cache"]
            await run_job(c, p)
            await run_job(c, p)
            s1 = (await c.call({"op": "stats"}))["cache"]
            for k in ("hits", "misses", "bytes", "entries", "hit_rate"):
                self.assertIn(k, s1)
            self.assertEqual(s1["hits"] - s0["hits"], 1)
            self.assertEqual(s1["misses"] - s0["misses"], 1)
            self.assertGreater(s1["bytes"], s0["bytes"])
            self.assertEqual(s1["entries"] - s0["entries"], 1)
            self.assertAlmostEqual(s1["hit_rate"], s1["hits"] / (s1["hits"] + s1["misses"]))
            await c.close()
        self.run_async(go())

    def test_cache_purge_by_kind_and_all(self):
        async def go():
            c = await self.client()
            p = unique_params()
            await run_job(c, p)
            r = await c.call({"op": "cache.purge", "kind": KIND})
            self.assertEqual(r["op"], "ok", r)
            self.assertGreaterEqual(r["purged"], 1)
            acc, _, _ = await run_job(c, p)
            self.assertFalse(acc["cached"])
            r = await c.call({"op": "cache.purge"})
            self.assertGreaterEqual(r["purged"], 1)
            self.assertEqual((await c.call({"op": "stats"}))["cache"]["entries"], 0)
            acc, _, _ = await run_job(c, p)
            self.assertFalse(acc["cached"])
            r = await c.call({"op": "cache.purge", "kind": "no.such"})
            self.assertEqual((r["op"], r["code"]), ("error", "unknown_kind"))
            await c.close()
        self.run_async(go())


class CacheRestartTest(unittest.TestCase):
    def test_cache_and_idempotency_survive_restart(self):
        k = Kilnd(env={"KILN_CPU_THREADS": "2"}).start()
        try:
            p = unique_params(grid_size=512)

            async def first():
                c = await Client.connect(k.url)
                acc, done, parts = await run_job(c, p, key="restart-key")
                await c.close()
                return acc, parts

            async def second():
                c = await Client.connect(k.url)
                acc, done, parts = await run_job(c, p)
                again = await c.submit(KIND, unique_params(), key="restart-key")
                await c.close()
                return acc, parts, again

            acc1, parts1 = run_async(first())
            self.assertEqual(k.stop(), 0)
            k.start()
            acc2, parts2, again = run_async(second())
            self.assertTrue(acc2["cached"], acc2)
            self.assertEqual(parts1["kappa"].tobytes(), parts2["kappa"].tobytes())
            self.assertEqual(again["job"], acc1["job"])
            self.assertEqual(k.stop(), 0)
        finally:
            k.cleanup()


    def test_jobs_answered_from_copies_survive_kill_9(self):
        # Their records are written behind the answer; a later op on the same
        # connection is served after them, and a crash then keeps them.
        k = Kilnd(env={"KILN_CPU_THREADS": "2", "KILN_STORE_SYNC": "full"}).start()
        try:
            p = unique_params(grid_size=40)

            async def first():
                c = await Client.connect(k.url)
                runs = [await run_job(c, p) for _ in range(4)]
                st = await c.call({"op": "status", "job": runs[-1][0]["job"]})
                self.assertEqual(st["state"], "done")
                await c.close()
                return [a["job"] for a, _, _ in runs], runs[0][2]

            async def second(ids, parts0):
                c = await Client.connect(k.url)
                for job in ids:
                    await c.send({"op": "result", "job": job})
                    done, parts, _ = await c.read_done(job)
                    self.assertEqual(done["state"], "done")
                    self.assertEqual(parts["kappa"].tobytes(), parts0["kappa"].tobytes())
                await c.close()

            ids, parts0 = run_async(first())
            k.kill()
            k.start()
            run_async(second(ids, parts0))
            self.assertEqual(k.stop(), 0)
        finally:
            k.cleanup()


def sha256_hex(token):
    return hashlib.sha256(token.encode()).hexdigest()


class IdempotencyTest(unittest.TestCase):
    ALICE, BOB, EVE = "alice-token", "bob-token", "eve-token"

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_AUTH_REQUIRED": "true", "KILN_CPU_THREADS": "2"})
        with open(os.path.join(cls.kilnd.tmp, "tokens"), "w") as f:
            f.write(f"alice acme submit {sha256_hex(cls.ALICE)}\n")
            f.write(f"bob globex submit {sha256_hex(cls.BOB)}\n")
            f.write(f"eve acme admin {sha256_hex(cls.EVE)}\n")
        cls.kilnd.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.kilnd.stop()
        cls.kilnd.cleanup()
        assert code == 0, code

    def test_key_reused_returns_the_original_job_per_tenant(self):
        async def go():
            a = await Client.connect(self.kilnd.url, token=self.ALICE)
            b = await Client.connect(self.kilnd.url, token=self.BOB)
            acc1, done1, _ = await run_job(a, unique_params(), key="order-42")
            # Same key, other parameters: the original job, and its result.
            acc2 = await a.submit(KIND, unique_params(grid_size=32), key="order-42")
            self.assertEqual(acc2["op"], "accepted", acc2)
            self.assertEqual(acc2["job"], acc1["job"])
            done2, _, _ = await a.read_done(acc1["job"])
            self.assertEqual(done2["result"], done1["result"])
            # Another tenant's same key is another job.
            acc3, _, _ = await run_job(b, unique_params(), key="order-42")
            self.assertNotEqual(acc3["job"], acc1["job"])
            # Bob cannot see Alice's job.
            st = await b.call({"op": "status", "job": acc1["job"]})
            self.assertEqual(st.get("code"), "not_found")
            # Resubmitting while the original is still running also names it.
            acc4 = await a.submit(KIND, unique_params(grid_size=1024), key="slow-key")
            acc5 = await a.submit(KIND, unique_params(), key="slow-key")
            self.assertEqual(acc5["job"], acc4["job"])
            await a.read_done(acc4["job"], timeout=120)
            await a.close()
            await b.close()
        run_async(go())

    def test_each_tenant_has_its_own_cache(self):
        """A tenant is never answered from another's result, nor told that one
        was computed: the same params are computed again for the other tenant
        (the same bytes), then cached for it."""
        async def go():
            a = await Client.connect(self.kilnd.url, token=self.ALICE)
            b = await Client.connect(self.kilnd.url, token=self.BOB)
            p = unique_params()
            acc1, _, parts1 = await run_job(a, p)
            acc2, _, parts2 = await run_job(b, p)
            acc3, _, _ = await run_job(b, p)
            acc4, _, _ = await run_job(a, p)
            self.assertFalse(acc2["cached"], acc2)
            self.assertTrue(acc3["cached"], acc3)
            self.assertTrue(acc4["cached"], acc4)
            self.assertNotEqual(acc2["job"], acc1["job"])
            self.assertEqual(parts1["kappa"].tobytes(), parts2["kappa"].tobytes())
            st = await a.call({"op": "status", "job": acc2["job"]})
            self.assertEqual(st.get("code"), "not_found")
            await a.close()
            await b.close()
        run_async(go())

    def test_cache_purge_needs_admin_and_takes_only_its_tenants_entries(self):
        async def go():
            a = await Client.connect(self.kilnd.url, token=self.ALICE)
            b = await Client.connect(self.kilnd.url, token=self.BOB)
            p = unique_params()
            await run_job(a, p)
            await run_job(b, p)
            r = await a.call({"op": "cache.purge"})
            self.assertEqual((r["op"], r["code"]), ("error", "forbidden"))
            e = await Client.connect(self.kilnd.url, token=self.EVE)  # acme's admin
            r = await e.call({"op": "cache.purge"})
            self.assertEqual(r["op"], "ok", r)
            self.assertGreaterEqual(r["purged"], 1)
            self.assertFalse((await run_job(a, p))[0]["cached"])
            self.assertTrue((await run_job(b, p))[0]["cached"])  # globex's entry stays
            await a.close()
            await b.close()
            await e.close()
        run_async(go())


class RetentionTest(KilndTestCase):
    env = {"KILN_JOBS_RETAIN_S": "1", "KILN_CPU_THREADS": "2"}

    def test_finished_jobs_are_purged_and_cache_entries_outlive_them(self):
        async def go():
            c = await self.client()
            p = unique_params(grid_size=128)
            acc, _, parts = await run_job(c, p, key="retained")

            async def gone():
                st = await c.call({"op": "status", "job": acc["job"]})
                return st.get("code") == "not_found"
            await wait_for(gone, "the finished job to be purged")
            self.assertGreaterEqual((await c.call({"op": "stats"}))["cache"]["jobs_purged"], 1)
            r = await c.call({"op": "result", "job": acc["job"]})
            self.assertEqual(r.get("code"), "not_found")
            # The cached result belongs to the cache, not to the purged job.
            acc2, _, parts2 = await run_job(c, p)
            self.assertTrue(acc2["cached"])
            self.assertEqual(parts2["kappa"].tobytes(), parts["kappa"].tobytes())
            # The purged job's idempotency key is free again.
            acc3 = await c.submit(KIND, unique_params(), key="retained")
            self.assertNotEqual(acc3["job"], acc["job"])
            await c.read_done(acc3["job"])
            await c.close()
        self.run_async(go())


class TtlAndSizeTest(KilndTestCase):
    env = {"KILN_CACHE_TTL_S": "1", "KILN_CACHE_MAX_BYTES": "1MiB", "KILN_CPU_THREADS": "2"}

    def test_entries_expire_after_ttl(self):
        async def go():
            c = await self.client()
            p = unique_params(grid_size=32)
            s0 = (await c.call({"op": "stats"}))["cache"]
            for _ in range(3):  # computed, then hits: the last from a copy in memory
                await run_job(c, p)
            self.assertGreater((await c.call({"op": "stats"}))["cache"]["hot_bytes"], 0)

            async def expired():
                return (await c.call({"op": "stats"}))["cache"]["expired"] > s0["expired"]
            await wait_for(expired, "the cache entry to expire")

            async def copies_gone():  # the copy went with it, unasked for
                return (await c.call({"op": "stats"}))["cache"]["hot_bytes"] == 0
            await wait_for(copies_gone, "the expired copy to leave memory", timeout=10)
            acc, _, _ = await run_job(c, p)
            self.assertFalse(acc["cached"])
            await c.close()
        self.run_async(go())

    def test_cache_stays_within_max_bytes_evicting_lru(self):
        async def go():
            c = await self.client()
            # 256 KiB of kappa each: five do not fit in 1 MiB.
            ps = [unique_params(grid_size=256) for _ in range(5)]
            await run_job(c, ps[0])
            await run_job(c, ps[0])  # a hit: leaves a copy in memory, which must go with the entry
            for p in ps:
                await run_job(c, p)
                st = (await c.call({"op": "stats"}))["cache"]
                self.assertLessEqual(st["bytes"], 1 << 20)
            self.assertGreaterEqual(st["evicted"], 1)
            acc, _, _ = await run_job(c, ps[-1])  # the most recent survived
            self.assertTrue(acc["cached"])
            acc, _, _ = await run_job(c, ps[0])  # the least recently used went
            self.assertFalse(acc["cached"])
            await c.close()
        self.run_async(go())


class ShortSoakTest(unittest.TestCase):
    """tests/bench/soak.py for 20 s: small map, small cache, short TTL and retention."""

    def test_store_stays_within_bounds(self):
        import soak
        fig = soak.run(20, connections=3)
        self.assertEqual(fig["errors"], 0, fig)
        self.assertEqual(fig["exit_code"], 0, fig)
        self.assertEqual(fig["log_errors"], [], fig)
        self.assertGreater(fig["jobs"], 20, fig)
        self.assertGreater(fig["cache_final"]["jobs_purged"], 0, fig)
        self.assertLessEqual(fig["cache_bytes_max"], fig["cache_max_bytes"], fig)
        self.assertLessEqual(fig["store_file_max_bytes"], fig["store_map_bytes"], fig)


if __name__ == "__main__":
    unittest.main()
