"""The WebSocket protocol of SPEC §2 and the HTTP endpoints of SPEC §3, as a client
that knows only the SPEC sees them: the session, the job ops and their replies, job
states (cancelled, expired), priorities, listing, and big results next to small jobs.

kilnd runs one CPU worker here (KILN_CPU_THREADS=1), so a long "blocker" job holds
the worker while a test queues others behind it; every test releases its blocker.
"""
import datetime
import itertools
import json
import os
import re
import time
import unittest
import urllib.request

import numpy as np

from kiln_fixture import WEB_ROOT, Client, KilndTestCase, decode_frame, done_of, wait_for

KIND = "lens.nfw"
ALL_MAPS = ["kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi"]
SCALARS = {"r200_kpc", "r_s_kpc", "rho_s_msun_kpc3", "sigma_cr_msun_kpc2", "kappa_s", "theta_s_arcsec",
           "d_l_mpc", "d_s_mpc", "d_ls_mpc", "theta_e_arcsec"}
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FINAL = {"done", "failed", "cancelled", "expired"}

# A job that keeps the single worker busy for seconds (it is always cancelled).
BLOCKER = {"concentration": 5, "grid_size": 8192, "maps": ALL_MAPS}

_masses = itertools.count(1)


def fresh_mass():
    """A mass no other job of this run used, so no two jobs share parameters."""
    return 1e14 * (1 + next(_masses) * 1e-4)


def small(**kw):
    p = {"mass": fresh_mass(), "concentration": 5, "grid_size": 16}
    p.update(kw)
    return p


def parse_iso(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))




async def read_parts(c, done, timeout=60):
    """The binary frames that follow `done`, in order, as (header, array)."""
    out = []
    for _ in done.get("parts", []):
        f = await c.recv(timeout)
        assert isinstance(f, bytes), f
        out.append(decode_frame(f))
    return out


