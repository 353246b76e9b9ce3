"""Stored objects (SPEC §2.4) against the real kilnd over the WebSocket: models
(model.put, model.list, model.delete) and vector collections (vec.put, vec.info,
vec.list, vec.delete, vec.drop), their binary parts in one KLNB frame or in
several with "offset", roles, tenant isolation, the [limits] on objects, and
durability across kill -9.

Where SPEC §2.4 leaves a detail open, these tests hold kilnd to this reading:
  - model.list answers {"op":"models","models":[{name, version, trees, features,
    bytes}]}; vec.list answers {"op":"collections","collections":[...]} whose
    entries carry the fields of the `vec` reply (collection, version, count, dim,
    metric).
  - model.delete of an unknown name is not_found (field "name"); vec.info,
    vec.delete and vec.drop of an unknown collection are not_found (field
    "collection").
  - vec.put may leave "metric" out when the collection exists (it is required
    when the put creates it).
  - A put without its part is bad_params with a field that names the part
    ("model", "vectors"); a metric other than the collection's is bad_params with
    field "metric", another dim bad_params with a field naming "vectors"; bad ids
    bad_params with a field starting with "ids".
  - A frame whose offset and payload run past the part's shape is bad_request (a
    malformed frame, §2.5); a part whose frames leave a hole is refused when its
    message arrives (bad_request or bad_params) and nothing is stored.
  - The three object limits refuse with too_large: an object over
    limits.max_object_bytes, a new object past limits.max_objects_per_tenant, and a
    change that takes the tenant past limits.max_tenant_bytes (replacing an object
    counts its new size instead of its old one). Nothing refused is stored.
  - Versions are never reused: a name put again after model.delete or vec.drop gets
    a version above every earlier one (results cached under an old version must
    never be served).
"""
import asyncio
import signal
import unittest

import numpy as np

from kiln_fixture import Client, Kilnd, KilndTestCase, encode_frame
from kiln_objects import (connect_welcome, model_list, model_put, next_ref, part_frames, send_frames,
                          start_with_tokens, unit_rows, vec_list, vec_put, xgb_model,
                          xgb_model_of_size, vectors_payload)


MODEL_FIELDS = ("name", "version", "trees", "features", "bytes")
VEC_FIELDS = ("collection", "version", "count", "dim", "metric")


def fields(m, keys):
    """The contract's fields of a reply or list entry (anything else it carries aside)."""
    return {k: m.get(k) for k in keys}


async def replies_to(c, refs):
    """The replies to `refs`, in that order, whatever order they came in."""
    replies = {}
    while len(replies) < len(refs):
        m = await c.recv(60)
        if isinstance(m, dict) and m.get("ref") in refs:
            replies[m["ref"]] = m
    return [replies[r] for r in refs]

class ObjectAsserts:

    def assertError(self, m, code, field=None):
        self.assertEqual(m.get("op"), "error", m)
        self.assertEqual(m.get("code"), code, m)
        if field is not None:
            self.assertEqual(m.get("field"), field, m)
        self.assertTrue(m.get("message"), m)

    def assertModel(self, m, name, trees, features, nbytes):
        self.assertEqual(m.get("op"), "model", m)
        self.assertEqual(m["name"], name)
        self.assertEqual(m["trees"], trees)
        self.assertEqual(m["features"], features)
        self.assertEqual(m["bytes"], nbytes)
        self.assertIsInstance(m["version"], int)
        self.assertGreaterEqual(m["version"], 1)

    def assertVec(self, m, collection, count, dim, metric):
        self.assertEqual(m.get("op"), "vec", m)
        self.assertEqual(m["collection"], collection)
        self.assertEqual(m["count"], count)
        self.assertEqual(m["dim"], dim)
        self.assertEqual(m["metric"], metric)
        self.assertIsInstance(m["version"], int)
        self.assertGreaterEqual(m["version"], 1)


class ObjectCase(ObjectAsserts, KilndTestCase):

    def go(self, fn, timeout=120):
        """Runs fn(client) on a fresh connection (admin of tenant default: auth is off)."""
        async def run():
            c = await self.client()
            try:
                return await fn(c)
            finally:
                await c.close()
        return self.run_async(run(), timeout)


