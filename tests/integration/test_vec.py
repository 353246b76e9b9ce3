"""vec.search (SPEC §1.4) against the real kilnd: exact answers (recall 1.0 against
a float64 brute force computed here, and against FAISS's exact index where Debian's
python3-faiss is installed), ties in id byte order, zero and duplicate vectors,
deletes and replacements seen by the next search, the cache keyed by the
collection's version, queries inline or as a binary part being one input, a
stored id as the query (the same answer as its vector sent), every refusal, and
single-query jobs batched together.

The brute force's definition of a score is the contract's: the float32 values
multiplied and summed in float64, rounded once to float32; a ranking orders by
that (larger first for cosine and ip, smaller first for l2), then by id bytes.
Cosine collections store rows scaled to unit length (each value divided by the
float64 norm, rounded to float32), and queries are scaled the same way.
"""
import asyncio
import json
import os
import random
import subprocess
import tempfile
import time
import unittest

import numpy as np

from kiln_fixture import Client, KilndTestCase, encode_frame, metrics, wait_for
from kiln_objects import next_ref, send_frames, vec_put

try:
    import faiss
except ImportError:  # python3-faiss is optional
    faiss = None


def unit(a):
    """Rows scaled as kiln scales them under cosine."""
    a = np.asarray(a, dtype=np.float32).astype(np.float64)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def exact_scores(metric, rows, q):
    """[q][n] float32 scores: float64 sums of the float32 values, rounded once."""
    x = rows.astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "l2":
        s = np.array([((qi[None, :] - x) ** 2).sum(1) for qi in qq])
    else:
        s = qq @ x.T
    return s.astype(np.float32)


def brute_force(metric, ids, rows, queries, k):
    """Per query: [(id, score)] best first, equal scores by id bytes."""
    stored = unit(rows) if metric == "cosine" else np.asarray(rows, dtype=np.float32)
    q = unit(queries) if metric == "cosine" else np.asarray(queries, dtype=np.float32)
    s = exact_scores(metric, stored, q)
    keys = [i.encode() for i in ids]
    out = []
    for qi in range(len(q)):
        order = sorted(range(len(ids)), key=lambda r: ((s[qi, r] if metric == "l2" else -s[qi, r]), keys[r]))
        out.append([(ids[r], s[qi, r]) for r in order[:k]])
    return out


def query_frames(ref, queries):
    a = np.ascontiguousarray(queries, dtype="<f4")
    return [encode_frame({"ref": ref, "part": "queries", "dtype": "f32", "shape": list(a.shape)}, a.tobytes())]


async def submit_search(c, collection, queries, k=10, inline=False, **kw):
    """Submits one vec.search job; returns the accepted (or error) reply."""
    params = {"collection": collection, "k": k}
    msg = {"op": "submit", "kind": "vec.search", "params": params}
    msg.update(kw)
    if inline:
        params["queries"] = np.asarray(queries, dtype=np.float32).tolist()
        return await c.call(msg)
    ref = next_ref(c)
    await send_frames(c, query_frames(ref, queries))
    return await c.call(dict(msg, ref=ref))


async def search(c, collection, queries, k=10, inline=False, **kw):
    """One job, waited for: (done, scores part or None, accepted)."""
    acc = await submit_search(c, collection, queries, k, inline, **kw)
    assert acc.get("op") == "accepted", acc
    done, parts, _ = await c.read_done(acc["job"], timeout=120)
    return done, parts.get("scores"), acc


async def outcome(c, acc):
    """The reply to a submit when it is a refusal, else the accepted job's `done`."""
    return acc if acc.get("op") != "accepted" else (await c.read_done(acc["job"]))[0]


async def single_searches(c, collection, queries, k_of):
    """Sends one single-query job per row of `queries` (k_of(i) each), all before
    any reply is read so that they queue together, then reads every answer.
    Returns [(row, done, scores)]; raises on a reply that is neither."""
    refs = {}
    for i in range(len(queries)):
        ref = next_ref(c)
        refs[ref] = i
        await send_frames(c, query_frames(ref, queries[i:i + 1]))
        await c.send({"op": "submit", "kind": "vec.search", "ref": ref,
                      "params": {"collection": collection, "k": k_of(i)}})
    jobs, out = {}, {}
    while len(out) < len(queries):
        m = await c.recv(120)
        if isinstance(m, bytes):
            continue
        if m.get("op") == "accepted":
            jobs[m["job"]] = refs[m["ref"]]
        elif m.get("op") == "done":
            c.backlog.insert(0, m)
            done, parts, _ = await c.read_done(m["job"])
            out[m["job"]] = (done, parts.get("scores"))
        elif m.get("op") != "progress":
            raise AssertionError(m)
    return [(jobs[j], d, s) for j, (d, s) in out.items()]


