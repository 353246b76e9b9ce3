"""Every error code of SPEC §2.5 that a client can reach in this build, with its
`code`, its `field` where one applies and the `ref` echoed, and the connection
still serving the next op afterwards (bad input never closes it, except a message
over the size limit: close 1009, on that connection only).

Codes a client cannot reach here, and so not tested: forbidden (no admin ops are
built), rate_limited (no rate limiter), unavailable and internal (no way to make
the store or the CPU fail from outside).
"""
import asyncio
import hashlib
import json
import os
import random
import re
import signal
import struct
import time
import unittest
import urllib.error
import urllib.request
import uuid

import numpy as np
import websockets

from kiln_fixture import Kilnd, KilndTestCase, encode_frame, done_of, wait_for

KIND = "lens.nfw"
ALL_MAPS = ["kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi"]
CODES = {"bad_request", "unknown_op", "unknown_kind", "bad_params", "too_large", "unauthorized", "forbidden",
         "not_found", "queue_full", "rate_limited", "timeout", "cancelled", "unavailable", "shutting_down",
         "internal"}
GOOD = {"mass": 1e14, "concentration": 5, "grid_size": 8}
# Keeps the single worker busy for seconds.
BLOCKER = {"concentration": 5, "grid_size": 8192, "maps": ALL_MAPS}

_masses = iter(range(1, 1 << 30))


def fresh_mass():
    return 2e13 * (1 + next(_masses) * 1e-4)


def random_job_id():
    """A well-formed UUIDv7 string that names no job."""
    b = bytearray(os.urandom(16))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(b)))




async def next_error(c, timeout=10):
    """The next error message (for bad input that carries no ref)."""
    return await wait_for(c, lambda m: m.get("op") == "error", timeout)