class ModelTest(ObjectCase):

    def test_put_answers_name_version_trees_features_and_bytes(self):
        data = xgb_model(n_trees=7, n_features=4)

        async def go(c):
            return await model_put(c, "m-basic", data)
        r = self.go(go)
        self.assertModel(r, "m-basic", 7, 4, len(data))

    def test_put_again_bumps_the_version_and_describes_the_new_model(self):
        first, second = xgb_model(n_trees=3, n_features=2), xgb_model(n_trees=9, n_features=6, seed=1)

        async def go(c):
            a = await model_put(c, "m-again", first)
            b = await model_put(c, "m-again", second)
            listed = (await model_list(c))["m-again"]
            return a, b, listed
        a, b, listed = self.go(go)
        self.assertModel(a, "m-again", 3, 2, len(first))
        self.assertModel(b, "m-again", 9, 6, len(second))
        self.assertGreater(b["version"], a["version"])
        self.assertEqual(fields(listed, MODEL_FIELDS), fields(b, MODEL_FIELDS))

    def test_list_shows_every_model_with_its_fields(self):
        models = {f"m-list-{i}": xgb_model(n_trees=i + 1, n_features=3, seed=i) for i in range(3)}

        async def go(c):
            replies = {name: await model_put(c, name, data) for name, data in models.items()}
            return replies, await model_list(c)
        replies, listed = self.go(go)
        for name, data in models.items():
            self.assertIn(name, listed)
            entry = listed[name]
            self.assertEqual(entry["version"], replies[name]["version"])
            self.assertEqual(entry["trees"], replies[name]["trees"])
            self.assertEqual(entry["features"], 3)
            self.assertEqual(entry["bytes"], len(data))

    def test_delete_removes_the_model_and_an_unknown_name_is_not_found(self):
        async def go(c):
            await model_put(c, "m-del", xgb_model())
            ok = await c.call({"op": "model.delete", "name": "m-del"})
            after = await model_list(c)
            again = await c.call({"op": "model.delete", "name": "m-del"})
            never = await c.call({"op": "model.delete", "name": "m-never-put"})
            return ok, after, again, never
        ok, after, again, never = self.go(go)
        self.assertEqual(ok["op"], "ok", ok)
        self.assertNotIn("m-del", after)
        self.assertError(again, "not_found", "name")
        self.assertError(never, "not_found", "name")

    def test_a_name_put_again_after_delete_gets_a_newer_version(self):
        async def go(c):
            a = await model_put(c, "m-reborn", xgb_model())
            b = await model_put(c, "m-reborn", xgb_model(seed=2))
            await c.call({"op": "model.delete", "name": "m-reborn"})
            return a, b, await model_put(c, "m-reborn", xgb_model(seed=3))
        a, b, c_ = self.go(go)
        self.assertGreater(c_["version"], b["version"])
        self.assertGreater(b["version"], a["version"])

    def test_xgboost_3_base_score_in_brackets_is_accepted(self):
        data = xgb_model(n_trees=4, n_features=3, base_score="[5E-1]")

        async def go(c):
            return await model_put(c, "m-xgb3", data)
        self.assertModel(self.go(go), "m-xgb3", 4, 3, len(data))

    def test_a_model_trained_by_xgboost_is_accepted(self):
        try:
            import xgboost
        except ImportError:
            self.skipTest("python3-xgboost is not installed")
        import tempfile
        rng = np.random.default_rng(5)
        x = rng.normal(size=(400, 6)).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(np.float32)
        booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                                xgboost.DMatrix(x, label=y), num_boost_round=12)
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/m.json"
            booster.save_model(path)
            with open(path, "rb") as f:
                data = f.read()

        async def go(c):
            return await model_put(c, "m-trained", data)
        self.assertModel(self.go(go), "m-trained", 12, 6, len(data))

    def test_unsupported_or_broken_models_are_bad_params_and_not_stored(self):
        cases = {
            "m-bad-objective": xgb_model(objective="reg:squarederror"),
            "m-bad-booster": xgb_model(booster="gblinear"),
            "m-bad-categorical": xgb_model(categorical=True),
            "m-bad-json": b'{"learner": {"gradient_booster": ',
            "m-bad-shape": b'{"hello": "world"}',
            "m-bad-binary": bytes(range(256)),
        }

        async def go(c):
            replies = {name: await model_put(c, name, data) for name, data in cases.items()}
            return replies, await model_list(c)
        replies, listed = self.go(go)
        for name, r in replies.items():
            self.assertError(r, "bad_params")
            self.assertNotIn(name, listed)
        self.assertIn("objective", replies["m-bad-objective"]["message"] + replies["m-bad-objective"].get("field", ""))

    def test_the_names_of_built_in_models_are_not_taken(self):
        # risk.score with model "altman-z" always runs the built-in: a stored model
        # of that name could never be used.
        async def go(c):
            replies = [await model_put(c, name, xgb_model()) for name in ("altman-z", "altman-z2")]
            # What was sent with the refused put goes with it: the ref is free again.
            again = await model_put(c, "altman-zz", xgb_model(), ref=replies[0]["ref"])
            return replies, again, await model_list(c)
        replies, again, listed = self.go(go)
        for r in replies:
            self.assertError(r, "bad_params", "name")
            self.assertIn("built-in", r["message"])
        self.assertEqual(again.get("op"), "model", again)
        self.assertNotIn("altman-z", listed)

    def test_put_without_its_model_part_is_bad_params(self):
        async def go(c):
            return await c.call({"op": "model.put", "name": "m-no-part"}), await model_list(c)
        r, listed = self.go(go)
        self.assertError(r, "bad_params")
        self.assertIn("model", r.get("field", ""), r)
        self.assertNotIn("m-no-part", listed)

    def test_a_part_of_another_ref_is_not_taken(self):
        data = xgb_model()

        async def go(c):
            await send_frames(c, part_frames("other-ref", "model", "bytes", [len(data)], data))
            return await c.call({"op": "model.put", "name": "m-wrong-ref", "ref": "my-ref"})
        r = self.go(go)
        self.assertError(r, "bad_params")
        self.assertEqual(r["ref"], "my-ref")

    def test_model_in_several_frames_with_offsets_in_any_order(self):
        data, trees = xgb_model_of_size(300_000)

        async def go(c):
            a = await model_put(c, "m-pieces", data, piece=40_000)
            b = await model_put(c, "m-pieces-rev", data, piece=65_536, order="reverse")
            return a, b
        a, b = self.go(go)
        self.assertModel(a, "m-pieces", trees, 5, len(data))
        self.assertModel(b, "m-pieces-rev", trees, 5, len(data))

    def test_a_frame_past_the_end_of_its_part_is_bad_request(self):
        data = xgb_model()

        async def go(c):
            ref = next_ref(c)
            header = {"ref": ref, "part": "model", "dtype": "bytes", "shape": [len(data)], "offset": len(data) - 10}
            await c.ws.send(encode_frame(header, data[:20]))
            # The first reply that echoes the ref: the frame's own error.
            r = await c.call({"op": "model.put", "name": "m-overrun", "ref": ref})
            return r, await model_list(c)
        r, listed = self.go(go)
        self.assertError(r, "bad_request")
        self.assertNotIn("m-overrun", listed)

    def test_a_part_with_a_hole_is_refused_and_not_stored(self):
        data = xgb_model(n_trees=40)

        async def go(c):
            ref = next_ref(c)
            frames = part_frames(ref, "model", "bytes", [len(data)], data, piece=1000)
            await send_frames(c, frames[:2] + frames[3:])  # the third piece never comes
            r = await c.call({"op": "model.put", "name": "m-hole", "ref": ref})
            return r, await model_list(c)
        r, listed = self.go(go)
        self.assertEqual(r.get("op"), "error", r)
        self.assertIn(r["code"], ("bad_request", "bad_params"), r)
        self.assertNotIn("m-hole", listed)


