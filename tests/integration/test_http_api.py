"""The HTTP API of SPEC §3 (GET /api/v1/jobs/ID, GET .../parts/NAME.npy, POST
/api/v1/jobs) with Authorization: Bearer: the same tokens, roles, tenants and
errors as the WebSocket API."""
import concurrent.futures
import hashlib
import io
import json
import os
import time
import unittest
import urllib.error
import urllib.request

import numpy as np

from kiln_fixture import Client, Kilnd, KilndTestCase

TOKENS = {"alice-token": ("alice", "acme", "submit"), "bob-token": ("bob", "other", "submit"),
          "reader-token": ("rita", "acme", "read")}
PARAMS = {"mass": 2e14, "concentration": 6, "grid_size": 33, "maps": ["kappa", "mu"]}


class HttpApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_AUTH_REQUIRED": "true", "KILN_SERVER_MAX_MESSAGE_BYTES": "65536"})
        with open(os.path.join(cls.kilnd.tmp, "tokens"), "w") as f:
            for tok, (name, tenant, role) in TOKENS.items():
                f.write(f"{name} {tenant} {role} {hashlib.sha256(tok.encode()).hexdigest()}\n")
        cls.kilnd.start()

    @classmethod
    def tearDownClass(cls):
        code = cls.kilnd.stop()
        log = cls.kilnd.read_log()
        cls.kilnd.cleanup()
        if code != 0:
            raise AssertionError(f"kilnd exited with {code}:\n{log}")

    def request(self, method, path, body=None, token="alice-token"):
        req = urllib.request.Request(self.kilnd.http + path, method=method,
                                     data=json.dumps(body).encode() if isinstance(body, dict) else body)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def submit_and_wait(self, params, token="alice-token"):
        status, _, body = self.request("POST", "/api/v1/jobs", {"kind": "lens.nfw", "params": params}, token)
        self.assertEqual(status, 202, body)
        acc = json.loads(body)
        self.assertEqual(acc["op"], "accepted")
        job = acc["job"]

        async def wait():  # watch over the WebSocket with the same token until done
            c = await Client.connect(self.kilnd.url, token=token)
            ok = await c.call({"op": "watch", "job": job})
            self.assertEqual(ok["op"], "ok", ok)
            done, parts, _ = await c.read_done(job)
            await c.close()
            return done, parts

        import asyncio
        return job, asyncio.run(asyncio.wait_for(wait(), 60))

    def assertError(self, status, body, want_status, code, field=None):
        self.assertEqual(status, want_status, body)
        e = json.loads(body)
        self.assertEqual((e["op"], e["code"]), ("error", code), e)
        self.assertNotIn("ref", e)
        if field is not None:
            self.assertEqual(e.get("field"), field, e)

    def test_without_a_bearer_token_everything_is_unauthorized(self):
        for method, path, body in (("GET", "/api/v1/jobs/01a20207-7fda-77ab-9617-104397231aeb", None),
                                   ("POST", "/api/v1/jobs", {"kind": "lens.nfw", "params": PARAMS})):
            for token in (None, "wrong-token"):
                status, _, out = self.request(method, path, body, token)
                self.assertError(status, out, 401, "unauthorized", "Authorization")

    def test_the_bearer_scheme_is_case_insensitive_and_spaces_around_the_token_go(self):
        path = "/api/v1/jobs/00000000-0000-7000-8000-000000000000"
        for header in ("bearer alice-token", "BEARER  alice-token", "Bearer\talice-token ", "  Bearer alice-token"):
            req = urllib.request.Request(self.kilnd.http + path)
            req.add_header("Authorization", header)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(req, timeout=30)
            self.assertEqual(cm.exception.code, 404, header)  # known token, no such job
        for header in ("Bearer", "Bearer ", "Bearera lice-token", "Basic alice-token", "Bearer alice token"):
            req = urllib.request.Request(self.kilnd.http + path)
            req.add_header("Authorization", header)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(req, timeout=30)
            self.assertEqual(cm.exception.code, 401, header)

    def test_post_answers_accepted_and_get_answers_status(self):
        job, (done, _) = self.submit_and_wait(dict(PARAMS, mass=3.3e14))
        self.assertEqual(done["state"], "done")
        status, headers, body = self.request("GET", f"/api/v1/jobs/{job}")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("application/json"))
        st = json.loads(body)
        self.assertEqual((st["job"], st["kind"], st["state"]), (job, "lens.nfw", "done"))

    def test_npy_part_loads_with_numpy_and_equals_the_websocket_part(self):
        job, (done, parts) = self.submit_and_wait(dict(PARAMS, mass=4.4e14))
        for name in ("kappa", "mu"):
            status, _, body = self.request("GET", f"/api/v1/jobs/{job}/parts/{name}.npy")
            self.assertEqual(status, 200)
            self.assertEqual(body[:6], b"\x93NUMPY")
            arr = np.load(io.BytesIO(body))
            self.assertEqual((arr.shape, arr.dtype), ((33, 33), np.float32))
            np.testing.assert_array_equal(arr, parts[name])
        status, _, body = self.request("GET", f"/api/v1/jobs/{job}/parts/psi.npy")
        self.assertError(status, body, 404, "not_found", "part")

    def test_npy_part_of_a_result_over_a_mib_is_read_from_the_store(self):
        # 3 MiB of maps: the result is sent from the store, chunk by chunk.
        job, (done, parts) = self.submit_and_wait(dict(PARAMS, mass=5.5e14, grid_size=512,
                                                       maps=["kappa", "gamma1", "gamma2"]))
        self.assertEqual(sum(p["bytes"] for p in done["parts"]), 3 * 512 * 512 * 4)
        for name in ("gamma2", "kappa"):
            status, _, body = self.request("GET", f"/api/v1/jobs/{job}/parts/{name}.npy")
            self.assertEqual(status, 200)
            arr = np.load(io.BytesIO(body))
            self.assertEqual((arr.shape, arr.dtype), ((512, 512), np.float32))
            np.testing.assert_array_equal(arr, parts[name])

    def test_a_part_is_served_as_soon_as_the_status_says_done(self):
        # A job's state turns done before its final record is stored and its `done`
        # sent; a part asked for in between waits for that `done` (it answered 409
        # "not finished" to about one request in four here).
        def client(n):
            out = []
            for i in range(n):
                status, _, body = self.request("POST", "/api/v1/jobs", {
                    "kind": "lens.nfw", "cache": False, "params": dict(PARAMS, mass=1e13 * (1 + i + 100 * n))})
                self.assertEqual(status, 202, body)
                job = json.loads(body)["job"]
                end = time.monotonic() + 60
                while True:  # no sleep: the window is the moment the state turns done
                    state = json.loads(self.request("GET", f"/api/v1/jobs/{job}")[2]).get("state")
                    if state in ("done", "failed", "cancelled", "expired") or time.monotonic() > end:
                        break
                self.assertEqual(state, "done")
                out.append(self.request("GET", f"/api/v1/jobs/{job}/parts/kappa.npy")[::2])
            return out

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, 20 + k) for k in range(4)]
            answers = [r for f in futures for r in f.result(timeout=180)]  # a client's failure is raised here
        self.assertEqual(len(answers), 20 + 21 + 22 + 23)
        self.assertEqual([(st, b[:80]) for st, b in answers if st != 200], [])

    def test_another_tenant_gets_not_found(self):
        job, _ = self.submit_and_wait(dict(PARAMS, mass=5.5e14))
        for path in (f"/api/v1/jobs/{job}", f"/api/v1/jobs/{job}/parts/kappa.npy"):
            status, _, body = self.request("GET", path, token="bob-token")
            self.assertError(status, body, 404, "not_found", "job")

    def test_roles_apply_a_reader_may_read_but_not_submit(self):
        job, _ = self.submit_and_wait(dict(PARAMS, mass=6.6e14))
        status, _, _ = self.request("GET", f"/api/v1/jobs/{job}", token="reader-token")
        self.assertEqual(status, 200)
        status, _, body = self.request("POST", "/api/v1/jobs", {"kind": "lens.nfw", "params": PARAMS},
                                       token="reader-token")
        self.assertError(status, body, 403, "forbidden")

    def test_headers_of_12_kib_are_served(self):
        # A browser sends every cookie it holds for the host: other local apps'
        # cookies on 127.0.0.1 easily pass 4 KiB.
        req = urllib.request.Request(self.kilnd.http + "/healthz")
        req.add_header("Cookie", "; ".join(f"c{i}={'v' * 100}" for i in range(120)))
        with urllib.request.urlopen(req, timeout=30) as r:
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["status"], "ok")

    def test_bad_requests_name_their_field_and_status(self):
        status, _, body = self.request("POST", "/api/v1/jobs", {"kind": "lens.nfw", "params": {"mass": -1}})
        self.assertError(status, body, 400, "bad_params", "params.mass")
        status, _, body = self.request("POST", "/api/v1/jobs", {"kind": "no.such", "params": {}})
        self.assertError(status, body, 400, "unknown_kind", "kind")
        status, _, body = self.request("POST", "/api/v1/jobs", b"not json")
        self.assertError(status, body, 400, "bad_request", "body")
        self.assertIn("not JSON (line 1, column", json.loads(body)["message"])
        status, _, body = self.request("POST", "/api/v1/jobs", b"[1, 2]")
        self.assertError(status, body, 400, "bad_request", "body")
        status, _, body = self.request("POST", "/api/v1/jobs",
                                       b'{"kind":"lens.nfw","params":{"mass":1e14,"grid_size":99999999999999999999}}')
        self.assertError(status, body, 400, "bad_params", "params.grid_size")  # as over the WebSocket
        # Fields the body does not take are refused, not overwritten.
        for extra, field in (({"watch": "x"}, "watch"), ({"watch": True}, "watch"), ({"op": "status"}, "op"),
                             ({"priorty": "high"}, "priorty")):
            status, _, body = self.request("POST", "/api/v1/jobs", dict({"kind": "lens.nfw", "params": PARAMS},
                                                                         **extra))
            self.assertError(status, body, 400, "bad_request", field)
        status, _, body = self.request("POST", "/api/v1/jobs", b"{" + b" " * 70000 + b"}")
        self.assertError(status, body, 413, "too_large", "Content-Length")
        status, _, body = self.request("GET", "/api/v1/jobs/not-a-uuid")
        self.assertError(status, body, 404, "not_found", "job")
        status, _, body = self.request("GET", "/api/v1/elsewhere")
        self.assertError(status, body, 404, "not_found")
        status, _, body = self.request("GET", "/api/v1/jobs/01a20207-7fda-77ab-9617-104397231aeb")
        self.assertError(status, body, 404, "not_found", "job")

    def test_idempotency_key_over_http_returns_the_first_job(self):
        body = {"kind": "lens.nfw", "params": dict(PARAMS, mass=7.7e14), "key": "http-order-1"}
        s1, _, b1 = self.request("POST", "/api/v1/jobs", body)
        s2, _, b2 = self.request("POST", "/api/v1/jobs", dict(body, params=dict(PARAMS, mass=8.8e14)))
        self.assertEqual((s1, s2), (202, 202))
        self.assertEqual(json.loads(b1)["job"], json.loads(b2)["job"])