class ErrorCase(KilndTestCase):
    """Assertions shared by the classes below."""

    def assertError(self, reply, code, field=None, ref=None):
        self.assertEqual(reply.get("op"), "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertIsInstance(reply.get("message"), str)
        self.assertTrue(reply["message"], reply)
        if isinstance(field, re.Pattern):
            self.assertRegex(reply.get("field", ""), field)
        elif field is not None:
            self.assertEqual(reply.get("field"), field, reply)
        if ref is not None:
            self.assertEqual(reply.get("ref"), ref, reply)

    async def assertUsable(self, c):
        """The connection still answers a good op (and so was not closed)."""
        r = await c.call({"op": "stats"})
        self.assertNotEqual(r.get("op"), "error", r)
        self.assertIsNone(c.ws.close_code)

    async def bad(self, c, msg, code, field=None):
        """Sends one bad message carrying a ref; checks the error and that the
        connection still works."""
        msg = dict(msg, ref=f"r-{random.randrange(1 << 30)}")
        reply = await c.call(msg)
        self.assertError(reply, code, field, msg["ref"])
        await self.assertUsable(c)
        return reply


class MalformedInputTest(ErrorCase):
    env = {"KILN_CPU_THREADS": "1"}

    def test_text_that_is_not_json_is_bad_request(self):
        async def go():
            c = await self.client()
            try:
                for text in ["not json", "{\"op\":", "{'op':'hello'}", "", "{\"op\":\"stats\"} trailing"]:
                    with self.subTest(text=text):
                        await c.ws.send(text)
                        self.assertError(await next_error(c), "bad_request")
                        await self.assertUsable(c)
            finally:
                await c.close()

        self.run_async(go())

    def test_json_kilnd_cannot_take_is_refused_echoing_its_ref(self):
        """Valid JSON the strict parse refuses (an integer past int64, a NUL in a
        string, a duplicate key) is refused naming the field where there is one
        (a number past range within params is bad_params, the rest bad_request),
        and the reply still carries the message's ref, so a client waiting for it
        is answered."""
        sub = '"op":"submit","kind":"lens.nfw"'
        cases = [
            ('{"ref":71,' + sub + ',"params":{"mass":1e14,"concentration":5,"grid_size":18446744073709551616}}', 71,
             "params.grid_size", "bad_params"),
            ('{"ref":"r72",' + sub + ',"params":{"mass":1e14,"concentration":5,"grid_size":9223372036854775808}}',
             "r72", "params.grid_size", "bad_params"),
            ('{' + sub.replace('lens.nfw', 'lens.nfw\\u0000x') + ',"ref":[7,3],"params":{}}', [7, 3], "kind",
             "bad_request"),
            # Not JSON at all, its members in place: named, its ref read from the text.
            ('{"ref":77,' + sub + ',"params":{"mass":NaN,"concentration":5}}', 77, "params.mass", "bad_request"),
            ('{"ref":78,' + sub + ',"params":{"x":' + '[' * 3000 + ']' * 3000 + '}}', 78, None, "bad_request"),
            ('{"ref":{"n":74},' + sub + ',"kind":"lens.nfw","params":{}}', {"n": 74}, "kind", "bad_request"),
            ('{"ref":9007199254740993,' + sub + ',"kind":"lens.nfw","params":{}}', 9007199254740993, "kind",
             "bad_request"),
            # With an integer past int64 elsewhere, a ref the lenient reading cannot
            # give back as written (an integer past 2^53) is left out.
            ('{"ref":9007199254740993,' + sub + ',"params":{"grid_size":18446744073709551616}}', None,
             "params.grid_size", "bad_params"),
            ('{"ref":76,"op":"submit","kind":"vec.search","params":{"collection":"c","k":-99999999999999999999}}', 76,
             "params.k", "bad_params"),
        ]

        async def go():
            c = await self.client()
            try:
                for text, ref, field, code in cases:
                    with self.subTest(text=text):
                        await c.ws.send(text)
                        err = await next_error(c)
                        self.assertError(err, code, field)
                        # The same JSON text: 7 is not 7.0, 2^53 + 1 is not 2^53.
                        self.assertEqual(json.dumps(err.get("ref")), json.dumps(ref), err)
                        await self.assertUsable(c)
            finally:
                await c.close()

        self.run_async(go())

    def test_json_that_is_not_an_object_is_bad_request(self):
        async def go():
            c = await self.client()
            try:
                for text in ['[{"op":"stats"}]', "42", '"stats"', "null", "true"]:
                    with self.subTest(text=text):
                        await c.ws.send(text)
                        self.assertError(await next_error(c), "bad_request")
                        await self.assertUsable(c)
            finally:
                await c.close()

        self.run_async(go())

    def test_missing_op_is_bad_request_naming_op(self):
        async def go():
            c = await self.client()
            try:
                await self.bad(c, {"job": random_job_id()}, "bad_request", "op")
            finally:
                await c.close()

        self.run_async(go())

    def test_op_that_is_not_a_string_is_bad_request_naming_op(self):
        async def go():
            c = await self.client()
            try:
                for op in [1, None, ["stats"], {"x": 1}, True]:
                    with self.subTest(op=op):
                        await self.bad(c, {"op": op}, "bad_request", "op")
            finally:
                await c.close()

        self.run_async(go())

    def test_malformed_job_id_is_bad_request_naming_job(self):
        async def go():
            c = await self.client()
            try:
                for op in ["status", "result", "watch", "cancel"]:
                    for job in ["nope", 12, None, random_job_id()[:-1], random_job_id() + "0",
                                random_job_id().replace("-", "x")]:
                        with self.subTest(op=op, job=job):
                            await self.bad(c, {"op": op, "job": job}, "bad_request", "job")
                    with self.subTest(op=op, job="missing"):
                        await self.bad(c, {"op": op}, "bad_request", "job")
            finally:
                await c.close()

        self.run_async(go())

    def test_submit_fields_of_the_wrong_type_are_bad_request(self):
        cases = [
            ("priority", "urgent"), ("priority", 1), ("priority", None),
            ("timeout_ms", "100"), ("timeout_ms", 1.5), ("timeout_ms", -1), ("timeout_ms", 0),
            ("watch", "yes"), ("cache", 1), ("key", 7), ("params", [1, 2]), ("kind", 3),
        ]

        async def go():
            c = await self.client()
            try:
                for field, value in cases:
                    with self.subTest(field=field, value=value):
                        msg = {"op": "submit", "kind": KIND, "params": dict(GOOD, mass=fresh_mass())}
                        msg[field] = value
                        await self.bad(c, msg, "bad_request", field)
            finally:
                await c.close()

        self.run_async(go())

    def test_list_fields_of_the_wrong_type_are_bad_request(self):
        cases = [("limit", "10"), ("limit", 0), ("limit", -3), ("limit", 2.5), ("state", "finished"),
                 ("state", 1), ("kind", 5), ("after", "not-an-id"), ("after", 3)]

        async def go():
            c = await self.client()
            try:
                for field, value in cases:
                    with self.subTest(field=field, value=value):
                        await self.bad(c, {"op": "list", field: value}, "bad_request", field)
                # A kind no job can have, as cache.purge refuses it.
                for kind in ("bogus", ""):
                    await self.bad(c, {"op": "list", "kind": kind}, "unknown_kind", "kind")
            finally:
                await c.close()

        self.run_async(go())

    def test_malformed_binary_frame_is_bad_request(self):
        good_header = {"ref": "f1", "part": "rows", "dtype": "f32", "shape": [2]}
        frames = {
            "wrong magic": b"KLNX" + struct.pack("<I", 2) + b"{}",
            "too short": b"KLN",
            "header length past the end": b"KLNB" + struct.pack("<I", 1000) + b"{}",
            "header not json": b"KLNB" + struct.pack("<I", 5) + b"{nope",
            "header not an object": encode_frame([1, 2], b""),
            "no part name": encode_frame({"ref": "f1", "dtype": "f32", "shape": [1]}, b"\0" * 4),
            "bad dtype": encode_frame(dict(good_header, dtype="f64"), b"\0" * 8),
            "shape and payload disagree": encode_frame(good_header, b"\0" * 12),
            "negative shape": encode_frame(dict(good_header, shape=[-2]), b""),
            "neither job nor ref": encode_frame({"part": "rows", "dtype": "u8", "shape": [1]}, b"\0"),
        }

        async def go():
            c = await self.client()
            try:
                for what, frame in frames.items():
                    with self.subTest(frame=what):
                        await c.ws.send(frame)
                        self.assertError(await next_error(c), "bad_request")
                        await self.assertUsable(c)
            finally:
                await c.close()

        self.run_async(go())

    def test_bad_frame_error_echoes_the_ref_of_its_header(self):
        async def go():
            c = await self.client()
            try:
                await c.ws.send(encode_frame({"ref": "frame-ref", "part": "rows", "dtype": "f64", "shape": [1]},
                                             b"\0" * 8))
                err = await next_error(c)
                await self.assertUsable(c)
                return err
            finally:
                await c.close()

        self.assertError(self.run_async(go()), "bad_request", ref="frame-ref")

    def test_unknown_op_is_unknown_op_naming_op(self):
        async def go():
            c = await self.client()
            try:
                for op in ["frobnicate", "HELLO", "model.frobnicate", ""]:
                    with self.subTest(op=op):
                        await self.bad(c, {"op": op}, "unknown_op", "op")
            finally:
                await c.close()

        self.run_async(go())

    def test_unknown_kind_is_unknown_kind_naming_kind(self):
        async def go():
            c = await self.client()
            try:
                for kind in ["lens.nope", "LENS.NFW", ""]:
                    with self.subTest(kind=kind):
                        await self.bad(c, {"op": "submit", "kind": kind, "params": GOOD}, "unknown_kind", "kind")
            finally:
                await c.close()

        self.run_async(go())


class BadParamsTest(ErrorCase):
    env = {"KILN_CPU_THREADS": "1"}

    def check(self, cases):
        """cases: (params, field) pairs, each expected to give bad_params."""
        async def go():
            c = await self.client()
            try:
                for params, field in cases:
                    with self.subTest(params=params):
                        await self.bad(c, {"op": "submit", "kind": KIND, "params": params}, "bad_params", field)
                done, _ = await c.run(KIND, dict(GOOD, mass=fresh_mass()))
                self.assertEqual(done["state"], "done")
            finally:
                await c.close()

        self.run_async(go())

    def test_mass_out_of_range_or_missing_names_params_mass(self):
        self.check([
            ({"mass": 1e7, "concentration": 5}, "params.mass"),
            ({"mass": 2e17, "concentration": 5}, "params.mass"),
            ({"mass": -1e14, "concentration": 5}, "params.mass"),
            ({"mass": "1e14", "concentration": 5}, "params.mass"),
            ({"mass": None, "concentration": 5}, "params.mass"),
            ({"concentration": 5}, "params.mass"),
        ])

    def test_concentration_out_of_range_or_missing_names_params_concentration(self):
        self.check([
            ({"mass": 1e14, "concentration": 0.5}, "params.concentration"),
            ({"mass": 1e14, "concentration": 51}, "params.concentration"),
            ({"mass": 1e14}, "params.concentration"),
        ])

    def test_z_source_not_beyond_z_lens_names_params_z_source(self):
        self.check([
            (dict(GOOD, z_lens=0.5, z_source=0.5), "params.z_source"),
            (dict(GOOD, z_lens=0.5, z_source=0.2), "params.z_source"),
            (dict(GOOD, z_lens=0.5, z_source=21), "params.z_source"),
            (dict(GOOD, z_source=0.2), "params.z_source"),  # the default z_lens is 0.3
        ])

    def test_z_lens_out_of_range_names_params_z_lens(self):
        self.check([
            (dict(GOOD, z_lens=0.0005), "params.z_lens"),
            (dict(GOOD, z_lens=5.5, z_source=10), "params.z_lens"),
        ])

    def test_bad_map_names_params_maps(self):
        # The field may name the offending element: params.maps or params.maps[i].
        self.check([
            (dict(GOOD, maps=["kappa", "rho"]), re.compile(r"^params\.maps(\[1\])?$")),
            (dict(GOOD, maps="kappa"), "params.maps"),
            (dict(GOOD, maps=[1]), re.compile(r"^params\.maps(\[0\])?$")),
        ])

    def test_unknown_param_names_it(self):
        self.check([
            (dict(GOOD, foo=1), "params.foo"),
            (dict(GOOD, Mass=1e14), "params.Mass"),
        ])

    def test_grid_size_out_of_range_or_fractional_names_params_grid_size(self):
        self.check([
            (dict(GOOD, grid_size=8193), "params.grid_size"),
            (dict(GOOD, grid_size=7), "params.grid_size"),
            (dict(GOOD, grid_size=64.5), "params.grid_size"),
            (dict(GOOD, grid_size="64"), "params.grid_size"),
        ])

    def test_cosmology_and_fov_out_of_range_name_their_field(self):
        self.check([
            (dict(GOOD, fov_arcsec=0), "params.fov_arcsec"),
            (dict(GOOD, fov_arcsec=-5), "params.fov_arcsec"),
            # positive, but a pixel of fov / grid_size underflows to 0
            (dict(GOOD, fov_arcsec=5e-324), "params.fov_arcsec"),
            (dict(GOOD, h=0.3), "params.h"),
            (dict(GOOD, h=1.2), "params.h"),
            (dict(GOOD, omega_m=0.001), "params.omega_m"),
            (dict(GOOD, omega_m=1.5), "params.omega_m"),
        ])

    def test_a_raytrace_source_too_narrow_to_compute_names_its_sigma(self):
        # sigma^2 of 1e-300 is 0 in float64: the centre ray would be 0/0, a NaN pixel.
        async def go():
            c = await self.client()
            try:
                for sigma in (1e-300, 5e-7):
                    with self.subTest(sigma=sigma):
                        await self.bad(c, {"op": "submit", "kind": "lens.raytrace",
                                           "params": {"mass": 1e14, "concentration": 5, "grid_size": 9,
                                                      "supersample": 1, "source": {"sigma_arcsec": sigma}}},
                                       "bad_params", "params.source.sigma_arcsec")
                done, parts = await c.run("lens.raytrace", {"mass": 1e14, "concentration": 5, "grid_size": 9,
                                                            "supersample": 1, "source": {"sigma_arcsec": 1e-6}})
                self.assertEqual(done["state"], "done", done)
                self.assertFalse(np.isnan(parts["image"]).any())
            finally:
                await c.close()

        self.run_async(go())

    def test_binary_part_for_a_kind_without_inputs_is_bad_params(self):
        async def go():
            c = await self.client()
            try:
                await c.ws.send(encode_frame({"ref": "with-part", "part": "rows", "dtype": "f32", "shape": [2]},
                                             b"\0" * 8))
                reply = await c.call({"op": "submit", "kind": KIND, "params": dict(GOOD, mass=fresh_mass()),
                                      "ref": "with-part"})
                self.assertError(reply, "bad_params", "parts.rows", "with-part")
                await self.assertUsable(c)
            finally:
                await c.close()

        self.run_async(go())


class JobErrorsTest(ErrorCase):
    """not_found, and the error codes a finished job's `done` carries."""
    env = {"KILN_CPU_THREADS": "1"}

    def test_ops_on_an_unknown_job_are_not_found_naming_job(self):
        async def go():
            c = await self.client()
            try:
                for op in ["status", "result", "watch", "cancel"]:
                    with self.subTest(op=op):
                        await self.bad(c, {"op": op, "job": random_job_id()}, "not_found", "job")
            finally:
                await c.close()

        self.run_async(go())

    def test_cancelled_job_done_carries_error_code_cancelled(self):
        async def go():
            c = await self.client()
            try:
                acc = await c.submit(KIND, dict(BLOCKER, mass=fresh_mass()), ref="blk")
                await wait_for(c, lambda m: m.get("op") == "progress" and m["job"] == acc["job"])
                await c.call({"op": "cancel", "job": acc["job"]})
                return await wait_for(c, done_of(acc["job"]))
            finally:
                await c.close()

        done = self.run_async(go())
        self.assertEqual(done["state"], "cancelled")
        self.assertEqual(done["error"]["code"], "cancelled")
        self.assertEqual(done["ref"], "blk")
        self.assertTrue(done["error"]["message"])

    def test_expired_job_done_carries_error_code_timeout(self):
        async def go():
            c = await self.client()
            try:
                acc = await c.submit(KIND, dict(BLOCKER, mass=fresh_mass()), timeout_ms=250, ref="exp")
                return await wait_for(c, done_of(acc["job"]))
            finally:
                await c.close()

        done = self.run_async(go())
        self.assertEqual(done["state"], "expired")
        self.assertEqual(done["error"]["code"], "timeout")
        self.assertEqual(done["ref"], "exp")
        self.assertTrue(done["error"]["message"])

    def test_garbage_messages_never_close_the_connection(self):
        rng = random.Random(20240601)
        ops = ["hello", "submit", "status", "result", "watch", "cancel", "list", "stats", "subscribe"]

        def junk_text():
            k = rng.randrange(8)
            if k == 0:  # printable noise that is not a JSON object
                while True:
                    s = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 80)))
                    try:
                        if not isinstance(json.loads(s), dict):
                            return s
                    except ValueError:
                        return s
            if k == 1:  # unicode noise
                return "".join(chr(rng.choice([rng.randrange(0x80, 0x800), rng.randrange(0x4E00, 0x9FFF),
                                               rng.randrange(0x1F300, 0x1F6FF)]))
                               for _ in range(rng.randrange(1, 40)))
            if k == 2:  # a valid message cut short
                s = json.dumps({"op": "submit", "kind": KIND, "params": GOOD, "ref": rng.random()})
                return s[:rng.randrange(1, len(s) - 1)]
            if k == 3:  # JSON that is not an object
                return json.dumps(rng.choice([[], [1, "a"], 3.5, "op", None, False, [{"op": "stats"}]]))
            if k == 4:  # an op that is not a string, or no op
                return json.dumps(rng.choice([{"op": rng.random()}, {"op": None}, {"op": [1]}, {"x": 1}, {}]))
            if k == 5:  # an unknown op
                return json.dumps({"op": "".join(rng.choice("abcxyz._") for _ in range(rng.randrange(1, 12)))
                                   + "!"})
            if k == 6:  # a known op with broken fields
                op = rng.choice(ops[2:7])
                bad = {"status": {"job": "x" * rng.randrange(40)}, "result": {"job": rng.random()},
                       "watch": {"job": None}, "cancel": {}, "list": {"limit": -rng.randrange(1, 99)}}[op]
                return json.dumps(dict(bad, op=op))
            # a submit that can never be valid
            return json.dumps(rng.choice([
                {"op": "submit", "kind": "x" + str(rng.random())},
                {"op": "submit", "kind": KIND, "params": {"mass": rng.random()}},
                {"op": "submit", "kind": KIND, "params": dict(GOOD, grid_size=rng.randrange(9000, 10 ** 9))},
                {"op": "submit", "kind": KIND, "params": "nope"},
                {"op": "submit", "kind": KIND, "params": GOOD, "priority": str(rng.random())},
            ]))

        def junk_binary():
            k = rng.randrange(4)
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
            if k == 0:
                return b"X" + payload
            if k == 1:  # KLNB with a header length past the end
                return b"KLNB" + struct.pack("<I", len(payload) + 1 + rng.randrange(1 << 20)) + payload
            if k == 2:  # KLNB with a header that is not JSON
                return b"KLNB" + struct.pack("<I", len(payload)) + payload.replace(b"{", b"(")
            return encode_frame({"ref": "z", "part": "p", "dtype": "u32", "shape": [len(payload) + 1]}, payload)

        async def go():
            c = await self.client()
            try:
                n = 200
                for i in range(n):
                    await c.ws.send(junk_binary() if i % 4 == 3 else junk_text())
                replies = []
                while len(replies) < n:
                    m = await c.recv(10)
                    self.assertNotIsInstance(m, bytes)
                    replies.append(m)
                done, parts = await c.run(KIND, dict(GOOD, mass=fresh_mass()))
                return replies, done, parts
            finally:
                await c.close()

        replies, done, parts = self.run_async(go())
        self.assertTrue(all(r.get("op") == "error" for r in replies), [r for r in replies if r.get("op") != "error"])
        self.assertLessEqual({r["code"] for r in replies}, CODES)
        self.assertEqual(done["state"], "done")
        self.assertEqual(parts["kappa"].shape, (8, 8))
        self.assertIsNone(self.kilnd.proc.poll())