class LargeModelTest(ObjectAsserts, KilndTestCase):
    """A model larger than server.max_message_bytes arrives in frames below it."""

    env = {"KILN_SERVER_MAX_MESSAGE_BYTES": "65536"}

    def test_model_larger_than_a_message_arrives_in_frames(self):
        data, trees = xgb_model_of_size(400_000)

        async def go():
            c = await self.client()
            try:
                r = await model_put(c, "m-large", data, piece=60_000)
                return r, await model_list(c)
            finally:
                await c.close()
        r, listed = self.run_async(go())
        self.assertModel(r, "m-large", trees, 5, len(data))
        self.assertEqual(listed["m-large"]["bytes"], len(data))


class CollectionTest(ObjectCase):

    def test_put_creates_a_collection_and_answers_its_state(self):
        v = unit_rows(10, 8, seed=1)

        async def go(c):
            return await vec_put(c, "c-new", v, [f"id-{i}" for i in range(10)], metric="cosine")
        self.assertVec(self.go(go), "c-new", 10, 8, "cosine")

    def test_put_adds_and_replaces_ids_and_every_change_bumps_the_version(self):
        async def go(c):
            a = await vec_put(c, "c-grow", unit_rows(4, 3, 1), ["a", "b", "c", "d"], metric="l2")
            # "c" and "d" are replaced, "e" is added; the metric may be left out now.
            b = await vec_put(c, "c-grow", unit_rows(3, 3, 2), ["c", "d", "e"])
            d = await c.call({"op": "vec.delete", "collection": "c-grow", "ids": ["a", "e"]})
            info = await c.call({"op": "vec.info", "collection": "c-grow"})
            return a, b, d, info
        a, b, d, info = self.go(go)
        self.assertVec(a, "c-grow", 4, 3, "l2")
        self.assertVec(b, "c-grow", 5, 3, "l2")
        self.assertVec(d, "c-grow", 3, 3, "l2")
        self.assertGreater(b["version"], a["version"])
        self.assertGreater(d["version"], b["version"])
        self.assertEqual(fields(info, VEC_FIELDS), fields(d, VEC_FIELDS))

    def test_info_and_list(self):
        async def go(c):
            p = await vec_put(c, "c-listed", unit_rows(6, 5, 3), list("uvwxyz"), metric="ip")
            info = await c.call({"op": "vec.info", "collection": "c-listed"})
            return p, info, await vec_list(c)
        p, info, listed = self.go(go)
        self.assertVec(info, "c-listed", 6, 5, "ip")
        self.assertEqual(info["version"], p["version"])
        self.assertEqual(fields(listed["c-listed"], VEC_FIELDS), fields(p, VEC_FIELDS))

    def test_a_list_or_info_sent_after_a_change_in_one_pipeline_sees_it(self):
        """Lists and infos are read off the writer's queue, but a session's own
        changes in flight come first: a put (big enough to be checked on a worker
        for a while), a drop and a put again, each followed at once by an info and
        a list, without waiting for any reply. The put again is small: checked
        first, it still waits for the drop before it."""
        rows = np.random.default_rng(5).normal(size=(200000, 32)).astype(np.float32)
        ids = [f"r{i}" for i in range(len(rows))]

        async def go(c):
            refs = []
            payload, shape = vectors_payload(rows)
            put = next_ref(c)
            await send_frames(c, part_frames(put, "vectors", "f32", shape, payload))
            await c.send({"op": "vec.put", "collection": "c-pipe", "ids": ids, "metric": "ip", "ref": put})
            refs.append(put)
            for op in ({"op": "vec.info", "collection": "c-pipe"}, {"op": "vec.list"},
                       {"op": "vec.drop", "collection": "c-pipe"},
                       {"op": "vec.info", "collection": "c-pipe"}, {"op": "vec.list"}):
                refs.append(await c.send(op))
            again = next_ref(c)
            await send_frames(c, part_frames(again, "vectors", "f32", [2, 4], unit_rows(2, 4, 1).tobytes()))
            await c.send({"op": "vec.put", "collection": "c-pipe", "ids": ["a", "b"], "metric": "l2", "ref": again})
            refs.append(again)
            refs.append(await c.send({"op": "vec.info", "collection": "c-pipe"}))
            return await replies_to(c, refs)
        put, info, listed, dropped, info2, listed2, put2, info3 = self.go(go)
        self.assertVec(put, "c-pipe", 200000, 32, "ip")
        self.assertEqual(info.get("version"), put.get("version"), (put, info))
        self.assertEqual(info["count"], 200000, info)
        self.assertIn("c-pipe", [e["collection"] for e in listed["collections"]])
        self.assertEqual(dropped["op"], "ok", dropped)
        self.assertError(info2, "not_found", "collection")
        self.assertNotIn("c-pipe", [e["collection"] for e in listed2["collections"]])
        self.assertVec(put2, "c-pipe", 2, 4, "l2")
        self.assertGreater(put2["version"], put["version"])
        self.assertEqual((info3["version"], info3["count"]), (put2["version"], 2), info3)

    def test_a_put_pipelined_behind_a_change_is_checked_against_what_it_made(self):
        """A put's check reads the collection as stored (a put naming no metric
        takes the collection's; one that creates it needs one): pipelined behind
        the same session's put that creates the collection, or behind its drop,
        it is checked once they are stored, not against the store before them."""
        big = np.random.default_rng(6).normal(size=(100000, 8)).astype(np.float32)

        async def pipelined(c, msgs):
            refs = []
            for part, msg in msgs:
                ref = next_ref(c)
                if part is not None:
                    payload, shape = vectors_payload(part)
                    await send_frames(c, part_frames(ref, "vectors", "f32", shape, payload))
                await c.send(dict(msg, ref=ref))
                refs.append(ref)
            return await replies_to(c, refs)

        async def go(c):
            created, added = await pipelined(c, [
                (big, {"op": "vec.put", "collection": "c-made", "ids": [f"r{i}" for i in range(len(big))],
                       "metric": "cosine"}),
                (unit_rows(2, 8, 7), {"op": "vec.put", "collection": "c-made", "ids": ["x", "y"]})])
            first = await vec_put(c, "c-again", unit_rows(3, 4, 8), ["a", "b", "c"], metric="l2")
            dropped, again = await pipelined(c, [
                (None, {"op": "vec.drop", "collection": "c-again"}),
                (unit_rows(2, 16, 9), {"op": "vec.put", "collection": "c-again", "ids": ["p", "q"], "metric": "ip"})])
            return created, added, first, dropped, again
        created, added, first, dropped, again = self.go(go)
        self.assertVec(created, "c-made", 100000, 8, "cosine")
        self.assertVec(added, "c-made", 100002, 8, "cosine")
        self.assertVec(first, "c-again", 3, 4, "l2")
        self.assertEqual(dropped["op"], "ok", dropped)
        self.assertVec(again, "c-again", 2, 16, "ip")

    def test_drop_removes_the_collection_and_its_name_goes_on_with_newer_versions(self):
        async def go(c):
            a = await vec_put(c, "c-drop", unit_rows(2, 2, 4), ["p", "q"], metric="l2")
            ok = await c.call({"op": "vec.drop", "collection": "c-drop"})
            info = await c.call({"op": "vec.info", "collection": "c-drop"})
            listed = await vec_list(c)
            again = await c.call({"op": "vec.drop", "collection": "c-drop"})
            # Re-created with another metric and dim: a new collection, a newer version.
            b = await vec_put(c, "c-drop", unit_rows(3, 4, 5), ["p", "q", "r"], metric="cosine")
            return a, ok, info, listed, again, b
        a, ok, info, listed, again, b = self.go(go)
        self.assertEqual(ok["op"], "ok", ok)
        self.assertError(info, "not_found", "collection")
        self.assertNotIn("c-drop", listed)
        self.assertError(again, "not_found", "collection")
        self.assertVec(b, "c-drop", 3, 4, "cosine")
        self.assertGreater(b["version"], a["version"])

    def test_unknown_collection_is_not_found(self):
        async def go(c):
            return [await c.call(m) for m in (
                {"op": "vec.info", "collection": "c-nowhere"},
                {"op": "vec.delete", "collection": "c-nowhere", "ids": ["a"]},
                {"op": "vec.drop", "collection": "c-nowhere"},
            )]
        for r in self.go(go):
            self.assertError(r, "not_found", "collection")

    def test_another_metric_or_dim_is_bad_params_and_changes_nothing(self):
        async def go(c):
            a = await vec_put(c, "c-fixed", unit_rows(3, 4, 6), ["a", "b", "c"], metric="l2")
            metric = await vec_put(c, "c-fixed", unit_rows(1, 4, 7), ["d"], metric="cosine")
            dim = await vec_put(c, "c-fixed", unit_rows(1, 5, 8), ["d"], metric="l2")
            dim2 = await vec_put(c, "c-fixed", unit_rows(1, 3, 8), ["d"])
            info = await c.call({"op": "vec.info", "collection": "c-fixed"})
            return a, metric, dim, dim2, info
        a, metric, dim, dim2, info = self.go(go)
        self.assertError(metric, "bad_params", "metric")
        for r in (dim, dim2):
            self.assertError(r, "bad_params")
            self.assertIn("vectors", r.get("field", ""), r)
        self.assertVec(info, "c-fixed", 3, 4, "l2")
        self.assertEqual(info["version"], a["version"])

    def test_bad_puts_are_bad_params_and_create_nothing(self):
        v2 = unit_rows(2, 4, 9)

        async def go(c):
            out = {}
            out["no-metric"] = await vec_put(c, "c-bad-1", v2, ["a", "b"])
            out["metric"] = await vec_put(c, "c-bad-2", v2, ["a", "b"], metric="hamming")
            out["count"] = await vec_put(c, "c-bad-3", v2, ["a", "b", "c"], metric="l2")
            out["empty-id"] = await vec_put(c, "c-bad-4", v2, ["a", ""], metric="l2")
            out["long-id"] = await vec_put(c, "c-bad-5", v2, ["a", "x" * 257], metric="l2")
            out["dim"] = await vec_put(c, "c-bad-6", np.zeros((1, 4097), np.float32), ["a"], metric="l2")
            ref = next_ref(c)
            await send_frames(c, part_frames(ref, "vectors", "u8", [2, 4], bytes(8)))
            out["dtype"] = await c.call({"op": "vec.put", "collection": "c-bad-7", "metric": "l2", "ids": ["a", "b"],
                                         "ref": ref})
            out["no-part"] = await c.call({"op": "vec.put", "collection": "c-bad-8", "metric": "l2", "ids": ["a"]})
            return out, await vec_list(c)
        out, listed = self.go(go)
        for what, r in out.items():
            with self.subTest(what):
                self.assertError(r, "bad_params")
        self.assertEqual(out["no-metric"]["field"], "metric")
        self.assertEqual(out["metric"]["field"], "metric")
        for what in ("count", "empty-id", "long-id"):
            self.assertTrue(out[what].get("field", "").startswith("ids"), out[what])
        for what in ("dim", "dtype", "no-part"):
            self.assertIn("vectors", out[what].get("field", ""), out[what])
        self.assertFalse([n for n in listed if n.startswith("c-bad-")], listed)

    def test_ids_of_256_bytes_and_dim_4096_are_taken(self):
        ids = ["é" * 128, "b" * 256]

        async def go(c):
            return await vec_put(c, "c-edges", np.ones((2, 4096), np.float32), ids, metric="ip")
        self.assertVec(self.go(go), "c-edges", 2, 4096, "ip")

    def test_vectors_in_several_frames_with_offsets_in_any_order(self):
        v = unit_rows(300, 64, seed=10)  # 76,800 bytes
        ids = [f"v{i:04d}" for i in range(300)]

        async def go(c):
            a = await vec_put(c, "c-pieces", v, ids, metric="l2", piece=10_000, order="reverse")
            return a, await c.call({"op": "vec.info", "collection": "c-pieces"})
        a, info = self.go(go)
        self.assertVec(a, "c-pieces", 300, 64, "l2")
        self.assertEqual(info["count"], 300)


