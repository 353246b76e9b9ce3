"""The packaged kilnd, run from the unpacked .deb with the packaged
/etc/kiln/kiln.conf, refuses clients without a token, serves the packaged web UI and
runs a real job for a token made by the packaged kilnctl."""
import asyncio
import unittest
import urllib.request

import numpy as np

from pkg_fixture import PackagedKilnd, Unpacked, run  # first: puts tests/integration on sys.path
from kiln_fixture import Client  # noqa: E402


class PackagedDaemonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pkg = Unpacked()
        cls.k = PackagedKilnd(cls.pkg)
        cls.token = cls.k.new_token("admin", "t1", "admin")
        cls.k.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.k.stop()
        log = cls.k.read_log()
        cls.k.cleanup()
        cls.pkg.cleanup()
        if code != 0:
            raise AssertionError(f"packaged kilnd exited with {code} on SIGTERM:\n{log}")

    def test_packaged_config_is_the_one_in_effect(self):
        env = self.k.environment()
        del env["KILN_SERVER_LISTEN"]
        r = run(self.pkg.kilnd, "--config", self.pkg.config, "--print-config", env=env)
        listen = [l for l in r.stdout.splitlines() if l.startswith("listen")]
        required = [l for l in r.stdout.splitlines() if l.startswith("required")]
        self.assertTrue(listen and "0.0.0.0:8080" in listen[0] and "kiln.conf" in listen[0], r.stdout)
        self.assertTrue(required and "true" in required[0] and "kiln.conf" in required[0], r.stdout)
        run(self.pkg.kilnd, "--config", self.pkg.config, "--check-config", env=env)

    def test_web_ui_from_the_package(self):
        with urllib.request.urlopen(self.k.http + "/", timeout=5) as r:
            body = r.read()
        with open(self.pkg.path("/usr/share/kiln/web_ui/index.html"), "rb") as f:
            self.assertEqual(body, f.read())

    def test_job_with_a_token(self):
        async def go():
            anon = await Client.connect(self.k.url, hello=False)
            denied = await anon.call({"op": "submit", "kind": "lens.nfw", "params": {"mass": 1e14}})
            await anon.close()
            c = await Client.connect(self.k.url, token=self.token)
            done, parts = await c.run("lens.nfw", {"mass": 1e14, "concentration": 5, "grid_size": 64})
            await c.close()
            return denied, done, parts

        denied, done, parts = asyncio.run(asyncio.wait_for(go(), 120))
        self.assertEqual(denied.get("code"), "unauthorized", denied)
        self.assertEqual(done["state"], "done", done)
        self.assertTrue(parts)
        for arr in parts.values():
            self.assertEqual(arr.shape[:2], (64, 64))
            self.assertTrue(np.all(np.isfinite(arr)))


if __name__ == "__main__":
    unittest.main()