class PendingPartsTest(ErrorCase):
    """Binary parts waiting for their message (SPEC §2, §7): a refused message's
    parts go with it, their number per connection is bounded, and their bytes are
    held in the memory budget (64 MiB here: inputs may hold about 31.5 MiB)."""
    env = {"KILN_MEMORY_MAX_BYTES": str(64 << 20)}

    ROW = np.array([[0.1, 0.2, 0.3, 1.5]], dtype="<f4")

    def rows_frame(self, ref):
        return encode_frame({"ref": ref, "part": "rows", "dtype": "f32", "shape": [1, 4]}, self.ROW.tobytes())

    async def assertRetryRuns(self, c, submit):
        """The retry of a refused submit, sending its part again, is accepted and runs."""
        await c.ws.send(self.rows_frame(submit["ref"]))
        acc = await c.call(submit)
        self.assertEqual(acc.get("op"), "accepted", acc)
        done, _, _ = await c.read_done(acc["job"])
        self.assertEqual(done["state"], "done", done)

    def test_a_message_refused_at_decoding_drops_its_parts_so_its_retry_works(self):
        async def go():
            c = await self.client()
            try:
                submit = {"op": "submit", "kind": "risk.score", "params": {"model": "altman-z2"}, "ref": 7}
                await c.ws.send(self.rows_frame(7))
                self.assertError(await c.call(dict(submit, priority="urgent")), "bad_request", "priority", 7)
                await self.assertRetryRuns(c, submit)
            finally:
                await c.close()

        self.run_async(go())

    def test_a_message_refused_as_malformed_drops_its_parts_too(self):
        async def go():
            c = await self.client()
            try:
                submit = {"op": "submit", "kind": "risk.score", "params": {"model": "altman-z2"}, "ref": [5, 1]}
                await c.ws.send(self.rows_frame([5, 1]))
                await c.ws.send('{"ref":[5,1],"op":"submit","op":"submit"}')  # a duplicate key
                err = await next_error(c)
                self.assertEqual(json.dumps(err.get("ref")), "[5, 1]", err)
                await self.assertRetryRuns(c, submit)
            finally:
                await c.close()

        self.run_async(go())

    def test_no_more_than_256_parts_wait_on_a_connection(self):
        async def go():
            c = await self.client()
            try:
                empty = {"part": "rows", "dtype": "f32", "shape": [0, 4]}  # no bytes at all
                for i in range(256):
                    await c.ws.send(encode_frame(dict(empty, ref=f"p{i}"), b""))
                stats = await c.call({"op": "stats"})  # answered in order: nothing was refused before it
                self.assertEqual(stats.get("op"), "stats", stats)
                await c.ws.send(encode_frame(dict(empty, ref="p256"), b""))
                self.assertError(await next_error(c), "too_large", "frame", "p256")
                await c.ws.send(encode_frame(dict(empty, ref="p0", offset=0), b""))  # continues a waiting part
                self.assertEqual((await c.call({"op": "stats"})).get("op"), "stats")
                # A message takes its parts (and drops those it does not use): room again.
                r = await c.call({"op": "submit", "kind": "risk.score", "params": {"model": "altman-z2"},
                                  "ref": "p1"})
                self.assertError(r, "bad_params", "params.rows")  # p1's rows have no row
                await c.ws.send(encode_frame(dict(empty, ref="p257"), b""))
                await self.assertUsable(c)
                self.assertEqual(c.backlog, [])
            finally:
                await c.close()

        self.run_async(go())

    def test_waiting_parts_hold_memory_budget_until_they_go(self):
        big = np.zeros((1 << 20, 1), dtype="<f4").tobytes()  # 4 MiB

        async def inputs_bytes(c):
            return (await c.call({"op": "stats"}))["memory"]["inputs_bytes"]

        async def go():
            c, watcher = await self.client(), await self.client()
            try:
                self.assertEqual(await inputs_bytes(watcher), 0)
                # Until the budget is full: each part holds its 4 MiB, and the message
                # it arrives in its reassembly buffer (8 MiB) while it is put together.
                waiting = 0
                while True:
                    await c.ws.send(encode_frame({"ref": waiting, "part": "x", "dtype": "f32",
                                                  "shape": [1 << 20, 1]}, big))
                    r = await c.call({"op": "stats"})  # a refusal of the frame comes before it
                    if c.backlog:
                        self.assertError(c.backlog.pop(0), "unavailable", "frame", waiting)
                        self.assertEqual(r["memory"]["inputs_bytes"], waiting << 22)
                        break
                    waiting += 1
                    self.assertEqual(r["memory"]["inputs_bytes"], waiting << 22)
                    self.assertLess(waiting, 8, "the parts went past the budget's room for inputs")
                self.assertGreaterEqual(waiting, 4)
                self.assertEqual(await inputs_bytes(watcher), waiting << 22)
                await c.close()  # returns once kilnd has closed the connection, and freed its parts
                self.assertEqual(await inputs_bytes(watcher), 0)
            finally:
                await c.close()
                await watcher.close()

        self.run_async(go())