class SearchAfterUploadTest(ObjectAsserts, KilndTestCase):
    """What a vec.put stored is what vec.search finds: the rows arrive intact and
    under their ids, whether in one frame or in pieces out of order."""

    def test_rows_sent_in_pieces_are_searched_as_sent(self):
        v = unit_rows(200, 16, seed=11)
        ids = [f"row-{i:03d}" for i in range(200)]
        q = unit_rows(3, 16, seed=12)

        async def go():
            c, w = await connect_welcome(self.kilnd.url)
            try:
                if "vec.search" not in w.get("kinds", []):
                    return None
                put = await vec_put(c, "c-search", v, ids, metric="cosine", piece=1000, order="reverse")
                done, parts = await c.run("vec.search", {"collection": "c-search", "k": 5,
                                                          "queries": q.tolist()})
                return put, done, parts
            finally:
                await c.close()
        got = self.run_async(go())
        if got is None:
            self.skipTest("this kilnd has no vec.search kind")
        put, done, parts = got
        self.assertVec(put, "c-search", 200, 16, "cosine")
        self.assertEqual(done["state"], "done", done)
        scores = q @ v.T
        for i in range(3):
            best = np.argsort(-scores[i], kind="stable")[:5]
            self.assertEqual(done["result"]["ids"][i], [ids[j] for j in best])
            np.testing.assert_allclose(parts["scores"][i], scores[i][best], rtol=1e-5, atol=1e-6)
        self.assertEqual(done["result"]["collection_version"], put["version"])