class VecSearch(KilndTestCase):
    env = {"KILN_CPU_THREADS": "2"}

    def answer(self, done, scores):
        self.assertEqual(done["state"], "done", done)
        ids = done["result"]["ids"]
        return [list(zip(row, scores[i].tolist())) for i, row in enumerate(ids)]

    def assertSameAnswer(self, got, want):
        self.assertEqual(len(got), len(want))
        for qi, (g, w) in enumerate(zip(got, want)):
            self.assertEqual([i for i, _ in g], [i for i, _ in w], f"query {qi}")
            self.assertEqual([np.float32(s) for _, s in g], [np.float32(s) for _, s in w], f"query {qi}")

    def assertFailed(self, done, code, words, field=None):
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["error"]["code"], code, done)
        self.assertIn(words, done["error"]["message"], done)
        if field is not None:
            self.assertEqual(done["error"].get("field"), field, done)

    def assertRefused(self, reply, field, words):
        """An `error` reply to the submit itself (no job was accepted)."""
        self.assertEqual(reply.get("op"), "error", reply)
        self.assertEqual(reply.get("code"), "bad_params", reply)
        self.assertEqual(reply.get("field"), field, reply)
        self.assertIn(words, reply.get("message", ""), reply)

    # ---- exactness ----

    def test_every_metric_equals_the_float64_brute_force(self):
        rng = np.random.default_rng(1)
        rows = rng.normal(size=(3000, 48)).astype(np.float32)
        ids = [f"doc-{(i * 7919) % 3000:05d}-{'xyzw'[:i % 4]}" for i in range(3000)]
        queries = rng.normal(size=(12, 48)).astype(np.float32)

        async def go():
            c = await self.client()
            out = {}
            for metric in ("cosine", "ip", "l2"):
                r = await vec_put(c, f"exact-{metric}", rows, ids, metric=metric)
                self.assertEqual(r.get("op"), "vec", r)
                for k in (1, 10, 100):
                    out[metric, k] = await search(c, f"exact-{metric}", queries, k)
            await c.close()
            return out
        out = self.run_async(go())
        for (metric, k), (done, scores, _) in out.items():
            self.assertEqual(done["result"]["count"], 3000)
            self.assertEqual(scores.shape, (12, k))
            self.assertSameAnswer(self.answer(done, scores), brute_force(metric, ids, rows, queries, k))

    @unittest.skipIf(faiss is None, "python3-faiss is not installed")
    def test_recall_is_one_against_faiss_exact_index(self):
        rng = np.random.default_rng(2)
        rows = rng.normal(size=(5000, 64)).astype(np.float32)
        ids = [f"{i:06d}" for i in range(5000)]  # id order is row order
        queries = rng.normal(size=(20, 64)).astype(np.float32)
        k = 10

        async def go():
            c = await self.client()
            await vec_put(c, "faiss-ip", rows, ids, metric="ip")
            await vec_put(c, "faiss-l2", rows, ids, metric="l2")
            res = (await search(c, "faiss-ip", queries, k), await search(c, "faiss-l2", queries, k))
            await c.close()
            return res
        (ip_done, ip_s, _), (l2_done, l2_s, _) = self.run_async(go())
        for done, index in ((ip_done, faiss.IndexFlatIP(64)), (l2_done, faiss.IndexFlatL2(64))):
            index.add(rows)
            dist, label = index.search(queries, k + 1)
            for qi in range(len(queries)):
                # Where FAISS's float32 distances leave no near tie at the k-th place,
                # both must hold the same k rows.
                if abs(dist[qi, k - 1] - dist[qi, k]) > 1e-4:
                    self.assertEqual(sorted(done["result"]["ids"][qi]), sorted(f"{r:06d}" for r in label[qi, :k]))

    def test_ties_zero_vectors_and_duplicates_are_ordered_by_id(self):
        rows = np.array([[1, 1], [1, 1], [0, 0], [1, 1], [0, 0], [2, 2], [1, 1]], dtype=np.float32)
        ids = ["e", "b", "zero-2", "a", "zero-1", "far", "d\u00e9j\u00e0"]
        queries = np.array([[1, 1], [0, 0], [-1, 1]], dtype=np.float32)

        async def go():
            c = await self.client()
            out = {}
            for metric in ("ip", "l2"):
                await vec_put(c, f"ties-{metric}", rows, ids, metric=metric)
                out[metric] = await search(c, f"ties-{metric}", queries, 7)
            await c.close()
            return out
        out = self.run_async(go())
        for metric, (done, scores, _) in out.items():
            self.assertSameAnswer(self.answer(done, scores), brute_force(metric, ids, rows, queries, 7))
        # ip with the query (1, 1): 4 for "far", then the tie at 2 in id byte order.
        self.assertEqual(out["ip"][0]["result"]["ids"][0][:5], ["far", "a", "b", "d\u00e9j\u00e0", "e"])
        # A zero query ties every row at 0 (ip): all in id order.
        self.assertEqual(out["ip"][0]["result"]["ids"][1], sorted(ids, key=lambda i: i.encode()))
        # l2 from the origin: the zero rows first, in id order.
        self.assertEqual(out["l2"][0]["result"]["ids"][1][:2], ["zero-1", "zero-2"])

    def test_k_above_the_count_returns_the_whole_collection(self):
        rng = np.random.default_rng(3)
        rows = rng.normal(size=(9, 5)).astype(np.float32)
        ids = [f"r{i}" for i in range(9)]

        async def go():
            c = await self.client()
            await vec_put(c, "small", rows, ids, metric="cosine")
            res = await search(c, "small", rows[:2], 1000)
            await c.close()
            return res
        done, scores, _ = self.run_async(go())
        self.assertEqual(scores.shape, (2, 9))
        self.assertSameAnswer(self.answer(done, scores), brute_force("cosine", ids, rows, rows[:2], 9))
        self.assertEqual(done["result"]["ids"][0][0], "r0")

    # ---- changes, versions and the cache ----

    def test_deletes_and_replacements_are_seen_and_the_cache_follows_the_version(self):
        rng = np.random.default_rng(4)
        rows = rng.normal(size=(500, 16)).astype(np.float32)
        ids = [f"v{i:03d}" for i in range(500)]
        q = rows[[7]] + 0.01

        async def go():
            c = await self.client()
            put = await vec_put(c, "changing", rows, ids, metric="l2")
            first = await search(c, "changing", q, 5)
            again = await search(c, "changing", q, 5)
            dele = await c.call({"op": "vec.delete", "collection": "changing", "ids": ["v007"]})
            after_delete = await search(c, "changing", q, 5)
            # Replace v100 with the query itself: it becomes the nearest.
            repl = await vec_put(c, "changing", q, ["v100"])
            after_put = await search(c, "changing", q, 5)
            await c.close()
            return put, first, again, dele, after_delete, repl, after_put
        put, first, again, dele, after_delete, repl, after_put = self.run_async(go())
        self.assertEqual(first[0]["result"]["ids"][0][0], "v007")
        self.assertEqual(first[0]["result"]["collection_version"], put["version"])
        self.assertFalse(first[2]["cached"])
        self.assertTrue(again[2]["cached"], again[2])
        self.assertEqual(again[0]["result"]["ids"], first[0]["result"]["ids"])
        self.assertEqual(dele.get("op"), "vec", dele)
        self.assertGreater(dele["version"], put["version"])
        self.assertFalse(after_delete[2]["cached"], after_delete[2])
        self.assertNotIn("v007", after_delete[0]["result"]["ids"][0])
        self.assertEqual(after_delete[0]["result"]["collection_version"], dele["version"])
        self.assertEqual(after_delete[0]["result"]["count"], 499)
        left = [i for i in ids if i != "v007"]
        kept = np.array([rows[int(i[1:])] for i in left])
        self.assertSameAnswer(self.answer(after_delete[0], after_delete[1]), brute_force("l2", left, kept, q, 5))
        self.assertGreater(repl["version"], dele["version"])
        self.assertFalse(after_put[2]["cached"])
        self.assertEqual(after_put[0]["result"]["ids"][0][0], "v100")
        self.assertEqual(after_put[1][0, 0], 0.0)
        self.assertEqual(after_put[0]["result"]["collection_version"], repl["version"])

    def test_inline_and_binary_queries_are_one_input(self):
        rng = np.random.default_rng(5)
        rows = rng.normal(size=(200, 6)).astype(np.float32)
        ids = [f"i{i}" for i in range(200)]
        q = np.array([[0.5, -1.25, 3, 1e-3, 7, 0.1]], dtype=np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, "forms", rows, ids, metric="ip")
            a = await search(c, "forms", q, 4, inline=True)
            b = await search(c, "forms", q, 4)
            await c.close()
            return a, b
        (da, sa, acc_a), (db, sb, acc_b) = self.run_async(go())
        self.assertFalse(acc_a["cached"])
        self.assertTrue(acc_b["cached"], acc_b)
        self.assertEqual(da["result"]["ids"], db["result"]["ids"])
        np.testing.assert_array_equal(sa, sb)

    # ---- a stored id as the query ----

    def test_a_stored_id_answers_as_the_vector_that_was_put(self):
        rng = np.random.default_rng(8)
        rows = rng.normal(size=(1500, 40)).astype(np.float32)
        accent = "\u00e9"
        ids = [f"item/{i:04d}-{accent * (i % 3)}" for i in range(1500)]
        picks = [0, 17, 733, 1499]

        async def go():
            c = await self.client()
            out = {}
            for metric in ("cosine", "ip", "l2"):
                await vec_put(c, f"self-{metric}", rows, ids, metric=metric)
                for p in picks:
                    for k in (1, 25):
                        by_id = await c.call({"op": "submit", "kind": "vec.search",
                                              "params": {"collection": f"self-{metric}", "k": k,
                                                         "query_id": ids[p]}})
                        self.assertEqual(by_id.get("op"), "accepted", by_id)
                        done, parts, _ = await c.read_done(by_id["job"], timeout=120)
                        out[metric, p, k] = ((done, parts.get("scores"), by_id),
                                             await search(c, f"self-{metric}", rows[p:p + 1], k))
            await c.close()
            return out
        out = self.run_async(go())
        for (metric, p, k), ((done, scores, acc), (vdone, vscores, _)) in out.items():
            with self.subTest(metric=metric, row=p, k=k):
                self.assertEqual(done["state"], "done", done)
                self.assertFalse(acc["cached"], acc)
                # Bit for bit what the vector that was put gets as the query.
                self.assertEqual(done["result"]["ids"], vdone["result"]["ids"])
                self.assertEqual(scores.dtype, np.float32)
                self.assertEqual(scores.shape, (1, k))
                self.assertEqual(scores.tobytes(), vscores.tobytes())
                self.assertEqual(done["result"]["count"], 1500)
                self.assertEqual(done["result"]["collection_version"], vdone["result"]["collection_version"])
                self.assertSameAnswer(self.answer(done, scores), brute_force(metric, ids, rows, rows[p:p + 1], k))
                if metric != "ip":  # distinct rows: the item is its own nearest
                    self.assertEqual(done["result"]["ids"][0][0], ids[p])
                if metric == "l2":
                    self.assertEqual(scores[0, 0], 0.0)

    def test_a_stored_id_is_read_from_the_version_the_job_is_bound_to(self):
        rows = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
        ids = ["a", "b", "c", "d"]

        async def go():
            c = await self.client()
            put = await vec_put(c, "moving", rows, ids, metric="l2")

            async def by_id(qid, k=4):
                acc = await c.call({"op": "submit", "kind": "vec.search",
                                    "params": {"collection": "moving", "k": k, "query_id": qid}})
                self.assertEqual(acc.get("op"), "accepted", acc)
                done, parts, _ = await c.read_done(acc["job"], timeout=60)
                return done, parts.get("scores"), acc
            first, again = await by_id("c"), await by_id("c")
            # c moves next to a: the same params now ask another question.
            moved = await vec_put(c, "moving", np.array([[1, 0, 0.5]], np.float32), ["c"])
            after_move = await by_id("c")
            dele = await c.call({"op": "vec.delete", "collection": "moving", "ids": ["c"]})
            after_delete = await by_id("c")
            await c.close()
            return put, first, again, moved, after_move, dele, after_delete
        put, first, again, moved, after_move, dele, after_delete = self.run_async(go())
        self.assertEqual(first[0]["result"]["ids"], [["c", "a", "b", "d"]])
        self.assertEqual(first[1].tolist(), [[0, 2, 2, 3]])
        self.assertEqual(first[0]["result"]["collection_version"], put["version"])
        self.assertTrue(again[2]["cached"], again[2])
        self.assertEqual(again[0]["result"]["ids"], first[0]["result"]["ids"])
        self.assertFalse(after_move[2]["cached"], after_move[2])
        self.assertEqual(after_move[0]["result"]["collection_version"], moved["version"])
        self.assertEqual(after_move[0]["result"]["ids"], [["c", "a", "d", "b"]])
        self.assertEqual(after_move[1].tolist(), [[0, 0.25, 1.25, 2.25]])
        self.assertFailed(after_delete[0], "bad_params", "params.query_id", "params.query_id")
        self.assertIn(f"version {dele['version']}", after_delete[0]["error"]["message"])

    def test_query_id_refusals_name_the_field(self):
        rows = np.eye(4, dtype=np.float32)
        ids = ["a", "b", "c", "d"]

        async def go():
            c = await self.client()
            await vec_put(c, "strict-id", rows, ids, metric="cosine")
            out = {}
            for name, extra in (("both", {"query_id": "a", "queries": [[1, 0, 0, 0]]}),
                                ("missing", {"query_id": "e"}),
                                ("long", {"query_id": "x" * 257}),
                                ("empty", {"query_id": ""}),
                                ("number", {"query_id": 3}),
                                ("list", {"query_id": ["a", "b"]})):
                acc = await c.call({"op": "submit", "kind": "vec.search",
                                    "params": dict({"collection": "strict-id", "k": 2}, **extra)})
                out[name] = await outcome(c, acc)
            # Both, with the queries as a binary part.
            ref = next_ref(c)
            await send_frames(c, query_frames(ref, rows[:1]))
            acc = await c.call({"op": "submit", "kind": "vec.search", "ref": ref,
                                "params": {"collection": "strict-id", "k": 2, "query_id": "a"}})
            out["binary-both"] = await outcome(c, acc)
            await c.close()
            return out
        out = self.run_async(go())
        # Both is refused at submission; whether an id is stored is known only
        # against the items of the version the job is bound to, when it runs.
        self.assertRefused(out["both"], "params.query_id", "both")
        self.assertFailed(out["missing"], "bad_params", 'params.query_id "e" is not an id of the collection')
        for name in ("long", "empty", "number", "list"):
            self.assertEqual(out[name].get("code"), "bad_params", out[name])
            self.assertEqual(out[name].get("field"), "params.query_id", out[name])
        self.assertRefused(out["binary-both"], "params.query_id", "both")

    # ---- refusals ----

    def test_every_refusal_names_its_field(self):
        rows = np.eye(4, dtype=np.float32)
        ids = ["a", "b", "c", "d"]

        async def go():
            c = await self.client()
            await vec_put(c, "strict", rows, ids, metric="cosine")
            out = {"k0": await submit_search(c, "strict", rows[:1], 0),
                   "k1001": await submit_search(c, "strict", rows[:1], 1001),
                   "unknown": await submit_search(c, "nowhere", rows[:1], 3)}
            acc = await c.call({"op": "submit", "kind": "vec.search", "params": {"collection": "strict"}})
            out["no-queries"] = await outcome(c, acc)
            bad = {"dim": np.ones((1, 5), np.float32),
                   "nan": np.array([[1, np.nan, 0, 0]], np.float32),
                   "inf": np.array([[1, 0, np.inf, 0]], np.float32),
                   "-inf": np.array([[1, 0, 0, -np.inf]], np.float32),
                   "zero": np.zeros((1, 4), np.float32),
                   "many": np.ones((10001, 4), np.float32)}
            for name, q in bad.items():
                acc = await submit_search(c, "strict", q, 3)
                out[name] = await outcome(c, acc)
            acc = await c.call({"op": "submit", "kind": "vec.search",
                                "params": {"collection": "strict", "queries": [[1, None, 0, 0]]}})
            out["null"] = await outcome(c, acc)
            out["dim-inline"] = await submit_search(c, "strict", bad["dim"], 3, inline=True)
            out["zero-inline"] = await submit_search(c, "strict", bad["zero"], 3, inline=True)
            await c.close()
            return out
        out = self.run_async(go())
        # Each is refused at submission (the collection's metric and dim are known
        # there), inline or as a binary part.
        for name in ("k0", "k1001"):
            self.assertEqual(out[name].get("code"), "bad_params", out[name])
            self.assertEqual(out[name].get("field"), "params.k", out[name])
        self.assertEqual(out["unknown"].get("code"), "not_found", out["unknown"])
        self.assertEqual(out["unknown"].get("field"), "params.collection", out["unknown"])
        self.assertRefused(out["no-queries"], "inputs.queries", "params.query_id")
        for name in ("dim", "dim-inline"):
            self.assertRefused(out[name], "inputs.queries",
                               'inputs.queries has dim 5, but collection "strict" holds vectors of dim 4')
        for name in ("nan", "inf", "-inf", "null"):
            self.assertRefused(out[name], "inputs.queries[0]", "NaN or infinity")
        for name in ("zero", "zero-inline"):
            self.assertRefused(out[name], "inputs.queries[0]", "inputs.queries[0] is all zeros")
        self.assertRefused(out["many"], "inputs.queries", "1 to 10000")

    def test_a_put_of_vectors_with_nan_or_infinity_is_refused_naming_the_row(self):
        # Refused whole: the collection keeps what it had.
        async def go():
            c = await self.client()
            first = await vec_put(c, "clean", np.eye(3, dtype=np.float32), list("abc"), metric="l2")
            out = {}
            for name, bad in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
                rows = np.ones((4, 3), np.float32)
                rows[2, 1] = bad
                out[name] = await vec_put(c, "clean", rows, list("wxyz"))
            info = await c.call({"op": "vec.info", "collection": "clean"})
            await c.close()
            return first, out, info
        first, out, info = self.run_async(go())
        for name, r in out.items():
            self.assertEqual((r.get("op"), r.get("code")), ("error", "bad_params"), (name, r))
            self.assertEqual(r.get("field"), "vectors[2]", (name, r))
            self.assertIn("NaN or infinity", r.get("message", ""), (name, r))
        self.assertEqual((info["version"], info["count"]), (first["version"], 3), info)

    def test_the_dim_is_checked_at_submit_against_the_current_version(self):
        rows = np.eye(4, dtype=np.float32)

        async def go():
            c = await self.client()
            put = await vec_put(c, "shape", rows, list("abcd"), metric="l2")
            self.assertEqual(put.get("op"), "vec", put)
            out = {"wide": await submit_search(c, "shape", np.ones((2, 6), np.float32), 2),
                   "wide-inline": await submit_search(c, "shape", np.ones((2, 6), np.float32), 2, inline=True),
                   "right": await search(c, "shape", rows[:2], 2),
                   "right-inline": await search(c, "shape", rows[:2], 2, inline=True)}
            # A delete keeps the collection's dim; a drop forgets it, and a new put
            # of another dim is what the next submission is checked against.
            dele = await c.call({"op": "vec.delete", "collection": "shape", "ids": ["d"]})
            out["after-delete"] = await submit_search(c, "shape", np.ones((1, 6), np.float32), 2)
            self.assertEqual((await c.call({"op": "vec.drop", "collection": "shape"}))["op"], "ok")
            out["dropped"] = await submit_search(c, "shape", rows[:1], 2)
            put6 = await vec_put(c, "shape", np.eye(6, dtype=np.float32), list("uvwxyz"), metric="ip")
            out["old-dim"] = await submit_search(c, "shape", rows[:1], 2, inline=True)
            out["new-dim"] = await search(c, "shape", np.eye(6, dtype=np.float32)[:1], 2)
            # ip takes an all-zero query that cosine refuses.
            out["zero-ip"] = await search(c, "shape", np.zeros((1, 6), np.float32), 2)
            await c.close()
            return put, dele, put6, out
        put, dele, put6, out = self.run_async(go())
        for name in ("wide", "wide-inline"):
            self.assertRefused(out[name], "inputs.queries", 'has dim 6, but collection "shape" holds vectors of dim 4')
        for name in ("right", "right-inline"):
            done, scores, _ = out[name]
            self.assertEqual(done["state"], "done", done)
            self.assertEqual(done["result"]["collection_version"], put["version"])
            self.assertEqual(done["result"]["ids"], [["a", "b"], ["b", "a"]])
        self.assertEqual(dele.get("op"), "vec", dele)
        self.assertRefused(out["after-delete"], "inputs.queries", "holds vectors of dim 4")
        self.assertEqual(out["dropped"].get("code"), "not_found", out["dropped"])
        self.assertRefused(out["old-dim"], "inputs.queries", 'has dim 4, but collection "shape" holds vectors of dim 6')
        done, _, _ = out["new-dim"]
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(done["result"]["collection_version"], put6["version"])
        self.assertEqual(out["zero-ip"][0]["state"], "done", out["zero-ip"][0])


    def test_a_collection_stored_before_a_restart_is_checked_at_submit(self):
        # The metric and dim come back with the versions kilnd reads at start.
        async def put():
            c = await self.client()
            r = await vec_put(c, "kept", np.eye(3, dtype=np.float32), list("abc"), metric="cosine")
            await c.close()
            return r
        put = self.run_async(put())
        self.assertEqual(put.get("op"), "vec", put)
        self.assertEqual(self.kilnd.stop(), 0, self.kilnd.read_log())
        self.kilnd.start()

        async def after():
            c = await self.client()
            out = (await submit_search(c, "kept", np.ones((1, 4), np.float32), 2),
                   await submit_search(c, "kept", np.zeros((1, 3), np.float32), 2, inline=True),
                   await search(c, "kept", np.ones((1, 3), np.float32), 2))
            await c.close()
            return out
        wide, zero, (good, _, _) = self.run_async(after())
        self.assertRefused(wide, "inputs.queries", "holds vectors of dim 3")
        self.assertRefused(zero, "inputs.queries[0]", "is all zeros")
        self.assertEqual(good["state"], "done", good)

    # ---- kilnctl ----

    def test_kilnctl_submits_queries_from_a_npy_file(self):
        rows = np.array([[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0], [0, 0, 0, 4]], dtype=np.float32)
        queries = np.array([[1, 1, 1, 1], [0, 0, 0, 1]], dtype=np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, "ctl-docs", rows, ["a", "b", "c", "d"], metric="ip")
            await c.close()
        self.run_async(go())
        ctl = os.environ.get("KILNCTL", "kilnctl")
        with tempfile.TemporaryDirectory() as tmp:
            np.save(os.path.join(tmp, "q.npy"), queries)
            out = os.path.join(tmp, "hits")
            run = subprocess.run([ctl, "--url", self.kilnd.url, "--json", "submit", "vec.search", "collection=ctl-docs",
                                  "k=3", "--queries", os.path.join(tmp, "q.npy"), "--out", out],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn('[["d","c","b"],["d","a","b"]]', run.stdout.replace(" ", ""))
            np.testing.assert_array_equal(np.load(os.path.join(out, "scores.npy")), [[4, 3, 2], [4, 0, 0]])
            both = subprocess.run([ctl, "--url", self.kilnd.url, "submit", "vec.search", "collection=ctl-docs",
                                   "--queries", os.path.join(tmp, "q.npy"), "--rows", os.path.join(tmp, "q.npy")],
                                  capture_output=True, text=True, timeout=60)
            self.assertEqual(both.returncode, 2, both.stderr)
            by_id = subprocess.run([ctl, "--url", self.kilnd.url, "--json", "submit", "vec.search",
                                    "collection=ctl-docs", "query_id=b", "k=2"], capture_output=True, text=True,
                                   timeout=60)
            self.assertEqual(by_id.returncode, 0, by_id.stderr)
            self.assertIn('[["b","a"]]', by_id.stdout.replace(" ", ""))
            # `vec search COLL` is the same job.
            out2 = os.path.join(tmp, "hits2")
            vs = subprocess.run([ctl, "--url", self.kilnd.url, "--json", "vec", "search", "ctl-docs", "k=3",
                                 "--queries", os.path.join(tmp, "q.npy"), "--out", out2],
                                capture_output=True, text=True, timeout=60)
            self.assertEqual(vs.returncode, 0, vs.stderr)
            self.assertIn('[["d","c","b"],["d","a","b"]]', vs.stdout.replace(" ", ""))
            np.testing.assert_array_equal(np.load(os.path.join(out2, "scores.npy")), [[4, 3, 2], [4, 0, 0]])
            vs = subprocess.run([ctl, "--url", self.kilnd.url, "vec", "search", "ctl-docs", "query_id=b", "k=2"],
                                capture_output=True, text=True, timeout=60)
            self.assertEqual(vs.returncode, 0, vs.stderr)
            self.assertIn("b", vs.stdout)
            for bad in (["vec", "search"], ["vec", "search", "ctl-docs", "--metric", "ip"],
                        ["vec", "search", "ctl-docs", "collection=other", "query_id=b"],
                        ["vec", "info", "ctl-docs", "--queries", os.path.join(tmp, "q.npy")]):
                run = subprocess.run([ctl, "--url", self.kilnd.url] + bad, capture_output=True, text=True, timeout=60)
                self.assertEqual(run.returncode, 2, (bad, run.stderr))
            missing = subprocess.run([ctl, "--url", self.kilnd.url, "vec", "search", "no-such", "query_id=b"],
                                     capture_output=True, text=True, timeout=60)
            self.assertEqual(missing.returncode, 1, missing.stderr)
            self.assertIn("params.collection", missing.stderr + missing.stdout)

    # ---- kiln-bench ----

    def test_kiln_bench_searches_a_collection_and_refuses_a_missing_one(self):
        rng = np.random.default_rng(7)

        async def go():
            c = await self.client()
            await vec_put(c, "bench-target", rng.normal(size=(2000, 24)).astype(np.float32),
                          [f"t{i}" for i in range(2000)], metric="cosine")
            await c.close()
        self.run_async(go())
        bench = os.environ.get("KILN_BENCH", "kiln-bench")
        base = [bench, "--url", self.kilnd.url, "--duration", "1", "--json"]
        run = subprocess.run(base + ["--scenario", "vec", "--collection", "bench-target", "--connections", "4",
                                     "--pipeline", "2"], capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stderr)
        report = json.loads(run.stdout)
        self.assertGreater(report["jobs"], 0, report)
        self.assertEqual(report["errors"], 0, report)
        missing = subprocess.run(base + ["--scenario", "vec", "--collection", "no-such"], capture_output=True,
                                 text=True, timeout=60)
        self.assertEqual(missing.returncode, 1, missing.stderr)
        self.assertIn("no-such", missing.stderr)
        usage = subprocess.run(base + ["--scenario", "vec"], capture_output=True, text=True, timeout=60)
        self.assertEqual(usage.returncode, 2, usage.stderr)


class VecBatching(KilndTestCase):
    # One worker and a generous delay: single-query jobs arriving together run
    # as one search.
    env = {"KILN_CPU_THREADS": "1", "KILN_BATCH_VEC_SEARCH_MAX_BATCH": "64",
           "KILN_BATCH_VEC_SEARCH_MAX_DELAY_US": "20000"}

    def test_single_query_jobs_are_batched_and_each_is_answered_exactly(self):
        rng = np.random.default_rng(6)
        rows = rng.normal(size=(4000, 32)).astype(np.float32)
        ids = [f"b{i:05d}" for i in range(4000)]
        queries = rng.normal(size=(96, 32)).astype(np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, "batched", rows, ids, metric="ip")
            out = await single_searches(c, "batched", queries, lambda i: 3 + i % 5)
            await c.close()
            return out
        out = self.run_async(go())
        sizes = [d["batch"] for _, d, _ in out]
        self.assertGreater(sum(1 for s in sizes if s > 1), len(out) // 2, sizes)
        for i, done, scores in out:
            self.assertEqual(done["state"], "done", done)
            want = brute_force("ip", ids, rows, queries[i:i + 1], 3 + i % 5)
            got = [list(zip(done["result"]["ids"][0], scores[0].tolist()))]
            self.assertEqual([x for x, _ in got[0]], [x for x, _ in want[0]], i)
            self.assertEqual([np.float32(s) for _, s in got[0]], [s for _, s in want[0]], i)


    def test_searches_while_the_collection_is_put_again_and_again_never_fail(self):
        # A job bound to a version replaced before it ran runs against the stored
        # one; a put committing between reading that and loading it replaced it
        # too, and the job failed not_found for a collection that always existed.
        rng = np.random.default_rng(8)
        rows = rng.normal(size=(20000, 32)).astype(np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, "moving", rows, [f"r{i}" for i in range(len(rows))], metric="l2")
            end = time.monotonic() + 6
            outcomes, puts = [], 0

            async def writer():
                nonlocal puts
                w = await self.client()
                while time.monotonic() < end:
                    await vec_put(w, "moving", rng.normal(size=(1, 32)).astype(np.float32), ["x"])
                    puts += 1
                await w.close()

            async def searcher(seed):
                s = await self.client()
                q = np.random.default_rng(seed)
                while time.monotonic() < end:
                    accs = [await submit_search(s, "moving", q.normal(size=(1, 32)), k=5, inline=True, cache=False)
                            for _ in range(8)]
                    outcomes.extend((a["op"], None, a.get("code")) for a in accs if a.get("op") != "accepted")
                    want = {a["job"] for a in accs if a.get("op") == "accepted"}
                    while want:  # in whatever order they end (a failed one ends first)
                        m = await s.recv(60)
                        if isinstance(m, dict) and m.get("op") == "done" and m["job"] in want:
                            want.discard(m["job"])
                            outcomes.append((m["op"], m["state"], m.get("error")))
                await s.close()

            await asyncio.gather(writer(), *(searcher(i) for i in range(3)))
            await c.close()
            return outcomes, puts
        outcomes, puts = self.run_async(go(), timeout=120)
        bad = [o for o in outcomes if o[:2] != ("done", "done")]
        print(f"\n  {len(outcomes)} searches during {puts} puts: {len(bad)} not done")
        self.assertGreater(puts, 100)
        self.assertEqual(bad, [])


class VecCancelInGroupTest(KilndTestCase):
    # One worker and a long batch window: single-query jobs and a big one run as
    # one shared search.
    env = {"KILN_CPU_THREADS": "1", "KILN_BATCH_VEC_SEARCH_MAX_DELAY_US": "200000"}

    def test_a_job_cancelled_while_its_group_runs_ends_cancelled(self):
        # The shared search stops only when all its jobs are stopped; a cancelled
        # one among others still ends cancelled, not done with a result.
        rng = np.random.default_rng(9)
        rows = rng.normal(size=(50000, 64)).astype(np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, "group", rows, [f"g{i}" for i in range(len(rows))], metric="ip")
            big = await submit_search(c, "group", rng.normal(size=(2000, 64)), k=10, cache=False)
            small = [(await submit_search(c, "group", rng.normal(size=(1, 64)), k=10, inline=True,
                                          cache=False))["job"] for _ in range(4)]
            for _ in range(500):  # until the group runs
                if (await c.call({"op": "status", "job": small[0]}))["state"] != "queued":
                    break
                await asyncio.sleep(0.01)
            replies = [await c.call({"op": "cancel", "job": j}) for j in small[:2]]
            want, got = set(small) | {big["job"]}, {}
            while want - set(got):
                m = await c.recv(120)
                if isinstance(m, dict) and m.get("op") == "done":
                    got[m["job"]] = m["state"]
            await c.close()
            return small, replies, got, big["job"]
        small, replies, got, big = self.run_async(go())
        if any(r["state"] != "running" for r in replies):
            self.skipTest(f"the group was not running when cancelled: {replies}")
        self.assertEqual([got[j] for j in small], ["cancelled", "cancelled", "done", "done"], got)
        self.assertEqual(got[big], "done")


def objects_metrics(kilnd):
    """kiln_objects_loads_total and kiln_objects_hits_total from /metrics."""
    m = metrics(kilnd)
    return m[("kiln_objects_loads_total", frozenset())], m[("kiln_objects_hits_total", frozenset())]


class VecStaysLoadedTest(KilndTestCase):
    """A collection stays loaded between the jobs that use it, within
    memory.objects_cache_bytes (4 MiB here): one of 1.5 MiB is loaded once for
    three searches in turn; one of 6 MiB, more than the bound, is loaded for each."""
    env = {"KILN_MEMORY_OBJECTS_CACHE_BYTES": "4MiB"}

    def loads_for_three_searches(self, name, n):
        rng = np.random.default_rng(n)
        rows = rng.normal(size=(n, 256)).astype(np.float32)

        async def go():
            c = await self.client()
            await vec_put(c, name, rows, [f"r{i}" for i in range(n)], metric="ip")
            before = objects_metrics(self.kilnd)
            for i in range(3):  # other queries each time: no cached result answers
                done, _, _ = await search(c, name, rng.normal(size=(1, 256)), k=5)
                self.assertEqual(done["state"], "done", done)
            after = objects_metrics(self.kilnd)
            await c.close()
            return after[0] - before[0], after[1] - before[1]
        return self.run_async(go())

    def test_a_collection_within_the_bound_is_loaded_once(self):
        self.assertEqual(self.loads_for_three_searches("fits", 1536), (1, 2))

    def test_a_collection_over_the_bound_is_loaded_for_each_job(self):
        self.assertEqual(self.loads_for_three_searches("over", 6144), (3, 0))


class VecBigAnswerTest(KilndTestCase):
    """An answer bigger than memory.max_output_buffer_bytes (64 KiB here) goes out:
    the `done` is sent from the job's own text, not a copy held for the
    connection, so only a reader that stops reading is closed."""
    env = {"KILN_MEMORY_MAX_OUTPUT_BUFFER_BYTES": "64KiB"}

    def test_a_done_bigger_than_the_output_buffer_is_delivered_and_sent_again(self):
        n, q, k = 2000, 30, 1000
        rows = np.random.default_rng(3).normal(size=(n, 8)).astype(np.float32)
        ids = [f"row-{i:06d}" for i in range(n)]

        async def go():
            c = await self.client()
            await vec_put(c, "wide", rows, ids, metric="l2")
            done, scores, acc = await search(c, "wide", rows[:q], k=k)
            again = await c.call({"op": "result", "job": acc["job"]})
            await c.close()
            return done, scores, again
        done, scores, again = self.run_async(go())
        self.assertEqual(done["state"], "done", done)
        self.assertGreater(len(json.dumps(done)), 4 * (64 << 10))
        self.assertEqual([len(a) for a in done["result"]["ids"]], [k] * q)
        self.assertEqual([a[0] for a in done["result"]["ids"]], ids[:q])  # each query itself, at distance 0
        self.assertEqual(scores.shape, (q, k))
        self.assertEqual((again["op"], again["result"], again["parts"]), ("done", done["result"], done["parts"]))


def long_id_rows(seed, letter, n=1200):
    """n vectors of dim 4 and ids of 240 bytes: answers whose ids are most of them."""
    rows = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return rows, [letter * 233 + f"-{i:06d}" for i in range(n)]


async def results_left_memory(c):
    """Waits until no result is held in memory (finished jobs leave it once their
    records are stored)."""
    for _ in range(100):
        if (await c.call({"op": "stats"}))["memory"]["results_bytes"] == 0:
            return
        await asyncio.sleep(0.05)


async def messages_out(c):
    """How many messages kilnd has queued to its clients (stats), this one's reply not
    yet among them."""
    return (await c.call({"op": "stats"}))["messages_out"]


async def until_queued(c, base, n, timeout=60):
    """Polls until kilnd has queued n messages since `base` (messages_out read on
    c before they were asked for) besides the replies to these polls and to that
    read."""
    end = time.monotonic() + timeout
    polls = 0
    while True:
        out = await messages_out(c)
        polls += 1
        if out - base - polls >= n:
            return
        if time.monotonic() > end:
            raise AssertionError(f"{out - base - polls} of {n} messages queued")
        await asyncio.sleep(0.01)


async def peak_of(c):
    """memory.max_bytes, and the most kilnd has held of it since it started."""
    mem = (await c.call({"op": "stats"}))["memory"]
    return mem["peak_bytes"], mem["max_bytes"]


class VecAnswerMemoryTest(KilndTestCase):
    """A search's ids are most of its answer (q x k strings of up to 256 bytes):
    they count in memory.max_bytes, in the result and in its `done`, and a search
    whose answer could never fit there is refused when it is about to run, with
    the collection's longest id known, rather than run past the budget."""
    env = {"KILN_MEMORY_MAX_BYTES": "64MiB"}

    def test_the_ids_count_and_an_answer_past_the_budget_is_refused(self):
        n, k = 1200, 1000
        rows = np.random.default_rng(5).normal(size=(n, 4)).astype(np.float32)
        ids = [("\"q\"" if i % 7 == 0 else "") + "x" * 230 + f"-{i:06d}" for i in range(n)]

        async def go():
            c = await self.client()
            self.assertEqual((await vec_put(c, "long", rows, ids, metric="l2"))["op"], "vec")
            big = await outcome(c, await submit_search(c, "long", rows[:400], k, False))
            done, scores, _ = await search(c, "long", rows[:40], k=k)
            text = len(json.dumps(done["result"]["ids"], separators=(",", ":")))
            stats = await c.call({"op": "stats"})
            # One whose two copies of the ids nearly fill the budget: its done takes
            # the room kept for it, not room of its own besides.
            full, _, _ = await search(c, "long", rows[:130], k=k)
            self.assertEqual(full["state"], "done", full)
            full_peak = (await c.call({"op": "stats"}))["memory"]["peak_bytes"]
            for _ in range(100):  # the job leaves memory once its record is stored
                after = await c.call({"op": "stats"})
                if after["memory"]["results_bytes"] == 0:
                    break
                await asyncio.sleep(0.05)
            await c.close()
            return big, done, scores, text, stats["memory"], after["memory"], full_peak
        big, done, scores, text, mem, after, full_peak = self.run_async(go())
        self.assertLessEqual(full_peak, mem["max_bytes"])
        self.assertEqual((big["state"], big["error"]["code"], big["error"]["field"]), ("failed", "too_large", "params"),
                         big)
        self.assertIn("memory.max_bytes", big["error"]["message"])
        self.assertIn("collection long", big["error"]["message"])
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(scores.shape, (40, k))
        self.assertGreater(text, 9_000_000)
        # The ids were held twice, in the result and in the done message.
        self.assertGreaterEqual(mem["peak_bytes"], 2 * text)
        self.assertLessEqual(mem["peak_bytes"], mem["max_bytes"])
        self.assertEqual(after["results_bytes"], 0, after)

    def test_results_read_back_for_a_client_that_does_not_read_stay_within_the_budget(self):
        """Each `result` of a finished search no longer in memory reads its ids
        back from the store (and its done repeats them): that is taken from
        memory.max_bytes first, and a `result` it does not fit is unavailable."""
        rows, ids = long_id_rows(7, "y")

        async def go():
            c = await self.client()
            self.assertEqual((await vec_put(c, "reread", rows, ids, metric="l2"))["op"], "vec")
            done, _, acc = await search(c, "reread", rows[:100], k=1000, key="reread-1")
            self.assertEqual(done["state"], "done", done)
            await results_left_memory(c)
            lazy = await self.client()
            base = await messages_out(c)
            lazy.ws.transport.pause_reading()
            for i in range(8):
                await lazy.send({"op": "result", "job": acc["job"], "ref": f"again-{i}"})
            await until_queued(c, base, 8)  # a reply (or a done and its part) to each
            # A resubmission of its key without watch needs no result read back: accepted.
            again = await submit_search(c, "reread", rows[:100], 1000, False, key="reread-1", watch=False)
            lazy.ws.transport.resume_reading()
            answers = [await wait_for(lazy, lambda m: str(m.get("ref", "")).startswith("again-"), 60)
                       for _ in range(8)]
            peak, max_bytes = await peak_of(c)
            await lazy.close()
            await c.close()
            return peak, max_bytes, answers, again, acc
        peak, max_bytes, answers, again, acc = self.run_async(go())
        self.assertEqual((again["op"], again["job"]), ("accepted", acc["job"]), again)
        self.assertLessEqual(peak, max_bytes)
        ops = [m["op"] for m in answers]
        self.assertIn("done", ops)
        self.assertIn("error", ops)
        for m in answers:
            if m["op"] == "error":
                self.assertEqual(m["code"], "unavailable", m)
                self.assertIn("memory.max_bytes", m["message"])

    def test_cache_hits_of_big_answers_wait_for_memory_to_be_read_back(self):
        """A cache hit's big answer is read back from the store only once what it
        will hold fits in memory.max_bytes: resubmissions of three cached searches
        by a client that does not read stay within the budget, and are answered
        in order once it reads."""
        rows, ids = long_id_rows(8, "z")

        async def go():
            c = await self.client()
            self.assertEqual((await vec_put(c, "hits", rows, ids, metric="l2"))["op"], "vec")
            first = []
            for i in range(3):
                done, _, _ = await search(c, "hits", rows[100 * i:100 * (i + 1)], k=1000)
                self.assertEqual(done["state"], "done", done)
                first.append(done["result"]["ids"])
            await results_left_memory(c)
            lazy = await self.client()
            hits = (await c.call({"op": "stats"}))["cache"]["hits"]
            base = await messages_out(c)
            lazy.ws.transport.pause_reading()
            for i in range(3):
                await send_frames(lazy, query_frames(f"hit-{i}", rows[100 * i:100 * (i + 1)]))
                await lazy.send({"op": "submit", "kind": "vec.search", "params": {"collection": "hits", "k": 1000},
                                 "ref": f"hit-{i}"})
            # All three found in the cache, and the first answered (accepted, done,
            # its part): read back at once, the others would be held by now too.
            reads = 0
            while (await c.call({"op": "stats"}))["cache"]["hits"] < hits + 3:
                reads += 1
                self.assertLess(reads, 6000, "three cache hits")
                await asyncio.sleep(0.01)
            await until_queued(c, base + reads + 1, 3)  # besides the replies to those reads
            lazy.ws.transport.resume_reading()
            dones = []
            for _ in range(3):
                dones.append(await wait_for(lazy, lambda m: m.get("op") == "done", 60))
            peak, max_bytes = await peak_of(c)
            await lazy.close()
            await c.close()
            return first, dones, peak, max_bytes
        first, dones, peak, max_bytes = self.run_async(go())
        self.assertLessEqual(peak, max_bytes)
        self.assertEqual([d["result"]["ids"] for d in dones], first)


class VecAnswerMemoryWaitTest(KilndTestCase):
    """The room a search's done message will take is kept until the done takes it:
    a job waiting for memory behind the search is not let in on it meanwhile, so
    the budget's peak stays within memory.max_bytes."""
    env = {"KILN_MEMORY_MAX_BYTES": "256MiB", "KILN_CPU_THREADS": "2"}

    def test_a_job_waiting_for_memory_does_not_take_the_room_kept_for_a_done(self):
        n, dim = 1200, 4096
        rows = np.random.default_rng(5).normal(size=(n, dim)).astype(np.float32)
        ids = ["x" * 232 + f"-{i:06d}" for i in range(n)]
        maps = ["kappa", "gamma1", "gamma2", "alpha_x", "alpha_y", "mu", "psi"]

        async def go():
            c = await self.client()
            self.assertEqual((await vec_put(c, "big", rows, ids, metric="l2"))["op"], "vec")
            acc = await submit_search(c, "big", rows[:200], 1000, False)
            self.assertEqual(acc["op"], "accepted", acc)
            for _ in range(400):  # running: its room is taken
                if (await c.call({"op": "status", "job": acc["job"]})).get("state") != "queued":
                    break
                await asyncio.sleep(0.005)
            # 183 MB of maps: it waits for memory behind the search.
            lens = await c.submit("lens.nfw", {"mass": 3e14, "concentration": 5.0, "grid_size": 2560, "maps": maps})
            self.assertEqual(lens["op"], "accepted", lens)
            states = {}
            while len(states) < 2:
                done, _, _ = await c.read_done(timeout=120)
                states[done["job"]] = done["state"]
            mem = (await c.call({"op": "stats"}))["memory"]
            await c.close()
            return states, mem
        states, mem = self.run_async(go())
        self.assertEqual(sorted(states.values()), ["done", "done"], states)
        self.assertLessEqual(mem["peak_bytes"], mem["max_bytes"], mem)


class VecGatheredMemoryTest(KilndTestCase):
    """Single-query searches gathered into one batch were each taken with their
    estimate from submit, which cannot know the ids' length; with the collection
    loaded, each needs its ids' room too. A search that finds no more room goes
    back to its queue to wait for it, so the batch never runs past
    memory.max_bytes, and every search is answered."""
    env = {"KILN_MEMORY_MAX_BYTES": "64MiB", "KILN_CPU_THREADS": "1",
           "KILN_BATCH_VEC_SEARCH_MAX_BATCH": "256", "KILN_BATCH_VEC_SEARCH_MAX_DELAY_US": "200000",
           "KILN_MEMORY_MAX_OUTPUT_BUFFER_BYTES": "256MiB"}

    def test_a_gathered_batch_stays_within_the_budget(self):
        rows, ids = long_id_rows(11, "g")
        n, k = 200, 1000  # each answer: 1,000 ids of 241 bytes, held twice (~480 KB)

        async def go():
            c = await self.client()
            self.assertEqual((await vec_put(c, "gathered", rows, ids, metric="l2"))["op"], "vec")
            out = await single_searches(c, "gathered", rows[:n], lambda i: k)
            peak, max_bytes = await peak_of(c)
            await c.close()
            return out, peak, max_bytes
        out, peak, max_bytes = self.run_async(go())
        self.assertLessEqual(peak, max_bytes)
        self.assertGreater(max(d["batch"] for _, d, _ in out), 1)
        for i, done, _ in out:
            self.assertEqual(done["state"], "done", done)
            self.assertEqual(done["result"]["ids"][0][0], ids[i])  # each row finds itself first


class VecQueuedTest(KilndTestCase):
    """Searches that wait in the queue while their collection changes: one whose
    collection is dropped ends failed with not_found, naming the field, as a submit
    naming no collection would; one whose collection gets a new version runs against
    that version (the one it was bound to was never loaded, and the store keeps only
    the newest), says so, and is not cached under the old version's key."""
    env = {"KILN_CPU_THREADS": "1"}

    async def blocked(self, c):
        """Keeps the one worker busy (about 3 s); returns the blocking job's id."""
        r = await c.submit("lens.raytrace", {"mass": 1.234e14 + random.random() * 1e12, "concentration": 5,
                                             "grid_size": 1024, "supersample": 8})
        return r["job"]

    def test_a_search_whose_collection_changed_while_it_waited_runs_on_the_new_version(self):
        q = {"collection": "moving-q", "k": 1, "queries": [[0, 0, 0, 1]]}

        async def go():
            c = await self.client()
            v1 = await vec_put(c, "moving-q", np.eye(4, dtype=np.float32), list("abcd"), metric="ip")
            blocker = await self.blocked(c)
            search = await c.submit("vec.search", q)
            self.assertEqual(search.get("state"), "queued", search)
            v2 = await vec_put(c, "moving-q", np.array([[0, 0, 0, 5]], dtype=np.float32), ["e"])
            await c.call({"op": "cancel", "job": blocker})
            done, _, _ = await c.read_done(search["job"], timeout=120)
            again = await c.submit("vec.search", q)
            done2, _, _ = await c.read_done(again["job"], timeout=60)
            await c.close()
            return v1, v2, done, again, done2
        v1, v2, done, again, done2 = self.run_async(go())
        self.assertEqual(v2["version"], v1["version"] + 1)
        self.assertEqual(done["state"], "done", done)
        self.assertEqual(done["result"]["collection_version"], v2["version"], done)
        self.assertEqual(done["result"]["ids"], [["e"]])
        self.assertFalse(again["cached"], again)  # nothing was cached for version 2 by the first
        self.assertEqual(done2["result"]["ids"], [["e"]])

    def search_after(self, name, metric, change, loaded=False):
        """A search of `name` (a `metric` collection) held in the queue while
        `change(c)` runs: its `done`. loaded: the collection was searched (so its
        snapshot is in memory) before."""
        async def go():
            c = await self.client()
            await vec_put(c, name, np.eye(4, dtype=np.float32), list("abcd"), metric=metric)
            if loaded:
                done = (await c.run("vec.search", {"collection": name, "k": 1, "queries": [[1, 0, 0, 0]]}))[0]
                self.assertEqual(done["state"], "done", done)
            blocker = await self.blocked(c)
            search = await c.submit("vec.search", {"collection": name, "k": 2, "queries": [[3, 4, 0, 0]]})
            self.assertEqual(search.get("state"), "queued", search)
            await change(c)
            await c.call({"op": "cancel", "job": blocker})
            done, _, _ = await c.read_done(search["job"], timeout=120)
            await c.close()
            return done
        return self.run_async(go())

    def assertNotFound(self, done):
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["error"]["code"], "not_found", done)
        self.assertEqual(done["error"].get("field"), "params.collection", done)

    def test_a_search_whose_collection_went_while_it_waited_names_the_field(self):
        # Whether or not the collection was loaded when it was dropped.
        for name, loaded in (("doomed", False), ("doomed-loaded", True)):
            async def drop(c, name=name):
                self.assertEqual((await c.call({"op": "vec.drop", "collection": name})).get("op"), "ok")
            self.assertNotFound(self.search_after(name, "ip", drop, loaded))

    def test_a_search_whose_collection_was_dropped_and_put_anew_while_it_waited_is_not_found(self):
        # The new collection of that name is another one (here ip where the job was
        # bound to cosine): the job fails as if the drop were the last change.
        for name, loaded in (("reborn", False), ("reborn-loaded", True)):
            async def drop_and_put(c, name=name):
                self.assertEqual((await c.call({"op": "vec.drop", "collection": name})).get("op"), "ok")
                await vec_put(c, name, 2 * np.eye(4, dtype=np.float32), list("abcd"), metric="ip")
            self.assertNotFound(self.search_after(name, "cosine", drop_and_put, loaded))


if __name__ == "__main__":
    unittest.main()