class TooLargeTest(ErrorCase):
    # Binary parts waiting for their message are bounded by the larger of the
    # input and object limits (each use then checks its own).
    env = {"KILN_SERVER_MAX_MESSAGE_BYTES": "65536", "KILN_CPU_THREADS": "1",
           "KILN_LIMITS_MAX_INPUT_BYTES": "65536", "KILN_LIMITS_MAX_OBJECT_BYTES": "65536"}

    def test_message_over_the_limit_closes_that_connection_with_1009(self):
        async def go():
            other = await self.client()
            c = await self.client()
            big = json.dumps({"op": "stats", "ref": "x" * 70000})
            await c.ws.send(big)
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                while True:
                    await c.recv(10)
            # Bad input on one connection leaves the others alone.
            done, _ = await other.run(KIND, dict(GOOD, mass=fresh_mass()))
            await other.close()
            return cm.exception, done

        closed, done = self.run_async(go())
        self.assertEqual(closed.rcvd.code if closed.rcvd else closed.code, 1009)
        self.assertEqual(done["state"], "done")

    def test_message_under_the_limit_is_served(self):
        async def go():
            c = await self.client()
            try:
                r = await c.call({"op": "stats", "ref": "x" * 60000})
                return r
            finally:
                await c.close()

        self.assertEqual(self.run_async(go())["op"], "stats")

    def test_binary_parts_over_the_limit_in_total_are_too_large(self):
        async def go():
            c = await self.client()
            try:
                hdr = {"ref": "parts", "part": "a", "dtype": "u8", "shape": [40000]}
                await c.ws.send(encode_frame(hdr, b"\1" * 40000))
                await c.ws.send(encode_frame(dict(hdr, part="b"), b"\2" * 40000))
                err = await next_error(c)
                await self.assertUsable(c)
                return err
            finally:
                await c.close()

        self.assertError(self.run_async(go()), "too_large", ref="parts")


