"""Backends, dynamic batching and device failure handling (SPEC 2.2, 3, 7).

kilnd without the CUDA plugin, with the plugin but no usable GPU (or with one, on a
GPU machine), and with the plugin's simulated faulty device (KILN_CUDA_FAULT=sim, a
test-only switch documented in gpu/cuda/fault.h) must all serve every kind, batch
small jobs together and never lose a job.

KILN_TEST_PLUGIN_DIR (set by CTest) is the build folder holding libkiln-cuda.so; the
plugin tests are skipped, not passed, when it was not built (no nvcc).
"""
import asyncio
import json
import os
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from kiln_fixture import Client, Kilnd

PLUGIN_DIR = os.environ.get("KILN_TEST_PLUGIN_DIR", "")
PLUGIN = os.path.join(PLUGIN_DIR, "libkiln-cuda.so") if PLUGIN_DIR else ""
EMPTY_DIR = tempfile.mkdtemp(prefix="kiln-noplugin-")

NFW = {"mass": 1e14, "concentration": 5, "grid_size": 32, "maps": ["kappa", "alpha_x", "mu"]}
RAY = {"mass": 1e15, "concentration": 5, "grid_size": 32, "fov_arcsec": 120,
       "source": {"x_arcsec": 1.0, "y_arcsec": 0.5, "sigma_arcsec": 2.0}, "supersample": 2}