class ProtocolTest(KilndTestCase):
    env = {"KILN_CPU_THREADS": "1"}

    # ---- helpers ----

    async def start_blocker(self, c):
        """Submits a long job on c and returns its id once it is running (its first
        progress message)."""
        acc = await c.submit(KIND, dict(BLOCKER, mass=fresh_mass()))
        self.assertEqual(acc["op"], "accepted", acc)
        await wait_for(c, lambda m: m.get("op") == "progress" and m["job"] == acc["job"])
        return acc["job"]

    async def stop_blocker(self, c, job):
        r = await c.call({"op": "cancel", "job": job})
        self.assertEqual(r["op"], "ok", r)
        done = await wait_for(c, done_of(job))
        self.assertEqual(done["state"], "cancelled", done)

    async def submit_ok(self, c, params, **kw):
        acc = await c.submit(KIND, params, **kw)
        self.assertEqual(acc["op"], "accepted", acc)
        return acc["job"]

    # ---- the session ----

    def test_welcome_names_server_protocol_tenant_role_kinds_and_limits(self):
        async def go():
            c = await self.client(hello=False)
            w = await c.call({"op": "hello", "client": "kiln-tests/1"})
            await c.close()
            return w

        w = self.run_async(go())
        self.assertEqual(w["op"], "welcome")
        self.assertRegex(w["server"], r"^kiln/\d+\.\d+\.\d+")
        self.assertEqual(w["protocol"], 1)
        self.assertIsInstance(w["tenant"], str)
        self.assertTrue(w["tenant"])
        self.assertIn(w["role"], {"read", "submit", "writer", "admin"})
        self.assertIn(KIND, w["kinds"])
        self.assertIsInstance(w["limits"], dict)
        self.assertEqual(w["ref"], 1)

    def test_client_naming_no_subprotocol_is_served(self):
        async def go():
            c = await self.client(subprotocol=None)
            try:
                self.assertIsNone(c.ws.subprotocol)
                return await c.run(KIND, small())
            finally:
                await c.close()

        done, parts = self.run_async(go())
        self.assertEqual(done["state"], "done")
        self.assertEqual(parts["kappa"].shape, (16, 16))

    # ---- submit, done, parts ----

    def test_accepted_echoes_a_ref_of_any_json_type_and_length(self):
        refs = [7, -9007199254740993, 0.25, "plain", 'quote " back \\ slash \n é', {"a": [1, None, True]},
                ["x"], "r" * 500]

        async def go():
            c = await self.client()
            try:
                return [await c.call({"op": "submit", "kind": KIND, "params": small(grid_size=8), "ref": r,
                                      "watch": False}) for r in refs]
            finally:
                await c.close()

        for r, acc in zip(refs, self.run_async(go())):
            self.assertEqual(acc["op"], "accepted", acc)
            self.assertEqual(acc["ref"], r)
            self.assertRegex(acc["job"], UUID7)

    def test_submit_is_accepted_then_done_with_scalars_and_parts_in_order(self):
        maps = ["psi", "kappa", "gamma2"]
        n = 24

        async def go():
            c = await self.client()
            try:
                acc = await c.call({"op": "submit", "kind": KIND, "params": small(grid_size=n, maps=maps),
                                    "ref": "my-ref"})
                done = await wait_for(c, done_of(acc["job"]))
                frames = await read_parts(c, done)
                return acc, done, frames
            finally:
                await c.close()

        acc, done, frames = self.run_async(go())
        self.assertEqual(acc["op"], "accepted")
        self.assertLessEqual(set(acc), {"op", "job", "state", "cached", "ref"})
        self.assertEqual(acc["ref"], "my-ref")
        self.assertRegex(acc["job"], UUID7)
        self.assertIn(acc["state"], {"queued", "done"})
        self.assertIsInstance(acc["cached"], bool)

        self.assertEqual(done["ref"], "my-ref")
        self.assertEqual(done["state"], "done")
        self.assertEqual(set(done["result"]), SCALARS)
        for k, v in done["result"].items():
            if k == "theta_e_arcsec" and v is None:
                continue
            self.assertIsInstance(v, float, k)
            self.assertGreater(v, 0, k)
        self.assertEqual(done["backend"], "cpu")
        self.assertGreaterEqual(done["batch"], 1)
        self.assertGreaterEqual(done["ms"]["queue"], 0)
        self.assertGreaterEqual(done["ms"]["run"], 0)
        # A set of maps: any order of parts, but frames follow the listed order.
        self.assertEqual(sorted(p["name"] for p in done["parts"]), sorted(maps))
        for p in done["parts"]:
            self.assertEqual(p["dtype"], "f32")
            self.assertEqual(p["shape"], [n, n])
            self.assertEqual(p["bytes"], n * n * 4)
        self.assertEqual([name for name, _ in frames], [p["name"] for p in done["parts"]])
        for name, arr in frames:
            self.assertEqual(arr.dtype, np.float32)
            self.assertEqual(arr.shape, (n, n))
            self.assertTrue(np.isfinite(arr).all(), name)

    def test_part_frame_header_names_the_job_dtype_and_shape(self):
        async def go():
            c = await self.client()
            try:
                job = await self.submit_ok(c, small(grid_size=8))
                await wait_for(c, done_of(job))
                frame = await c.recv()
                return job, frame
            finally:
                await c.close()

        job, frame = self.run_async(go())
        self.assertEqual(frame[:4], b"KLNB")
        hl = int.from_bytes(frame[4:8], "little")
        hdr = json.loads(frame[8:8 + hl])
        self.assertEqual(hdr["job"], job)
        self.assertEqual(hdr["part"], "kappa")
        self.assertEqual(hdr["dtype"], "f32")
        self.assertEqual(hdr["shape"], [8, 8])
        self.assertEqual(len(frame) - 8 - hl, 8 * 8 * 4)

    def test_long_job_reports_progress_before_done(self):
        async def go():
            c = await self.client()
            try:
                job = await self.submit_ok(c, {"mass": fresh_mass(), "concentration": 5, "grid_size": 4096})
                done, parts, progress = await c.read_done(job, timeout=60)
                return job, done, progress
            finally:
                await c.close()

        job, done, progress = self.run_async(go())
        self.assertEqual(done["state"], "done")
        self.assertGreaterEqual(len(progress), 1)
        pcts = [p["pct"] for p in progress]
        self.assertTrue(all(p["job"] == job for p in progress))
        self.assertTrue(all(0 <= x <= 100 for x in pcts), pcts)
        self.assertEqual(pcts, sorted(pcts))

    def test_watch_false_is_accepted_but_gets_no_done(self):
        async def go():
            c = await self.client()
            try:
                quiet = await self.submit_ok(c, small(), watch=False)
                loud = await self.submit_ok(c, small())
                seen = []
                while True:
                    m = await c.recv()
                    if isinstance(m, bytes):
                        continue
                    seen.append(m)
                    if m.get("op") == "done" and m["job"] == loud:
                        break
                # One worker, FIFO: the quiet job finished before the loud one.
                st = await c.call({"op": "status", "job": quiet})
                return quiet, seen, st
            finally:
                await c.close()

        quiet, seen, st = self.run_async(go())
        self.assertEqual(st["state"], "done")
        self.assertFalse([m for m in seen if m.get("job") == quiet], seen)

    # ---- status, result, watch ----

    def test_status_reports_queued_running_and_done(self):
        async def go():
            c = await self.client()
            blocker = await self.start_blocker(c)
            try:
                job = await self.submit_ok(c, small())
                running = await c.call({"op": "status", "job": blocker})
                queued = await c.call({"op": "status", "job": job})
                # list by state goes by the job's state, not its record's (a running
                # job's record says queued).
                listed = {}
                for state in ("running", "queued", "done"):
                    reply = await c.call({"op": "list", "state": state})
                    listed[state] = [(x["job"], x["state"]) for x in reply["jobs"]]
            finally:
                await self.stop_blocker(c, blocker)
            await wait_for(c, done_of(job))
            done = await c.call({"op": "status", "job": job})
            await c.close()
            return blocker, job, running, queued, done, listed

        blocker, job, running, queued, done, listed = self.run_async(go())
        self.assertEqual(listed["running"], [(blocker, "running")])
        self.assertEqual(listed["queued"], [(job, "queued")])
        self.assertNotIn(job, [j for j, _ in listed["done"]])
        self.assertEqual(running["op"], "status")
        self.assertEqual(running["job"], blocker)
        self.assertEqual(running["state"], "running")
        self.assertEqual(running["kind"], KIND)
        self.assertIsNone(running["finished"])
        self.assertTrue(0 <= running["pct"] <= 100)
        self.assertEqual(queued["state"], "queued")
        self.assertEqual(queued["job"], job)
        self.assertIsNone(queued["finished"])
        parse_iso(queued["submitted"])
        self.assertEqual(done["state"], "done")
        self.assertEqual(done["pct"], 100)
        self.assertEqual(done["kind"], KIND)
        submitted, finished = parse_iso(done["submitted"]), parse_iso(done["finished"])
        self.assertIsNotNone(submitted.tzinfo)
        self.assertLessEqual(submitted, finished)
        self.assertEqual(submitted, parse_iso(queued["submitted"]))

    def test_result_resends_done_and_identical_parts(self):
        async def go():
            c = await self.client()
            try:
                job = await self.submit_ok(c, small(grid_size=32, maps=ALL_MAPS))
                first = await wait_for(c, done_of(job))
                first_parts = await read_parts(c, first)
                again = await c.call({"op": "result", "job": job, "ref": "again"})
                again_parts = await read_parts(c, again)
                return first, first_parts, again, again_parts
            finally:
                await c.close()

        first, first_parts, again, again_parts = self.run_async(go())
        self.assertEqual(again["op"], "done")
        self.assertEqual(again["ref"], "again")
        self.assertEqual(again["state"], "done")
        self.assertEqual(again["result"], first["result"])
        self.assertEqual(again["parts"], first["parts"])
        self.assertEqual([n for n, _ in again_parts], [n for n, _ in first_parts])
        for (name, a), (_, b) in zip(first_parts, again_parts):
            self.assertTrue(np.array_equal(a, b, equal_nan=True), name)

    def test_watch_of_pending_job_from_another_connection_gets_done(self):
        async def go():
            c1 = await self.client()
            c2 = await self.client()
            blocker = await self.start_blocker(c1)
            try:
                job = await self.submit_ok(c1, small())
                ok = await c2.call({"op": "watch", "job": job})
            finally:
                await self.stop_blocker(c1, blocker)
            done, parts, _ = await c2.read_done(job)
            await c1.close()
            await c2.close()
            return ok, done, parts

        ok, done, parts = self.run_async(go())
        self.assertEqual(ok["op"], "ok")
        self.assertEqual(done["state"], "done")
        self.assertEqual(done["ref"], ok["ref"])  # a reply to the watch
        self.assertEqual(parts["kappa"].shape, (16, 16))

    def test_watch_of_finished_job_sends_its_done(self):
        async def go():
            c1 = await self.client()
            done1, _ = await c1.run(KIND, small())
            c2 = await self.client()
            ok = await c2.call({"op": "watch", "job": done1["job"]})
            done2, parts, _ = await c2.read_done(done1["job"])
            await c1.close()
            await c2.close()
            return done1, ok, done2, parts

        done1, ok, done2, parts = self.run_async(go())
        self.assertEqual(ok["op"], "ok")
        self.assertEqual(done2["state"], "done")
        self.assertEqual(done2["result"], done1["result"])
        self.assertEqual(done2.get("ref"), ok["ref"], "the done carries the watch's ref, as for a running job")
        self.assertEqual(parts["kappa"].shape, (16, 16))

    # ---- cancel ----

    def test_cancel_of_queued_job_ends_it_cancelled_for_every_watcher(self):
        async def go():
            c1 = await self.client()
            c2 = await self.client()
            blocker = await self.start_blocker(c1)
            try:
                job = await self.submit_ok(c1, small())
                await c2.call({"op": "watch", "job": job})
                ok = await c1.call({"op": "cancel", "job": job})
                d1 = await wait_for(c1, done_of(job))
                d2 = await wait_for(c2, done_of(job))
                st = await c1.call({"op": "status", "job": blocker})
            finally:
                await self.stop_blocker(c1, blocker)
            await c1.close()
            await c2.close()
            return ok, d1, d2, st

        ok, d1, d2, st = self.run_async(go())
        self.assertEqual(ok["op"], "ok")
        for d in (d1, d2):
            self.assertEqual(d["state"], "cancelled")
            self.assertEqual(d["error"]["code"], "cancelled")
            self.assertNotIn("parts", d)
        self.assertEqual(st["state"], "running")  # the running job was not touched

    def test_cancel_of_running_job_ends_it_cancelled_for_every_watcher(self):
        async def go():
            c1 = await self.client()
            c2 = await self.client()
            blocker = await self.start_blocker(c1)
            await c2.call({"op": "watch", "job": blocker})
            ok = await c1.call({"op": "cancel", "job": blocker})
            d1 = await wait_for(c1, done_of(blocker))
            d2 = await wait_for(c2, done_of(blocker))
            st = await c2.call({"op": "status", "job": blocker})
            # The worker is free again.
            after, _ = await c1.run(KIND, small())
            await c1.close()
            await c2.close()
            return ok, d1, d2, st, after

        ok, d1, d2, st, after = self.run_async(go())
        self.assertEqual(ok["op"], "ok")
        for d in (d1, d2):
            self.assertEqual(d["state"], "cancelled")
            self.assertEqual(d["error"]["code"], "cancelled")
        self.assertEqual(st["state"], "cancelled")
        self.assertEqual(after["state"], "done")

    # ---- list ----

    def test_list_is_newest_first_and_filters_by_state_and_kind(self):
        async def go():
            c = await self.client()
            try:
                mine = []
                for _ in range(4):
                    done, _ = await c.run(KIND, small())
                    mine.append(done["job"])
                full = await c.call({"op": "list", "limit": 1000})
                done_only = await c.call({"op": "list", "state": "done", "limit": 1000})
                queued_only = await c.call({"op": "list", "state": "queued", "limit": 1000})
                by_kind = await c.call({"op": "list", "kind": KIND, "limit": 1000})
                other_kind = await c.call({"op": "list", "kind": "risk.score", "limit": 1000})
                return mine, full, done_only, queued_only, by_kind, other_kind
            finally:
                await c.close()

        mine, full, done_only, queued_only, by_kind, other_kind = self.run_async(go())
        self.assertEqual(full["op"], "jobs")
        ids = [j["job"] for j in full["jobs"]]
        self.assertEqual(ids, sorted(ids, reverse=True))  # UUIDv7: newest first
        self.assertEqual([i for i in ids if i in mine], list(reversed(mine)))
        self.assertEqual(ids[0], mine[-1])
        stamps = [parse_iso(j["submitted"]) for j in full["jobs"]]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        for j in full["jobs"]:
            self.assertEqual(j["kind"], KIND)
            self.assertIn(j["state"], {"queued", "running"} | FINAL)
        self.assertTrue(all(j["state"] == "done" for j in done_only["jobs"]))
        self.assertLessEqual(set(mine), {j["job"] for j in done_only["jobs"]})
        self.assertFalse(set(mine) & {j["job"] for j in queued_only["jobs"]})
        self.assertTrue(all(j["state"] == "queued" for j in queued_only["jobs"]))
        self.assertLessEqual(set(mine), {j["job"] for j in by_kind["jobs"]})
        self.assertEqual(other_kind["jobs"], [])
        self.assertIsNone(full["next"])

    def test_list_pages_with_limit_and_after(self):
        async def go():
            c = await self.client()
            try:
                for _ in range(5):
                    await c.run(KIND, small())
                full = await c.call({"op": "list", "limit": 1000})
                pages, after = [], None
                while True:
                    msg = {"op": "list", "limit": 2}
                    if after is not None:
                        msg["after"] = after
                    page = await c.call(msg)
                    pages.append(page)
                    after = page["next"]
                    if after is None:
                        break
                    self.assertLess(len(pages), 1000)
                return full, pages
            finally:
                await c.close()

        full, pages = self.run_async(go())
        self.assertGreaterEqual(len(full["jobs"]), 5)
        self.assertTrue(all(len(p["jobs"]) <= 2 for p in pages))
        self.assertTrue(all(len(p["jobs"]) == 2 for p in pages[:-1]))
        for p in pages[:-1]:
            self.assertEqual(p["next"], p["jobs"][-1]["job"])
        walked = [j["job"] for p in pages for j in p["jobs"]]
        self.assertEqual(walked, [j["job"] for j in full["jobs"]])

    # ---- priorities and deadlines ----

    def test_priorities_are_strict_between_levels_and_fifo_within_one(self):
        order = ["low", "normal", "critical", "low", "batch", "critical", "high", "normal"]

        async def go():
            c = await self.client()
            blocker = await self.start_blocker(c)
            try:
                jobs = []
                for prio in order:
                    jobs.append((await self.submit_ok(c, small(), priority=prio), prio))
            finally:
                await self.stop_blocker(c, blocker)
            finished = []
            ids = {j for j, _ in jobs}
            while len(finished) < len(jobs):
                m = await c.recv()
                if not isinstance(m, bytes) and m.get("op") == "done" and m["job"] in ids:
                    self.assertEqual(m["state"], "done", m)
                    finished.append(m["job"])
            await c.close()
            return jobs, finished

        jobs, finished = self.run_async(go())
        rank = {"critical": 0, "high": 1, "normal": 2, "low": 3, "batch": 4}
        expected = [j for j, _ in sorted(jobs, key=lambda jp: rank[jp[1]])]  # stable: FIFO within a level
        self.assertEqual(finished, expected)

    def test_queued_job_past_its_deadline_ends_expired_while_worker_is_busy(self):
        async def go():
            c = await self.client()
            blocker = await self.start_blocker(c)
            try:
                job = await self.submit_ok(c, small(), timeout_ms=200)
                done = await wait_for(c, done_of(job), timeout=20)
                st = await c.call({"op": "status", "job": blocker})
            finally:
                await self.stop_blocker(c, blocker)
            await c.close()
            return done, st

        done, st = self.run_async(go())
        self.assertEqual(done["state"], "expired")
        self.assertEqual(done["error"]["code"], "timeout")
        self.assertEqual(st["state"], "running")  # it expired while the worker was still busy

    def test_running_job_past_its_deadline_ends_expired(self):
        async def go():
            c = await self.client()
            try:
                job = await self.submit_ok(c, dict(BLOCKER, mass=fresh_mass()), timeout_ms=300)
                done, parts, progress = await c.read_done(job, timeout=30)
                after, _ = await c.run(KIND, small())
                return done, parts, after
            finally:
                await c.close()

        done, parts, after = self.run_async(go())
        self.assertEqual(done["state"], "expired")
        self.assertEqual(done["error"]["code"], "timeout")
        self.assertEqual(parts, {})
        self.assertEqual(after["state"], "done")

    # ---- HTTP ----

    def http_get(self, path):
        with urllib.request.urlopen(self.kilnd.http + path, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()

    def test_healthz_answers_200_with_json_naming_backends(self):
        status, ctype, body = self.http_get("/healthz")
        self.assertEqual(status, 200)
        self.assertIn("json", ctype)
        self.assertIn("cpu", json.loads(body)["backends"])

    def test_readyz_answers_200_with_json_naming_backends(self):
        status, ctype, body = self.http_get("/readyz")
        self.assertEqual(status, 200)
        self.assertIn("json", ctype)
        self.assertIn("cpu", json.loads(body)["backends"])

    def test_root_serves_the_web_ui(self):
        status, ctype, body = self.http_get("/")
        self.assertEqual(status, 200)
        self.assertIn("text/html", ctype)
        with open(os.path.join(WEB_ROOT, "index.html"), "rb") as f:
            self.assertEqual(body, f.read())

    # ---- big results ----

    def test_large_result_arrives_intact_without_blocking_other_clients(self):
        n = 4096

        async def go():
            # max_queue=1: this client stops reading its socket once a message is
            # waiting, so the 128 MiB stay queued in kilnd while c2 works.
            big = await Client.connect(self.kilnd.url, max_queue=1)
            c2 = await self.client()
            try:
                job = await self.submit_ok(big, {"mass": fresh_mass(), "concentration": 5, "grid_size": n,
                                                 "maps": ["kappa", "psi"]})
                # One worker: these run only after the big job has finished.
                small_done = []
                for _ in range(5):
                    d, parts = await c2.run(KIND, small())
                    small_done.append(d["state"])
                done, parts, _ = await big.read_done(job, timeout=120)
                return small_done, done, parts
            finally:
                await big.close()
                await c2.close()

        small_done, done, parts = self.run_async(go())
        self.assertEqual(small_done, ["done"] * 5)
        self.assertEqual(done["state"], "done")
        self.assertEqual([p["bytes"] for p in done["parts"]], [n * n * 4] * 2)
        for name in ("kappa", "psi"):
            a = parts[name]
            self.assertEqual(a.shape, (n, n))
            self.assertTrue(np.isfinite(a).all(), name)
            # The halo is centred: every symmetry of the square holds, which a
            # shifted, truncated or reordered chunk would break.
            self.assertTrue(np.array_equal(a, a.T), name)
            self.assertTrue(np.array_equal(a, a[::-1, :]), name)
            self.assertTrue(np.array_equal(a, a[:, ::-1]), name)

    def test_client_dropping_mid_result_does_not_disturb_the_daemon(self):
        async def go():
            other = await self.client()
            c = await self.client()
            job = await self.submit_ok(c, {"mass": fresh_mass(), "concentration": 5, "grid_size": 2048,
                                           "maps": ["kappa", "psi"]})
            await wait_for(c, done_of(job), timeout=60)
            c.ws.transport.abort()  # gone before its 32 MiB of parts
            fresh = await self.client()
            d1, p1 = await fresh.run(KIND, small())
            d2, p2 = await other.run(KIND, small())
            r = await fresh.call({"op": "result", "job": job})
            parts = await read_parts(fresh, r)
            await fresh.close()
            await other.close()
            return d1, d2, r, parts

        d1, d2, r, parts = self.run_async(go())
        self.assertIsNone(self.kilnd.proc.poll())
        self.assertEqual(d1["state"], "done")
        self.assertEqual(d2["state"], "done")
        self.assertEqual(r["state"], "done")
        self.assertEqual([n for n, _ in parts], ["kappa", "psi"])
        self.assertEqual(parts[0][1].shape, (2048, 2048))


if __name__ == "__main__":
    unittest.main()