def sha256_hex(token):
    return hashlib.sha256(token.encode()).hexdigest()


class AuthTest(ErrorCase):
    """Tokens required: two tokens of two tenants."""
    ALICE, BOB = "alice-secret-token", "bob-secret-token"

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_AUTH_REQUIRED": "true", "KILN_CPU_THREADS": "1"})
        with open(os.path.join(cls.kilnd.tmp, "tokens"), "w") as f:
            f.write(f"alice acme submit {sha256_hex(cls.ALICE)}\n")
            f.write(f"bob globex submit {sha256_hex(cls.BOB)}\n")
        cls.kilnd.start()

    def test_every_op_before_hello_is_unauthorized(self):
        msgs = [
            {"op": "submit", "kind": KIND, "params": GOOD},
            {"op": "status", "job": random_job_id()},
            {"op": "result", "job": random_job_id()},
            {"op": "watch", "job": random_job_id()},
            {"op": "cancel", "job": random_job_id()},
            {"op": "list"},
            {"op": "stats"},
            {"op": "subscribe", "topic": "stats"},
        ]

        async def go():
            c = await self.client(hello=False)
            try:
                for msg in msgs:
                    with self.subTest(op=msg["op"]):
                        ref = "u-" + msg["op"]
                        self.assertError(await c.call(dict(msg, ref=ref)), "unauthorized", ref=ref)
                await c.ws.send(encode_frame({"ref": "bin", "part": "p", "dtype": "u8", "shape": [1]}, b"\0"))
                self.assertError(await next_error(c), "unauthorized", ref="bin")
                # Still open: a good hello now works.
                w = await c.call({"op": "hello", "token": self.ALICE})
                self.assertEqual(w["op"], "welcome", w)
            finally:
                await c.close()

        self.run_async(go())

    def test_hello_with_a_bad_or_missing_token_is_unauthorized_naming_token(self):
        async def go():
            c = await self.client(hello=False)
            try:
                for tok in ["wrong", self.ALICE + "x", "", sha256_hex(self.ALICE), None]:
                    with self.subTest(token=tok):
                        msg = {"op": "hello", "client": "kiln-tests/1", "ref": "h"}
                        if tok is not None:
                            msg["token"] = tok
                        self.assertError(await c.call(msg), "unauthorized", "token", "h")
                        self.assertError(await c.call({"op": "stats", "ref": "s"}), "unauthorized", ref="s")
                w = await c.call({"op": "hello", "token": self.BOB, "client": "kiln-tests/1"})
                self.assertEqual(w["op"], "welcome", w)
                self.assertEqual(w["tenant"], "globex")
            finally:
                await c.close()

        self.run_async(go())

    def test_hello_with_a_good_token_names_its_tenant_and_role(self):
        async def go():
            c = await self.client(hello=False)
            try:
                w = await c.call({"op": "hello", "token": self.ALICE, "client": "kiln-tests/1"})
                done, _ = await c.run(KIND, dict(GOOD, mass=fresh_mass()))
                return w, done
            finally:
                await c.close()

        w, done = self.run_async(go())
        self.assertEqual(w["op"], "welcome")
        self.assertEqual(w["tenant"], "acme")
        self.assertEqual(w["role"], "submit")
        self.assertEqual(done["state"], "done")

    def test_job_of_another_tenant_is_not_found(self):
        async def go():
            alice = await self.client(token=self.ALICE)
            bob = await self.client(token=self.BOB)
            try:
                done, _ = await alice.run(KIND, dict(GOOD, mass=fresh_mass()))
                job = done["job"]
                for op in ["status", "result", "watch", "cancel"]:
                    with self.subTest(op=op):
                        await self.bad(bob, {"op": op, "job": job}, "not_found", "job")
                listed = await bob.call({"op": "list", "limit": 1000})
                self.assertNotIn(job, [j["job"] for j in listed["jobs"]])
                st = await alice.call({"op": "status", "job": job})
                self.assertEqual(st["state"], "done")
            finally:
                await alice.close()
                await bob.close()

        self.run_async(go())

    def test_live_job_of_another_tenant_is_not_found(self):
        async def go():
            alice = await self.client(token=self.ALICE)
            bob = await self.client(token=self.BOB)
            try:
                acc = await alice.submit(KIND, dict(BLOCKER, mass=fresh_mass()))
                job = acc["job"]
                await wait_for(alice, lambda m: m.get("op") == "progress" and m["job"] == job)
                for op in ["status", "watch", "cancel", "result"]:
                    with self.subTest(op=op):
                        await self.bad(bob, {"op": op, "job": job}, "not_found", "job")
                st = await alice.call({"op": "status", "job": job})
                self.assertEqual(st["state"], "running")  # bob's cancel did nothing
                await alice.call({"op": "cancel", "job": job})
                await wait_for(alice, done_of(job))
            finally:
                await alice.close()
                await bob.close()

        self.run_async(go())