class TokenCase(ObjectAsserts, unittest.TestCase):
    """One kilnd per class with authentication on and kiln_objects.TOKENS."""

    @classmethod
    def setUpClass(cls):
        cls.kilnd = start_with_tokens()

    @classmethod
    def tearDownClass(cls):
        code = cls.kilnd.stop()
        log = cls.kilnd.read_log()
        cls.kilnd.cleanup()
        if code != 0:
            raise AssertionError(f"kilnd exited with {code}:\n{log}")

    def go(self, token, fn):
        """Runs fn(client) on a fresh connection signed in with `token`."""
        async def run():
            c = await Client.connect(self.kilnd.url, token=token)
            try:
                return await fn(c)
            finally:
                await c.close()
        return asyncio.run(asyncio.wait_for(run(), 120))


class RoleTest(TokenCase):
    """Who may do what (SPEC §2.4): model.put and model.delete need admin; vec.put,
    vec.delete and vec.drop writer or admin; model.list, vec.info and vec.list read."""

    def test_read_role_lists_but_cannot_change(self):
        async def admin(c):
            await model_put(c, "r-model", xgb_model())
            await vec_put(c, "r-coll", unit_rows(2, 3, 1), ["a", "b"], metric="l2")
        self.go("obj-admin", admin)

        async def reader(c):
            out = {
                "model.put": await model_put(c, "r-model-2", xgb_model()),
                "model.delete": await c.call({"op": "model.delete", "name": "r-model"}),
                "vec.put": await vec_put(c, "r-coll", unit_rows(1, 3, 2), ["c"]),
                "vec.delete": await c.call({"op": "vec.delete", "collection": "r-coll", "ids": ["a"]}),
                "vec.drop": await c.call({"op": "vec.drop", "collection": "r-coll"}),
            }
            return out, await model_list(c), await vec_list(c), await c.call({"op": "vec.info", "collection": "r-coll"})
        out, models, colls, info = self.go("obj-read", reader)
        for op, r in out.items():
            with self.subTest(op):
                self.assertError(r, "forbidden")
        self.assertIn("r-model", models)
        self.assertNotIn("r-model-2", models)
        self.assertIn("r-coll", colls)
        self.assertVec(info, "r-coll", 2, 3, "l2")

    def test_writer_changes_collections_but_not_models(self):
        async def writer(c):
            put = await vec_put(c, "w-coll", unit_rows(3, 2, 3), ["a", "b", "c"], metric="ip")
            delete = await c.call({"op": "vec.delete", "collection": "w-coll", "ids": ["a"]})
            drop = await c.call({"op": "vec.drop", "collection": "w-coll"})
            mput = await model_put(c, "w-model", xgb_model())
            mdel = await c.call({"op": "model.delete", "name": "w-model"})
            return put, delete, drop, mput, mdel, await model_list(c)
        put, delete, drop, mput, mdel, models = self.go("obj-writer", writer)
        self.assertVec(put, "w-coll", 3, 2, "ip")
        self.assertVec(delete, "w-coll", 2, 2, "ip")
        self.assertEqual(drop["op"], "ok", drop)
        self.assertError(mput, "forbidden")
        self.assertError(mdel, "forbidden")
        self.assertNotIn("w-model", models)

    def test_submit_role_cannot_change_collections(self):
        async def submitter(c):
            return (await vec_put(c, "s-coll", unit_rows(1, 2, 4), ["a"], metric="l2"),
                    await model_put(c, "s-model", xgb_model()))
        for r in self.go("obj-submit", submitter):
            self.assertError(r, "forbidden")

    def test_object_ops_before_hello_are_unauthorized(self):
        async def go():
            c = await Client.connect(self.kilnd.url, hello=False)
            try:
                return [await c.call(m) for m in ({"op": "model.list"}, {"op": "vec.list"},
                                                  {"op": "vec.info", "collection": "r-coll"})]
            finally:
                await c.close()
        for r in asyncio.run(asyncio.wait_for(go(), 60)):
            self.assertError(r, "unauthorized")


