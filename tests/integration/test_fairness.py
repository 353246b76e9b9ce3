"""Fair share between tenants: within a priority, queued jobs are served round-robin
between tenants, so one tenant's backlog cannot push another tenant's job to the
back of the queue."""
import asyncio
import hashlib
import os
import unittest

from kiln_fixture import Client, Kilnd

TOKENS = {"a-token": ("alice", "acme", "submit"), "b-token": ("bob", "other", "submit")}
SMALL = {"concentration": 5, "grid_size": 128}


class FairShareTest(unittest.TestCase):
    def setUp(self):
        self.kilnd = Kilnd(env={"KILN_AUTH_REQUIRED": "true", "KILN_CPU_THREADS": "1",
                                "KILN_BATCH_LENS_NFW_MAX_BATCH": "4"})
        with open(os.path.join(self.kilnd.tmp, "tokens"), "w") as f:
            for tok, (name, tenant, role) in TOKENS.items():
                f.write(f"{name} {tenant} {role} {hashlib.sha256(tok.encode()).hexdigest()}\n")
        self.kilnd.start()

    def tearDown(self):
        code = self.kilnd.stop()
        log = self.kilnd.read_log()
        self.kilnd.cleanup()
        self.assertEqual(code, 0, log)

    def test_another_tenants_job_is_not_stuck_behind_a_backlog(self):
        async def main():
            a = await Client.connect(self.kilnd.url, token="a-token")
            b = await Client.connect(self.kilnd.url, token="b-token")
            # Hold the only worker, so everything below waits in the queue.
            blocker = await a.submit("lens.nfw", {"mass": 1e14, "concentration": 5, "grid_size": 4096,
                                                  "maps": ["kappa", "gamma1", "gamma2", "mu", "psi"]})
            backlog = []
            for i in range(40):
                acc = await a.submit("lens.nfw", dict(SMALL, mass=1e13 * (1 + i)))
                backlog.append(acc["job"])
            mine = await b.submit("lens.nfw", dict(SMALL, mass=7.77e13))
            await b.read_done(mine["job"], timeout=120)
            pending = set(backlog) | {blocker["job"]}
            while pending:
                done, _, _ = await a.read_done(None, timeout=120)
                pending.discard(done["job"])
            # Which of A's backlog finished before B's job, by the daemon's finish times.
            b_finished = (await b.call({"op": "status", "job": mine["job"]}))["finished"]
            before = 0
            for job in backlog:
                if (await a.call({"op": "status", "job": job}))["finished"] < b_finished:
                    before += 1
            await a.close()
            await b.close()
            return before

        before = asyncio.run(asyncio.wait_for(main(), 180))
        # First come, first served would finish all 40 before B's job; round-robin
        # takes B's into the first batch after the blocker.
        self.assertLessEqual(before, 4, f"{before} of tenant A's 40 queued jobs finished before tenant B's one")


if __name__ == "__main__":
    unittest.main()