class QueueFullTest(ErrorCase):
    env = {"KILN_JOBS_MAX_QUEUED": "2", "KILN_CPU_THREADS": "1"}

    def test_submit_beyond_max_queued_is_queue_full(self):
        async def go():
            c = await self.client()
            blocker = (await c.submit(KIND, dict(BLOCKER, mass=fresh_mass())))["job"]
            await wait_for(c, lambda m: m.get("op") == "progress" and m["job"] == blocker)
            accepted, refused = [], None
            try:
                for i in range(3):  # at most 2 may wait; the third is refused at the latest
                    r = await c.call({"op": "submit", "kind": KIND, "params": dict(GOOD, mass=fresh_mass()),
                                      "ref": f"q{i}"})
                    if r["op"] == "error":
                        refused = r
                        break
                    self.assertEqual(r["op"], "accepted", r)
                    accepted.append(r["job"])
                self.assertIsNotNone(refused, "three jobs waited with jobs.max_queued = 2")
                self.assertError(refused, "queue_full", ref=f"q{len(accepted)}")
                await self.assertUsable(c)
            finally:
                await c.call({"op": "cancel", "job": blocker})
                for job in accepted:
                    await c.call({"op": "cancel", "job": job})
            for job in [blocker] + accepted:
                await wait_for(c, done_of(job))
            # Room again once the queue has drained.
            done, _ = await c.run(KIND, dict(GOOD, mass=fresh_mass()))
            await c.close()
            return done

        self.assertEqual(self.run_async(go())["state"], "done")

    def test_running_job_does_not_count_against_max_queued(self):
        # jobs.max_queued is "most jobs waiting to run": with the worker busy, two
        # may wait and the third is refused.
        async def go():
            c = await self.client()
            blocker = (await c.submit(KIND, dict(BLOCKER, mass=fresh_mass())))["job"]
            await wait_for(c, lambda m: m.get("op") == "progress" and m["job"] == blocker)
            replies = []
            try:
                for i in range(3):
                    replies.append(await c.call({"op": "submit", "kind": KIND,
                                                 "params": dict(GOOD, mass=fresh_mass()), "ref": f"w{i}"}))
            finally:
                for job in [blocker] + [r["job"] for r in replies if r["op"] == "accepted"]:
                    await c.call({"op": "cancel", "job": job})
                    await wait_for(c, done_of(job))
                await c.close()
            return replies

        replies = self.run_async(go())
        self.assertEqual([r["op"] for r in replies[:2]], ["accepted", "accepted"], replies)
        self.assertError(replies[2], "queue_full", ref="w2")