def readyz(k):
    try:
        with urllib.request.urlopen(k.http + "/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def devices(body):
    return {d["name"]: d for d in body["devices"] for d in d.get("devices", [])}


def need_plugin(test):
    if not PLUGIN or not os.path.exists(PLUGIN):
        test.skipTest("libkiln-cuda.so was not built (no nvcc)")


class Daemon:
    """Starts one kilnd for a with-block."""

    def __init__(self, **env):
        self.k = Kilnd(env={k: str(v) for k, v in env.items()})

    def __enter__(self):
        return self.k.start()

    def __exit__(self, *exc):
        code = self.k.stop()
        log = self.k.read_log()
        self.k.cleanup()
        if code != 0 and exc[0] is None:
            raise AssertionError(f"kilnd exited with {code}:\n{log}")


async def submit_all(url, jobs, **kw):
    """Submits every (kind, params) at once on one connection, then reads every done.
    Returns the done messages (with parts) in submission order."""
    c = await Client.connect(url)
    try:
        for i, (kind, params) in enumerate(jobs):
            await c.send({"op": "submit", "kind": kind, "params": params, "ref": f"j{i}", **kw})
        ids, dones, order = {}, {}, []
        while len(dones) < len(jobs):
            m = await c.recv(60)
            if isinstance(m, bytes):
                continue
            if m.get("op") == "accepted":
                ids[m["ref"]] = m["job"]
            elif m.get("op") == "error":
                raise AssertionError(m)
            elif m.get("op") == "done":
                parts = {}
                for p in m.get("parts", []):
                    from kiln_fixture import decode_frame
                    while True:
                        f = await c.recv(60)
                        if isinstance(f, bytes):
                            break
                    name, arr = decode_frame(f)
                    parts[name] = arr
                m["_parts"] = parts
                dones[m["job"]] = m
                order.append(m["job"])
        return [dones[ids[f"j{i}"]] for i in range(len(jobs))], order, ids
    finally:
        await c.close()


def run(coro, timeout=180):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class ServesEveryKind(unittest.TestCase):
    """The same jobs give the same answers with and without the plugin."""

    def serve(self, plugin_dir):
        with Daemon(KILN_PLUGIN_DIR=plugin_dir) as k:
            status, body = readyz(k)
            self.assertEqual(status, 200, body)
            self.assertIn("cpu", body["backends"])
            self.assertIn("cpu", devices(body))
            dones, _, _ = run(submit_all(k.url, [("lens.nfw", NFW), ("lens.raytrace", RAY)]))
            for d in dones:
                self.assertEqual(d["state"], "done", d)
                self.assertGreaterEqual(d["batch"], 1)
                self.assertTrue(d["backend"] == "cpu" or d["backend"].startswith("cuda:"), d)
            return body, dones

    def test_without_the_plugin_the_cpu_serves_every_kind(self):
        body, dones = self.serve(EMPTY_DIR)
        self.assertEqual(body["backends"], ["cpu"])
        self.assertTrue(all(d["backend"] == "cpu" for d in dones))
        img = dones[1]["_parts"]["image"]
        self.assertEqual(img.shape, (32, 32))
        self.assertGreater(float(img.max()), 0.0)
        self.assertIsNotNone(dones[1]["result"]["theta_e_arcsec"])

    def test_with_the_plugin_every_kind_matches_the_cpu_result(self):
        need_plugin(self)
        body, dones = self.serve(PLUGIN_DIR)
        _, ref = self.serve(EMPTY_DIR)
        gpus = [n for n, d in devices(body).items() if n.startswith("cuda:") and d["state"] == "in_service"]
        if not gpus:
            # No driver or no GPU: the plugin reported no device and the CPU serves.
            self.assertEqual(body["backends"], ["cpu"])
        for d, r in zip(dones, ref):
            for name, arr in r["_parts"].items():
                np.testing.assert_allclose(d["_parts"][name], arr, rtol=1e-5, atol=1e-6, err_msg=name)
            for name, v in r["result"].items():
                self.assertAlmostEqual(d["result"][name], v, delta=1e-9 * abs(v))


class DynamicBatching(unittest.TestCase):
    def test_four_hundred_small_jobs_run_in_batches(self):
        env = dict(KILN_PLUGIN_DIR=EMPTY_DIR, KILN_CPU_THREADS=2, KILN_BATCH_LENS_NFW_MAX_BATCH=64,
                   KILN_BATCH_LENS_NFW_MAX_DELAY_US=10000)
        with Daemon(**env) as k:
            jobs = [("lens.nfw", {"mass": 1e13 * (1 + i / 400), "concentration": 5, "grid_size": 16})
                    for i in range(400)]
            dones, _, _ = run(submit_all(k.url, jobs))
        self.assertTrue(all(d["state"] == "done" for d in dones))
        sizes = [d["batch"] for d in dones]
        batches = sum(1.0 / s for s in sizes)  # each batch of n contributes n * 1/n
        batched = sum(1 for s in sizes if s > 1)
        self.assertLessEqual(max(sizes), 64)
        self.assertGreater(batched, 300, f"only {batched} of 400 jobs ran in a batch of more than one")
        self.assertLess(batches, 100, f"{batches:.0f} launches for 400 jobs")

    def test_stats_say_how_many_batches_run_a_second(self):
        # SPEC §2.3: stats gives batches/s (over the last second), beside the totals.
        with Daemon(KILN_PLUGIN_DIR=EMPTY_DIR, KILN_CPU_THREADS=1) as k:
            async def go():
                c = await Client.connect(k.url)
                rates, i = [], 0
                end = time.monotonic() + 3.5
                while time.monotonic() < end:
                    done, _ = await c.run("lens.nfw", {"mass": 1e13 * (1 + i / 1000), "concentration": 5,
                                                       "grid_size": 16})
                    self.assertEqual(done["state"], "done", done)
                    i += 1
                    if i % 10 == 0:
                        rates.append((await c.call({"op": "stats"}))["batches"]["per_s"])
                end = time.monotonic() + 10  # until a whole second without a batch has been counted
                while (idle := (await c.call({"op": "stats"}))["batches"])["per_s"] != 0 and time.monotonic() < end:
                    await asyncio.sleep(0.1)
                await c.close()
                return i, rates, idle
            n, rates, idle = run(go())
        # One job at a time: each a batch of one, n of them in 3.5 s.
        self.assertGreater(max(rates), 0, rates)
        self.assertLessEqual(max(rates), n, rates)
        self.assertEqual(idle["per_s"], 0)
        self.assertGreaterEqual(idle["count"], n)

    def test_strict_priority_holds_with_batching(self):
        env = dict(KILN_PLUGIN_DIR=EMPTY_DIR, KILN_CPU_THREADS=1, KILN_BATCH_LENS_NFW_MAX_DELAY_US=5000)
        with Daemon(**env) as k:
            async def go():
                c = await Client.connect(k.url)
                blocker = dict(RAY, grid_size=512, supersample=8)
                await c.send({"op": "submit", "kind": "lens.raytrace", "params": blocker, "ref": "b"})
                for i in range(6):
                    await c.send({"op": "submit", "kind": "lens.nfw", "priority": "low", "ref": f"l{i}",
                                  "params": {"mass": 2e13 + i * 1e11, "concentration": 5, "grid_size": 16}})
                for i in range(6):
                    await c.send({"op": "submit", "kind": "lens.nfw", "priority": "high", "ref": f"h{i}",
                                  "params": {"mass": 3e13 + i * 1e11, "concentration": 5, "grid_size": 16}})
                ids, order = {}, []
                while len(order) < 13:
                    m = await c.recv(60)
                    if isinstance(m, bytes):
                        continue
                    if m.get("op") == "accepted":
                        ids[m["job"]] = m["ref"]
                    elif m.get("op") == "done":
                        self.assertEqual(m["state"], "done", m)
                        order.append((ids.get(m["job"]), m["batch"]))
                await c.close()
                return order
            order = run(go())
        refs = [r for r, _ in order if r != "b"]
        self.assertEqual(sorted(refs[:6]), [f"h{i}" for i in range(6)], order)
        self.assertEqual(sorted(refs[6:]), [f"l{i}" for i in range(6)], order)
        self.assertTrue(any(b > 1 for r, b in order if r.startswith("h")), order)

    def test_a_deadline_ends_a_job_inside_a_busy_batch(self):
        env = dict(KILN_PLUGIN_DIR=EMPTY_DIR, KILN_CPU_THREADS=1, KILN_BATCH_LENS_RAYTRACE_MAX_DELAY_US=200000,
                   KILN_BATCH_LENS_RAYTRACE_MAX_BATCH=2)
        with Daemon(**env) as k:
            async def go():
                c = await Client.connect(k.url)
                big = dict(RAY, grid_size=1024, supersample=8)
                small = dict(RAY, grid_size=16)
                await c.send({"op": "submit", "kind": "lens.raytrace", "params": big, "ref": "big"})
                await c.send({"op": "submit", "kind": "lens.raytrace", "params": small, "ref": "small",
                              "timeout_ms": 400})
                ids, got = {}, []
                while len(got) < 2:
                    m = await c.recv(120)
                    if isinstance(m, bytes):
                        continue
                    if m.get("op") == "accepted":
                        ids[m["job"]] = m["ref"]
                    elif m.get("op") == "done":
                        got.append((ids[m["job"]], m, time.monotonic()))
                await c.close()
                return got
            got = run(go())
        (first, m1, t1), (second, m2, t2) = got
        self.assertEqual(first, "small", got)
        self.assertEqual(m1["state"], "expired", m1)
        self.assertEqual(m1["error"]["code"], "timeout", m1)
        self.assertEqual(m2["state"], "done", m2)
        self.assertEqual(m2["batch"], 2, "the two jobs were not batched together")


class DeviceFailure(unittest.TestCase):
    """KILN_CUDA_FAULT=sim: a simulated device that fails every batch it takes."""

    def setUp(self):
        need_plugin(self)

    def jobs(self, n, base):
        return [("lens.nfw", {"mass": base * (1 + i / 100), "concentration": 5, "grid_size": 16}) for i in range(n)]

    def test_failed_batches_are_retried_on_the_cpu_and_no_job_is_lost(self):
        env = dict(KILN_PLUGIN_DIR=PLUGIN_DIR, KILN_CUDA_FAULT="sim,probe-ms=600000", KILN_CPU_THREADS=2)
        with Daemon(**env) as k:
            status, body = readyz(k)
            self.assertEqual(status, 200)
            self.assertEqual(body["backends"][0], "cuda")
            self.assertEqual(devices(body)["cuda:sim0"]["state"], "in_service")
            dones, _, _ = run(submit_all(k.url, self.jobs(60, 4e13)))
            status, body = readyz(k)
        self.assertEqual([d["state"] for d in dones], ["done"] * 60)
        self.assertTrue(all(d["backend"] == "cpu" for d in dones), {d["backend"] for d in dones})
        sim = devices(body)["cuda:sim0"]
        self.assertEqual(sim["state"], "out_of_service", sim)
        self.assertGreaterEqual(sim["failures"], 1)
        self.assertEqual(status, 200)  # the CPU is still up

    def test_an_out_of_service_device_is_probed_again(self):
        env = dict(KILN_PLUGIN_DIR=PLUGIN_DIR, KILN_CUDA_FAULT="sim,probe-ms=50", KILN_CPU_THREADS=2)
        with Daemon(**env) as k:
            dones, _, _ = run(submit_all(k.url, self.jobs(10, 5e13)))
            self.assertTrue(all(d["state"] == "done" for d in dones))
            end = time.monotonic() + 20
            while time.monotonic() < end:
                sim = devices(readyz(k)[1])["cuda:sim0"]
                if sim["probes"] >= 1 and sim["state"] == "in_service":
                    break
                time.sleep(0.05)
            self.assertGreaterEqual(sim["probes"], 1, sim)
            self.assertEqual(sim["state"], "in_service", sim)
            # Back in service, it takes (and fails) a batch again; still no job lost.
            dones, _, _ = run(submit_all(k.url, self.jobs(10, 6e13)))
            self.assertTrue(all(d["state"] == "done" and d["backend"] == "cpu" for d in dones))
            self.assertGreaterEqual(devices(readyz(k)[1])["cuda:sim0"]["failures"], 2)

    def test_with_gpu_backend_cuda_jobs_fail_unavailable(self):
        env = dict(KILN_PLUGIN_DIR=PLUGIN_DIR, KILN_CUDA_FAULT="sim,probe-ms=600000", KILN_GPU_BACKEND="cuda")
        with Daemon(**env) as k:
            self.assertEqual(readyz(k)[1]["backends"], ["cuda"])
            dones, _, _ = run(submit_all(k.url, self.jobs(20, 7e13)))
            status, body = readyz(k)
        self.assertEqual(len(dones), 20)
        for d in dones:
            self.assertEqual(d["state"], "failed", d)
            self.assertEqual(d["error"]["code"], "unavailable", d)
        self.assertEqual(status, 503, body)  # no backend is up
        self.assertEqual(devices(body)["cuda:sim0"]["state"], "out_of_service")


if __name__ == "__main__":
    unittest.main()