class TenantTest(TokenCase):
    """Tenants never see each other's models or collections (SPEC §2.4, §7)."""

    def test_another_tenant_sees_nothing_and_cannot_touch_it(self):
        acme_model = xgb_model(n_trees=5, n_features=3)

        async def acme(c):
            m = await model_put(c, "t-shared-name", acme_model)
            v = await vec_put(c, "t-coll", unit_rows(4, 3, 5), list("abcd"), metric="cosine")
            return m, v
        m, v = self.go("obj-admin", acme)

        async def globex(c):
            out = {
                "models": await model_list(c),
                "colls": await vec_list(c),
                "info": await c.call({"op": "vec.info", "collection": "t-coll"}),
                "vdel": await c.call({"op": "vec.delete", "collection": "t-coll", "ids": ["a"]}),
                "drop": await c.call({"op": "vec.drop", "collection": "t-coll"}),
                "mdel": await c.call({"op": "model.delete", "name": "t-shared-name"}),
            }
            # The same names are free in this tenant: its own objects, not acme's.
            out["own-model"] = await model_put(c, "t-shared-name", xgb_model(n_trees=2, n_features=7))
            out["own-coll"] = await vec_put(c, "t-coll", unit_rows(1, 9, 6), ["z"], metric="l2")
            return out
        g = self.go("obj-globex", globex)
        self.assertNotIn("t-shared-name", g["models"])
        self.assertNotIn("t-coll", g["colls"])
        for what in ("info", "vdel", "drop"):
            self.assertError(g[what], "not_found", "collection")
        self.assertError(g["mdel"], "not_found", "name")
        self.assertModel(g["own-model"], "t-shared-name", 2, 7, len(xgb_model(n_trees=2, n_features=7)))
        self.assertVec(g["own-coll"], "t-coll", 1, 9, "l2")

        async def acme_again(c):
            return await model_list(c), await c.call({"op": "vec.info", "collection": "t-coll"})
        models, info = self.go("obj-read", acme_again)
        self.assertEqual(models["t-shared-name"]["version"], m["version"])
        self.assertEqual(models["t-shared-name"]["trees"], 5)
        self.assertEqual(models["t-shared-name"]["bytes"], len(acme_model))
        self.assertVec(info, "t-coll", 4, 3, "cosine")
        self.assertEqual(info["version"], v["version"])

    def test_results_are_never_shared_between_tenants_objects(self):
        """Two tenants each store a model and a collection under the same names, both
        at version 1: the same job from the second tenant runs on its own object, and
        is never answered from the cache of the first tenant's result."""
        q = {"collection": "t-cache-coll", "k": 2, "queries": [[1.0, 0.0, 0.0, 0.0]]}
        r = {"model": "t-cache-model", "rows": [[0.1, 0.2, 0.3]]}

        async def run(c, ids, seed):
            put_m = await model_put(c, "t-cache-model", xgb_model(n_trees=4, n_features=3, seed=seed))
            put_v = await vec_put(c, "t-cache-coll", np.eye(4, dtype=np.float32)[::1 if seed == 1 else -1].copy(),
                                  ids, metric="ip")
            out = {"versions": (put_m["version"], put_v["version"])}
            for kind, params in (("vec.search", q), ("risk.score", r)):
                acc = await c.submit(kind, params)
                done, parts, _ = await c.read_done(acc["job"])
                out[kind] = (acc["cached"], done, parts)
            return out
        a = self.go("obj-admin", lambda c: run(c, ["a", "b", "c", "d"], 1))
        g = self.go("obj-globex", lambda c: run(c, ["w", "x", "y", "z"], 2))
        self.assertEqual(a["versions"], g["versions"])  # the same names and versions in both
        for kind in ("vec.search", "risk.score"):
            self.assertEqual(g[kind][1]["state"], "done", g[kind][1])
            self.assertFalse(g[kind][0], f"{kind}: globex answered from acme's cache")
        self.assertEqual(a["vec.search"][1]["result"]["ids"], [["a", "b"]])
        self.assertEqual(g["vec.search"][1]["result"]["ids"], [["z", "w"]])  # w, x, y tie at 0: by id
        self.assertNotEqual(a["risk.score"][2]["pd"].tolist(), g["risk.score"][2]["pd"].tolist())

        # Each tenant's own repeat is a cache hit of its own result.
        async def again(c):
            acc = await c.submit("vec.search", q)
            done, _, _ = await c.read_done(acc["job"])
            return acc["cached"], done["result"]["ids"]
        self.assertEqual(self.go("obj-admin", again), (True, [["a", "b"]]))
        self.assertEqual(self.go("obj-globex", again), (True, [["z", "w"]]))

    def test_jobs_cannot_name_another_tenants_objects(self):
        async def acme(c):
            await model_put(c, "t-job-model", xgb_model(n_trees=3, n_features=2))
            await vec_put(c, "t-job-coll", unit_rows(3, 2, 7), ["a", "b", "c"], metric="l2")
        self.go("obj-admin", acme)

        async def globex():
            c, w = await connect_welcome(self.kilnd.url, token="obj-globex")
            try:
                out = {}
                if "risk.score" in w.get("kinds", []):
                    out["risk.score"] = await c.submit("risk.score", {"model": "t-job-model", "rows": [[0.1, 0.2]]})
                if "vec.search" in w.get("kinds", []):
                    out["vec.search"] = await c.submit("vec.search", {"collection": "t-job-coll", "k": 1,
                                                                      "queries": [[0.0, 1.0]]})
                return out
            finally:
                await c.close()
        out = asyncio.run(asyncio.wait_for(globex(), 60))
        if not out:
            self.skipTest("this kilnd has neither risk.score nor vec.search")
        if "risk.score" in out:
            self.assertError(out["risk.score"], "not_found", "params.model")
        if "vec.search" in out:
            self.assertError(out["vec.search"], "not_found", "params.collection")


