"""Upgrade on the same state: the packaged kilnd (from this build's .deb) finishes one
job and is stopped like an upgrade stops it (SIGTERM) with one job running and two
queued; the new kilnd (built from the tree; no previous release exists yet) reads
that state: every job is there, the finished result is served, the rest finish."""
import asyncio
import os
import unittest

from pkg_fixture import PackagedKilnd, Unpacked  # first: puts tests/integration on sys.path
from kiln_fixture import Client  # noqa: E402

NEW_KILND = os.environ.get("KILND", "build/daemon/kilnd")


class UpgradeTest(unittest.TestCase):
    def test_state_survives_upgrade_without_losing_a_job(self):
        pkg = Unpacked()
        old = PackagedKilnd(pkg, env={"KILN_CPU_THREADS": "1"})
        token = old.new_token("admin", "t1", "admin")
        new = None
        try:
            old.start()

            async def before():
                c = await Client.connect(old.url, token=token)
                done, _ = await c.run("lens.nfw", {"mass": 1e14, "concentration": 5, "grid_size": 64})
                running = await c.submit("lens.nfw", {"mass": 2e14, "concentration": 4, "grid_size": 4096,
                                                      "maps": ["kappa"]})
                while True:  # its first progress proves it runs; with one thread the next two wait
                    m = await c.recv(60)
                    if isinstance(m, dict) and m.get("op") == "progress" and m["job"] == running["job"]:
                        break
                queued = [await c.submit("lens.nfw", {"mass": 3e14 + i * 1e13, "concentration": 5, "grid_size": 64})
                          for i in range(2)]
                await c.close()
                return done["job"], running["job"], [q["job"] for q in queued], [q["state"] for q in queued]

            finished, running, queued, states = asyncio.run(asyncio.wait_for(before(), 120))
            self.assertEqual(states, ["queued", "queued"])
            self.assertEqual(old.stop(), 0, old.read_log())
            self.assertIn("queued stay in the store", old.read_log())

            new = PackagedKilnd(pkg, kilnd=NEW_KILND, state_dir=old.state)
            new.tokens = old.tokens
            new.start()

            async def after():
                c = await Client.connect(new.url, token=token)
                listed = await c.call({"op": "list", "limit": 100})
                for job in [running] + queued:
                    await c.call({"op": "watch", "job": job})
                done = {}
                while len(done) < 3:
                    m, _, _ = await c.read_done(None, timeout=120)
                    done[m["job"]] = m["state"]
                old_result = await c.call({"op": "status", "job": finished})
                await c.close()
                return listed, done, old_result

            listed, done, old_result = asyncio.run(asyncio.wait_for(after(), 180))
            self.assertEqual({j["job"] for j in listed["jobs"]}, {finished, running, *queued}, listed)
            self.assertEqual(done, {j: "done" for j in [running] + queued})
            self.assertEqual(old_result["state"], "done", old_result)
            self.assertEqual(new.stop(), 0, new.read_log())
        finally:
            old.cleanup()
            if new:
                new.cleanup()
            pkg.cleanup()


if __name__ == "__main__":
    unittest.main()