class ShutdownTest(ErrorCase):
    """SIGTERM with a job running: new submissions get shutting_down on connections
    already open, which stay open until the running job has finished."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = Kilnd(env={"KILN_CPU_THREADS": "1"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.kilnd.cleanup()

    def draining(self):
        try:
            with urllib.request.urlopen(self.kilnd.http + "/readyz", timeout=2) as r:
                return r.status != 200
        except (urllib.error.HTTPError, OSError):
            return True

    def test_submit_while_draining_is_shutting_down_and_running_job_finishes(self):
        async def go():
            c = await self.client()
            acc = await c.submit(KIND, {"mass": fresh_mass(), "concentration": 5, "grid_size": 8192},
                                 ref="running")
            job = acc["job"]
            await wait_for(c, lambda m: m.get("op") == "progress" and m["job"] == job)
            self.kilnd.proc.send_signal(signal.SIGTERM)
            end = time.monotonic() + 10
            while not self.draining():
                self.assertLess(time.monotonic(), end, "kilnd did not start draining")
                await asyncio.sleep(0.02)
            refused = await c.call({"op": "submit", "kind": KIND, "params": dict(GOOD, mass=fresh_mass()),
                                    "ref": "late"})
            st = await c.call({"op": "status", "job": job})
            try:
                done, parts, _ = await c.read_done(job, timeout=60)
            except websockets.ConnectionClosed as e:
                self.fail(f"the connection closed ({e!r}) before the running job's done and parts arrived")
            return refused, st, done, parts

        refused, st, done, parts = self.run_async(go())
        self.assertError(refused, "shutting_down", ref="late")
        self.assertEqual(st["state"], "running")
        self.assertEqual(done["state"], "done")
        self.assertEqual(parts["kappa"].shape, (8192, 8192))
        self.assertEqual(self.kilnd.proc.wait(30), 0)


if __name__ == "__main__":
    unittest.main()