class LimitCase(ObjectCase):
    """One kilnd per class with one object limit set low."""


class ObjectBytesLimitTest(LimitCase):
    env = {"KILN_LIMITS_MAX_OBJECT_BYTES": "65536"}

    def test_a_model_over_max_object_bytes_is_too_large(self):
        small, _ = xgb_model_of_size(50_000)
        big, _ = xgb_model_of_size(70_000)

        async def go(c):
            return (await model_put(c, "l-small", small), await model_put(c, "l-big", big, piece=30_000),
                    await model_list(c))
        ok, refused, listed = self.go(go)
        self.assertEqual(ok["op"], "model", ok)
        self.assertError(refused, "too_large")
        self.assertNotIn("l-big", listed)

    def test_a_collection_growing_over_max_object_bytes_is_too_large(self):
        async def go(c):
            # Each row is 16 KiB of floats plus its id: three fit, five do not.
            a = await vec_put(c, "l-coll", np.ones((3, 4096), np.float32), ["a", "b", "c"], metric="l2")
            b = await vec_put(c, "l-coll", np.ones((2, 4096), np.float32), ["d", "e"])
            return a, b, await c.call({"op": "vec.info", "collection": "l-coll"})
        a, b, info = self.go(go)
        self.assertVec(a, "l-coll", 3, 4096, "l2")
        self.assertError(b, "too_large")
        self.assertEqual(fields(info, VEC_FIELDS), fields(a, VEC_FIELDS))


class ObjectCountLimitTest(LimitCase):
    env = {"KILN_LIMITS_MAX_OBJECTS_PER_TENANT": "3"}

    def test_objects_past_max_objects_per_tenant_are_too_large(self):
        async def go(c):
            out = {
                "m1": await model_put(c, "n-m1", xgb_model()),
                "m2": await model_put(c, "n-m2", xgb_model()),
                "c1": await vec_put(c, "n-c1", unit_rows(1, 2, 1), ["a"], metric="l2"),
                "m3": await model_put(c, "n-m3", xgb_model()),
                "c2": await vec_put(c, "n-c2", unit_rows(1, 2, 1), ["a"], metric="l2"),
                # Changing an object that exists makes no new one.
                "m1-again": await model_put(c, "n-m1", xgb_model(seed=4)),
                "c1-more": await vec_put(c, "n-c1", unit_rows(1, 2, 2), ["b"]),
            }
            await c.call({"op": "model.delete", "name": "n-m2"})
            out["m3-after-delete"] = await model_put(c, "n-m3", xgb_model())
            return out, await model_list(c), await vec_list(c)
        out, models, colls = self.go(go)
        for ok in ("m1", "m2", "m1-again", "m3-after-delete"):
            self.assertEqual(out[ok]["op"], "model", out[ok])
        self.assertEqual(out["c1"]["op"], "vec", out["c1"])
        self.assertVec(out["c1-more"], "n-c1", 2, 2, "l2")
        self.assertError(out["m3"], "too_large")
        self.assertError(out["c2"], "too_large")
        self.assertEqual(sorted(models), ["n-m1", "n-m3"])
        self.assertEqual(sorted(colls), ["n-c1"])