class AnonymousHttpRateTest(unittest.TestCase):
    """Without auth (loopback only) each WebSocket has its own rate bucket, and the
    HTTP API's requests, a connection each, share one: limits.rate_per_s holds for
    them too."""

    def test_http_requests_without_auth_share_one_bucket(self):
        k = Kilnd(env={"KILN_LIMITS_RATE_PER_S": "5", "KILN_LIMITS_BURST": "5"}).start()
        try:
            codes = []
            for _ in range(12):
                try:
                    with urllib.request.urlopen(k.http + "/api/v1/jobs/00000000-0000-7000-8000-000000000000",
                                                timeout=30) as r:
                        codes.append(r.status)
                except urllib.error.HTTPError as e:
                    codes.append(e.code)
            self.assertLessEqual(codes.count(404), 7, codes)  # 5, and a few refilled
            self.assertGreaterEqual(codes.count(429), 5, codes)
            self.assertEqual(codes.count(404) + codes.count(429), 12, codes)
        finally:
            code = k.stop()
            k.cleanup()
        self.assertEqual(code, 0)


class HttpApiBigBodyTest(KilndTestCase):
    """Bodies of 256 KiB and more are parsed off the loop thread: each still gets
    its answer, and one whose client went away leaves kilnd serving."""

    def post(self, body):
        req = urllib.request.Request(self.kilnd.http + "/api/v1/jobs", method="POST", data=body)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def test_a_big_body_is_submitted_and_scored(self):
        rows = np.round(np.random.default_rng(3).normal(size=(30000, 4)), 5).astype(np.float32)
        body = json.dumps({"kind": "risk.score", "params": {"model": "altman-z2", "rows": rows.tolist()}}).encode()
        self.assertGreater(len(body), 256 << 10)
        status, reply = self.post(body)
        self.assertEqual(status, 202, reply)
        job = json.loads(reply)["job"]

        async def wait():
            c = await Client.connect(self.kilnd.url)
            self.assertEqual((await c.call({"op": "watch", "job": job}))["op"], "ok")
            done, parts, _ = await c.read_done(job)
            await c.close()
            return done, parts

        done, parts = self.run_async(wait(), 60)
        self.assertEqual(done["state"], "done", done)
        x = rows.astype(np.float64)
        want = (6.56 * x[:, 0] + 3.26 * x[:, 1] + 6.72 * x[:, 2] + 1.05 * x[:, 3]).astype(np.float32)
        np.testing.assert_array_equal(parts["z"], want)

    def test_big_bodies_that_are_not_a_submit_name_the_body(self):
        status, reply = self.post(b"{" + b"x" * (300 << 10))
        self.assertEqual(status, 400, reply)
        e = json.loads(reply)
        self.assertEqual((e["code"], e["field"]), ("bad_request", "body"), e)
        self.assertIn("not JSON (line 1, column", e["message"])
        status, reply = self.post(json.dumps(["x" * (300 << 10)]).encode())
        self.assertEqual(status, 400, reply)
        self.assertIn("must be a JSON object", json.loads(reply)["message"])
        # Parsed on a worker, a number past int64 is still named by its path, and
        # within params it is bad_params, as over the WebSocket.
        status, reply = self.post(b'{"kind":"risk.score","params":{"rows":[' + b"[1]," * (100 << 10) +
                                  b'[99999999999999999999]]}}')
        self.assertEqual(status, 400, reply)
        e = json.loads(reply)
        self.assertEqual((e["code"], e["field"]), ("bad_params", "params.rows[102400][0]"), e)
        status, reply = self.post(b'{"kind":"lens.nfw","timeout_ms":99999999999999999999,"params":{}}')
        self.assertEqual(status, 400, reply)
        e = json.loads(reply)
        self.assertEqual((e["code"], e["field"]), ("bad_request", "timeout_ms"), e)

    def test_a_client_gone_while_its_big_body_is_parsed_leaves_kilnd_serving(self):
        import socket
        body = json.dumps({"kind": "lens.nfw", "params": {"mass": 1e14, "concentration": 5},
                           "ref": ["y" * 64] * 40000}).encode()
        s = socket.create_connection(("127.0.0.1", self.kilnd.port), timeout=30)
        s.sendall(f"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        s.close()
        status, reply = self.post(json.dumps({"kind": "lens.nfw", "params": {"mass": 2e14,
                                                                             "concentration": 5}}).encode())
        self.assertEqual(status, 202, reply)


if __name__ == "__main__":
    unittest.main()