class TenantBytesLimitTest(LimitCase):
    env = {"KILN_LIMITS_MAX_TENANT_BYTES": "100000"}

    def test_changes_past_max_tenant_bytes_are_too_large(self):
        a40, _ = xgb_model_of_size(40_000)
        b40, _ = xgb_model_of_size(40_000, n_features=6)
        c40, _ = xgb_model_of_size(40_000, n_features=7)
        a30, _ = xgb_model_of_size(30_000)
        c25, _ = xgb_model_of_size(25_000)
        self.assertLessEqual(len(a30) + len(b40) + len(c25), 100_000)
        self.assertGreater(len(a40) + len(b40) + len(c40), 100_000)

        async def go(c):
            out = {
                "a": await model_put(c, "b-a", a40),
                "b": await model_put(c, "b-b", b40),
                "c-too-much": await model_put(c, "b-c", c40),
                "a-smaller": await model_put(c, "b-a", a30),
                "c-fits": await model_put(c, "b-c", c25),
                "vec-too-much": await vec_put(c, "b-v", np.ones((4, 1024), np.float32), list("wxyz"), metric="l2"),
            }
            return out, await model_list(c), await vec_list(c)
        out, models, colls = self.go(go)
        for ok in ("a", "b", "a-smaller", "c-fits"):
            self.assertEqual(out[ok]["op"], "model", out[ok])
        self.assertError(out["c-too-much"], "too_large")
        self.assertError(out["vec-too-much"], "too_large")
        self.assertEqual(models["b-a"]["bytes"], len(a30))
        self.assertEqual(models["b-c"]["bytes"], len(c25))
        self.assertNotIn("b-v", colls)


class DurabilityTest(ObjectAsserts, unittest.TestCase):
    """An acknowledged object change survives kill -9 (SPEC §2.4, §7)."""

    def setUp(self):
        self.k = Kilnd(env={"KILN_CPU_THREADS": "1"}).start()

    def tearDown(self):
        running = self.k.proc.poll() is None
        code = self.k.stop()
        log = self.k.read_log()
        self.k.cleanup()
        if running:
            self.assertEqual(code, 0, f"kilnd must exit 0 on SIGTERM:\n{log}")

    def kill9_and_restart(self):
        code = self.k.proc.wait(30)
        self.k.log.close()
        self.assertEqual(code, -signal.SIGKILL, "kilnd should have died of SIGKILL")
        self.k.start()

    def session(self, fn):
        """Runs fn(client); kill -9 follows the moment fn returns (its last reply
        acknowledged), before the connection is even closed."""
        async def run():
            c = await Client.connect(self.k.url)
            try:
                return await fn(c)
            finally:
                self.k.proc.send_signal(signal.SIGKILL)
        return asyncio.run(asyncio.wait_for(run(), 120))

    def look(self, fn):
        async def run():
            c = await Client.connect(self.k.url)
            try:
                return await fn(c)
            finally:
                await c.close()
        return asyncio.run(asyncio.wait_for(run(), 120))

    def test_acknowledged_puts_and_deletes_survive_kill9(self):
        big, trees = xgb_model_of_size(200_000)
        v = unit_rows(50, 8, seed=13)
        ids = [f"d{i:02d}" for i in range(50)]

        async def changes(c):
            m1 = await model_put(c, "d-model", xgb_model(n_trees=3))
            m2 = await model_put(c, "d-model", big, piece=50_000)
            gone = await model_put(c, "d-gone", xgb_model())
            ok = await c.call({"op": "model.delete", "name": "d-gone"})
            c1 = await vec_put(c, "d-coll", v, ids, metric="l2")
            c2 = await c.call({"op": "vec.delete", "collection": "d-coll", "ids": ids[:10]})
            return m1, m2, gone, ok, c1, c2
        m1, m2, gone, ok, c1, c2 = self.session(changes)
        self.assertModel(m2, "d-model", trees, 5, len(big))
        self.assertEqual(ok["op"], "ok", ok)
        self.assertVec(c2, "d-coll", 40, 8, "l2")
        self.kill9_and_restart()

        async def after(c):
            return await model_list(c), await c.call({"op": "vec.info", "collection": "d-coll"})
        models, info = self.look(after)
        self.assertIn("d-model", models)
        self.assertEqual(fields(models["d-model"], MODEL_FIELDS), fields(m2, MODEL_FIELDS))
        self.assertNotIn("d-gone", models)
        self.assertEqual(fields(info, VEC_FIELDS), fields(c2, VEC_FIELDS))

        # Versions go on from where they were: none is reused after the restart.
        async def more(c):
            return await model_put(c, "d-model", xgb_model()), await model_put(c, "d-gone", xgb_model())
        m3, gone2 = self.look(more)
        self.assertGreater(m3["version"], m2["version"])
        self.assertGreater(gone2["version"], gone["version"])

    def test_a_drop_acknowledged_just_before_kill9_stays_dropped(self):
        async def changes(c):
            await vec_put(c, "d-drop", unit_rows(5, 4, 14), list("abcde"), metric="ip")
            return await c.call({"op": "vec.drop", "collection": "d-drop"})
        ok = self.session(changes)
        self.assertEqual(ok["op"], "ok", ok)
        self.kill9_and_restart()

        async def after(c):
            return await c.call({"op": "vec.info", "collection": "d-drop"}), await vec_list(c)
        info, colls = self.look(after)
        self.assertError(info, "not_found", "collection")
        self.assertNotIn("d-drop", colls)


if __name__ == "__main__":
    unittest.main()
