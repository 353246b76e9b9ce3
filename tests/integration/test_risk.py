"""risk.score end to end (SPEC §1.3): Altman's Z and Z'' with zones, XGBoost models
trained here with Debian's python3-xgboost, uploaded with model.put and scored as
XGBoost's own predict scores them, rows as JSON or as a binary part giving one cache
key, a new model version never answered from an older result, one-row jobs batched,
and every refusal naming its field.
"""
import asyncio
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np
import xgboost as xgb

from kiln_fixture import KILNCTL, KilndTestCase, decode_frame
from kiln_objects import model_put, next_ref, part_frames, send_frames, xgb_model


def train(seed, features=6, depth=4, rounds=30, base_score=None):
    """A binary:logistic model as the JSON bytes XGBoost writes, and its Booster."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, features)).astype(np.float32)
    x[:, 1] = rng.integers(0, 5, 2000)
    x[rng.random(x.shape) < 0.1] = np.nan
    z = np.nan_to_num(x, nan=0.2)
    y = (z[:, 0] + 0.5 * z[:, 1] * (z[:, 2] > 0) + rng.normal(scale=0.5, size=2000) > 0.5).astype(np.float32)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed, "nthread": 1}
    if base_score is not None:
        params["base_score"] = base_score
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=rounds)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.json")
        booster.save_model(path)
        with open(path, "rb") as f:
            data = f.read()
        loaded = xgb.Booster()  # as kiln sees it: from the file, no training cache
        loaded.load_model(path)
    return data, loaded


def thresholds(model_bytes):
    """(feature, threshold) of every split, as float32."""
    m = json.loads(model_bytes)
    out = []
    for t in m["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(t["left_children"]):
            if left != -1:
                out.append((t["split_indices"][i], np.float32(t["split_conditions"][i])))
    return out


def probe_rows(model_bytes, features, seed, n=300):
    """Random rows, rows of special values, and rows with values exactly on split
    thresholds and one float32 below."""
    rng = np.random.default_rng(seed)
    rows = [rng.normal(size=(n, features)).astype(np.float32)]
    # No infinities: XGBoost's DMatrix refuses them, so there is nothing to compare.
    special = np.array([0.0, -0.0, np.nan, 3.4e38, -3.4e38, 1e30, -1e30, 1e-45, -1e-45], dtype=np.float32)
    s = rng.normal(size=(100, features)).astype(np.float32)
    mask = rng.random(s.shape) < 0.4
    s[mask] = rng.choice(special, size=int(mask.sum()))
    rows.append(s)
    for k, (f, t) in enumerate(thresholds(model_bytes)[:150]):
        r = rng.normal(size=(2, features)).astype(np.float32)
        r[0, f] = t
        r[1, f] = np.nextafter(t, np.float32(-np.inf))
        rows.append(r)
    return np.ascontiguousarray(np.concatenate(rows))


def json_rows(rows):
    """rows as JSON arrays, NaN as null. repr of a float32 as a double is exact."""
    return [[None if np.isnan(v) else float(v) for v in row] for row in rows]


class RiskTest(KilndTestCase):
    # One-row jobs gather for up to 20 ms, so a burst of them shares batches.
    env = {"KILN_BATCH_RISK_SCORE_MAX_DELAY_US": "20000"}

    async def submit_rows(self, c, params, rows, **kw):
        """Submits with `rows` sent as the binary part "rows" (f32)."""
        ref = next_ref(c)
        a = np.ascontiguousarray(rows, dtype="<f4")
        await send_frames(c, part_frames(ref, "rows", "f32", a.shape, a.tobytes()))
        msg = {"op": "submit", "kind": "risk.score", "params": params, "ref": ref}
        msg.update(kw)
        return await c.call(msg)

    async def finish(self, c, acc):
        self.assertEqual(acc["op"], "accepted", acc)
        done, parts, _ = await c.read_done(acc["job"])
        return done, parts

    def test_altman_z_and_z2_with_zones(self):
        async def go():
            c = await self.client()
            rows = [[0.1, 0.2, 0.3, 0.4, 0.5], [-0.5, -0.2, -0.1, 0.1, 0.3], [0.3, 0.5, 0.4, 2.0, 1.5],
                    [0, 0, 0, 0, 1.81], [0, 0, 0, 0, 2.99]]
            done, parts = await c.run("risk.score", {"model": "altman-z", "rows": rows})
            self.assertEqual(done["state"], "done", done)
            self.assertEqual(done["result"]["rows"], 5)
            self.assertIsNone(done["result"]["model_version"])
            x = np.array(rows, dtype=np.float32).astype(np.float64)
            want = (1.2 * x[:, 0] + 1.4 * x[:, 1] + 3.3 * x[:, 2] + 0.6 * x[:, 3] + 1.0 * x[:, 4]).astype(np.float32)
            np.testing.assert_array_equal(parts["z"], want)
            self.assertEqual(parts["zone"].dtype, np.uint8)
            self.assertEqual(parts["zone"].tolist(), [1, 0, 2, 1, 1])  # boundaries are grey

            rows2 = [[0.1, 0.1, 0.1, 0.5], [-0.2, 0.0, 0.05, 0.3], [0.3, 0.4, 0.2, 1.0]]
            done, parts = await c.run("risk.score", {"model": "altman-z2", "rows": rows2})
            self.assertEqual(done["state"], "done", done)
            x = np.array(rows2, dtype=np.float32).astype(np.float64)
            want = (6.56 * x[:, 0] + 3.26 * x[:, 1] + 6.72 * x[:, 2] + 1.05 * x[:, 3]).astype(np.float32)
            np.testing.assert_array_equal(parts["z"], want)
            self.assertEqual(parts["zone"].tolist(), [1, 0, 2])
            await c.close()
        self.run_async(go())

    def test_json_and_binary_rows_are_one_cache_key(self):
        async def go():
            c = await self.client()
            rows = np.array([[0.21, -0.13, 0.4, 1.7], [0.05, 0.1, 0.2, 0.3]], dtype=np.float32)
            params = {"model": "altman-z2", "rows": json_rows(rows)}
            first, p1 = await c.run("risk.score", params)
            acc = await self.submit_rows(c, {"model": "altman-z2"}, rows)
            self.assertEqual(acc["op"], "accepted", acc)
            self.assertTrue(acc["cached"], acc)
            done, p2 = await self.finish(c, acc)
            np.testing.assert_array_equal(p1["z"], p2["z"])
            np.testing.assert_array_equal(p1["zone"], p2["zone"])
            await c.close()
        self.run_async(go())

    def test_stored_model_scores_as_xgboost_predict(self):
        async def go():
            c = await self.client()
            exact = total = 0
            for name, seed, depth, rounds, base_score, v3 in (("credit-a", 1, 4, 30, None, False),
                                                              ("credit-b", 2, 6, 60, 0.3, True),
                                                              ("credit-c", 3, 2, 5, None, False)):
                data, booster = train(seed, depth=depth, rounds=rounds, base_score=base_score)
                if v3:  # XGBoost 3.x writes base_score as "[3E-1]"
                    text = data.decode()
                    i = text.index('"base_score":"') + len('"base_score":"')
                    j = text.index('"', i)
                    data = (text[:i] + "[" + text[i:j] + "]" + text[j:]).encode()
                    self.assertIn(b'"base_score":"[', data)
                put = await model_put(c, name, data)
                self.assertEqual(put["op"], "model", put)
                self.assertEqual(put["features"], 6)
                rows = probe_rows(data, 6, seed)
                dm = xgb.DMatrix(rows, missing=np.nan)
                want_pd = booster.predict(dm).astype(np.float32)
                want_margin = booster.predict(dm, output_margin=True).astype(np.float32)
                acc = await self.submit_rows(c, {"model": name, "margin": True}, rows)
                done, parts = await self.finish(c, acc)
                self.assertEqual(done["state"], "done", done)
                self.assertEqual(done["result"], {"rows": len(rows), "model_version": put["version"]})
                self.assertEqual(sorted(parts), ["margin", "pd"])
                self.assertLessEqual(float(np.max(np.abs(parts["pd"] - want_pd))), 1e-6)
                np.testing.assert_array_equal(parts["margin"], want_margin)
                exact += int(np.sum(parts["pd"] == want_pd))
                total += len(rows)
                # The same rows as JSON (null = NaN): the same result, from the cache.
                acc = await self.submit_rows(c, {"model": name}, rows)
                d1, p1 = await self.finish(c, acc)
                acc = await c.submit("risk.score", {"model": name, "rows": json_rows(rows)})
                self.assertTrue(acc["cached"], acc)
                d2, p2 = await self.finish(c, acc)
                np.testing.assert_array_equal(p1["pd"], p2["pd"])
                self.assertNotIn("margin", p1)
            # Same libm, same operations: every probability to the bit.
            self.assertEqual(exact, total)
            await c.close()
        self.run_async(go())

    def test_new_version_is_never_answered_from_an_older_result(self):
        async def go():
            c = await self.client()
            rows = np.random.default_rng(5).normal(size=(20, 6)).astype(np.float32)
            v1_data, v1 = train(11)
            v2_data, v2 = train(12)
            put1 = await model_put(c, "rotating", v1_data)
            d1, p1 = await self.finish(c, await self.submit_rows(c, {"model": "rotating"}, rows))
            self.assertEqual(d1["result"]["model_version"], put1["version"])
            np.testing.assert_array_equal(p1["pd"], v1.predict(xgb.DMatrix(rows)).astype(np.float32))
            put2 = await model_put(c, "rotating", v2_data)
            self.assertGreater(put2["version"], put1["version"])
            acc = await self.submit_rows(c, {"model": "rotating"}, rows)
            self.assertFalse(acc["cached"], acc)
            d2, p2 = await self.finish(c, acc)
            self.assertEqual(d2["result"]["model_version"], put2["version"])
            np.testing.assert_array_equal(p2["pd"], v2.predict(xgb.DMatrix(rows)).astype(np.float32))
            self.assertFalse(np.array_equal(p1["pd"], p2["pd"]))
            # The new version's result is cached in its turn.
            acc = await self.submit_rows(c, {"model": "rotating"}, rows)
            self.assertTrue(acc["cached"], acc)
            await c.close()
        self.run_async(go())

    def test_one_row_jobs_from_many_connections_are_batched(self):
        async def go():
            c0 = await self.client()
            data, booster = train(21, features=6, depth=6, rounds=100)
            self.assertEqual((await model_put(c0, "batched", data))["op"], "model")
            rows = np.random.default_rng(9).normal(size=(400, 6)).astype(np.float32)
            want = booster.predict(xgb.DMatrix(rows)).astype(np.float32)
            clients = [await self.client() for _ in range(8)]

            async def one_client(k, c):
                """Pipelines this connection's share of the rows, then reads every
                accepted, done and part until each job has its result."""
                job_row, by_job, n = {}, {}, 0
                ref_row = {}
                for i in range(k, len(rows), len(clients)):
                    ref = await c.send({"op": "submit", "kind": "risk.score",
                                        "params": {"model": "batched", "rows": json_rows(rows[i:i + 1])}})
                    ref_row[ref] = i
                    n += 1
                while len(by_job) < n:
                    m = await c.recv(60)
                    self.assertNotIsInstance(m, bytes)
                    if m.get("op") == "accepted":
                        job_row[m["job"]] = ref_row[m["ref"]]
                    elif m.get("op") == "done":
                        parts = {}
                        for p in m.get("parts", []):
                            name, arr = decode_frame(await c.recv(60))
                            parts[name] = arr
                        by_job[m["job"]] = (m, parts)
                    else:
                        self.fail(m)
                return [(job_row[j], done, parts) for j, (done, parts) in by_job.items()]

            results = await asyncio.gather(*(one_client(k, c) for k, c in enumerate(clients)))
            batches = []
            for i, done, parts in (r for rs in results for r in rs):
                self.assertEqual(done["state"], "done", done)
                self.assertEqual(parts["pd"].shape, (1,))
                self.assertEqual(parts["pd"][0], want[i])
                batches.append(done.get("batch", 1))
            self.assertEqual(len(batches), len(rows))
            self.assertGreater(max(batches), 1, "no two one-row jobs shared a batch")
            for c in clients + [c0]:
                await c.close()
        self.run_async(go())

    def assert_refused(self, reply, code, field, words=None):
        self.assertEqual(reply.get("op"), "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertEqual(reply.get("field"), field, reply)
        if words:
            self.assertIn(words, reply["message"])

    def test_every_refusal_names_its_field(self):
        async def go():
            c = await self.client()
            sub = lambda params: c.submit("risk.score", params)  # noqa: E731
            self.assert_refused(await sub({"model": "no-such-model", "rows": [[1, 2]]}), "not_found",
                                "params.model")
            self.assert_refused(await sub({"rows": [[1, 2, 3, 4]]}), "bad_params", "params.model")
            self.assert_refused(await sub({"model": "altman-z2"}), "bad_params", "inputs.rows")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, 2, 3, 4]], "depth": 2}),
                                "bad_params", "params.depth")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, 2, 3]]}), "bad_params",
                                "params.rows", "exactly 4")
            self.assert_refused(await sub({"model": "altman-z", "rows": [[1, 2, 3, 4]]}), "bad_params",
                                "params.rows", "exactly 5")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, None, 3, 4]]}), "bad_params",
                                "params.rows", "params.rows[0][1] is missing")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, 2, 3, 4]], "margin": True}),
                                "bad_params", "params.margin")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, 2, 3, 4], [1, 2]]}), "bad_params",
                                "params.rows[1]", "rectangular")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [1, 2, 3, 4]}), "bad_params",
                                "params.rows", "2-dimensional")
            self.assert_refused(await sub({"model": "altman-z2", "rows": [[1, 2, "x", 4]]}), "bad_params",
                                "params.rows[0][2]")
            self.assert_refused(await sub({"model": 7, "rows": [[1, 2, 3, 4]]}), "bad_params", "params.model")
            acc = await self.submit_rows(c, {"model": "altman-z"}, np.zeros((0, 5), np.float32))
            self.assert_refused(acc, "bad_params", "params.rows", "0 rows")
            acc = await self.submit_rows(c, {"model": "altman-z"}, np.full((2, 5), np.inf, np.float32))
            self.assert_refused(acc, "bad_params", "params.rows", "infinite")

            # A stored model's features are known at submission: rows of another
            # width are refused there (never accepted), inline or binary.
            put = await model_put(c, "five", xgb_model(n_trees=3, n_features=5))
            self.assertEqual(put["op"], "model", put)
            self.assert_refused(await sub({"model": "five", "rows": [[1, 2, 3]]}), "bad_params", "params.rows",
                                "exactly 5")

            # Models the scorer cannot reproduce are refused at model.put, naming what.
            for model, field, words in (
                    (xgb_model(objective="reg:logistic"), "learner.objective.name", "reg:logistic"),
                    (xgb_model(booster="dart"), "learner.gradient_booster.name", "dart"),
                    (xgb_model(categorical=True), "learner.gradient_booster.model.trees[0].split_type",
                     "categorical"),
                    # XGBoost 1.7 would read it as 0.5: no score is both its and the file's.
                    (xgb_model(base_score="0.3000000119"), "learner.learner_model_param.base_score",
                     "more than 9 significant digits")):
                r = await model_put(c, "refused", model)
                self.assert_refused(r, "bad_params", field, words)
            await c.close()
        self.run_async(go())

    def test_rows_of_another_width_than_the_stored_model_are_refused_at_submit(self):
        async def go():
            c = await self.client()
            sub = lambda params: c.submit("risk.score", params)  # noqa: E731
            put = await model_put(c, "width", xgb_model(n_trees=3, n_features=5))
            self.assertEqual(put["op"], "model", put)
            v1 = put["version"]
            want = f'model "width" (version {v1}) takes exactly 5'
            self.assert_refused(await sub({"model": "width", "rows": [[1, 2, 3]]}), "bad_params", "params.rows",
                                "params.rows has 3 features per row; " + want)
            self.assert_refused(await sub({"model": "width", "rows": [[1, 2, 3, 4, 5, 6]] * 2}), "bad_params",
                                "params.rows", want)
            self.assert_refused(await self.submit_rows(c, {"model": "width"}, np.zeros((2, 4), np.float32)),
                                "bad_params", "params.rows", "params.rows has 4 features per row; " + want)
            self.assert_refused(await self.submit_rows(c, {"model": "width", "margin": True},
                                                       np.zeros((1, 9), np.float32)),
                                "bad_params", "params.rows", want)
            self.assert_refused(await self.submit_rows(c, {"model": "width"}, np.zeros((0, 5), np.float32)),
                                "bad_params", "params.rows", "0 rows")
            # The right width, inline and binary, still runs (one input, one key).
            rows = np.arange(10, dtype=np.float32).reshape(2, 5) / 10
            d1, p1 = await self.finish(c, await sub({"model": "width", "rows": json_rows(rows)}))
            self.assertEqual(d1["state"], "done", d1)
            self.assertEqual(d1["result"]["model_version"], v1)
            acc = await self.submit_rows(c, {"model": "width"}, rows)
            self.assertTrue(acc.get("cached"), acc)
            d2, p2 = await self.finish(c, acc)
            np.testing.assert_array_equal(p1["pd"], p2["pd"])
            # A new version of another width: the check follows it.
            put2 = await model_put(c, "width", xgb_model(n_trees=2, n_features=7))
            v2 = put2["version"]
            self.assertGreater(v2, v1)
            self.assert_refused(await sub({"model": "width", "rows": json_rows(rows)}), "bad_params", "params.rows",
                                f'model "width" (version {v2}) takes exactly 7')
            rows7 = np.ones((1, 7), np.float32)
            d3, _ = await self.finish(c, await self.submit_rows(c, {"model": "width"}, rows7))
            self.assertEqual(d3["state"], "done", d3)
            self.assertEqual(d3["result"]["model_version"], v2)
            # Deleted, the name is unknown; put again, the new model's width counts.
            self.assertEqual((await c.call({"op": "model.delete", "name": "width"}))["op"], "ok")
            self.assert_refused(await sub({"model": "width", "rows": json_rows(rows7)}), "not_found", "params.model")
            put3 = await model_put(c, "width", xgb_model(n_trees=2, n_features=5))
            self.assert_refused(await sub({"model": "width", "rows": json_rows(rows7)}), "bad_params", "params.rows",
                                f'(version {put3["version"]}) takes exactly 5')
            d4, _ = await self.finish(c, await sub({"model": "width", "rows": json_rows(rows)}))
            self.assertEqual(d4["state"], "done", d4)
            await c.close()
        self.run_async(go())

    def test_a_model_stored_before_a_restart_is_checked_at_submit(self):
        # The features come back with the versions kilnd reads at start.
        async def put():
            c = await self.client()
            r = await model_put(c, "kept", xgb_model(n_trees=2, n_features=4))
            await c.close()
            return r
        put = self.run_async(put())
        self.assertEqual(put["op"], "model", put)
        self.assertEqual(self.kilnd.stop(), 0, self.kilnd.read_log())
        self.kilnd.start()

        async def after():
            c = await self.client()
            bad = await c.submit("risk.score", {"model": "kept", "rows": [[1, 2, 3]]})
            good, _ = await self.finish(c, await self.submit_rows(c, {"model": "kept"}, np.ones((1, 4), np.float32)))
            await c.close()
            return bad, good
        bad, good = self.run_async(after())
        self.assert_refused(bad, "bad_params", "params.rows", f'(version {put["version"]}) takes exactly 4')
        self.assertEqual(good["state"], "done", good)

    def tool(self, *args, prog=KILNCTL):
        env = {k: v for k, v in os.environ.items() if k not in ("KILN_URL", "KILN_TOKEN")}
        return subprocess.run([prog, *map(str, args)], capture_output=True, text=True, timeout=120, env=env)

    def test_kilnctl_sends_rows_from_npy_and_csv(self):
        data, booster = train(31)
        rows = np.random.default_rng(3).normal(size=(50, 6)).astype(np.float32)
        rows[5, 2] = np.nan
        want = booster.predict(xgb.DMatrix(rows)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "ctl-model.json"), "wb") as f:
                f.write(data)
            r = self.tool("--url", self.kilnd.url, "model", "put", os.path.join(d, "ctl-model.json"))
            self.assertEqual(r.returncode, 0, r.stderr)
            np.save(os.path.join(d, "rows.npy"), rows)
            with open(os.path.join(d, "rows.csv"), "w") as f:
                f.write("a,b,c,d,e,f\n")
                for row in rows:
                    f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")
            for name in ("rows.npy", "rows.csv"):
                out = os.path.join(d, name + ".out")
                r = self.tool("--url", self.kilnd.url, "submit", "risk.score", "model=ctl-model", "margin=true",
                              "--rows", os.path.join(d, name), "--out", out)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("rows = 50", r.stdout)
                np.testing.assert_array_equal(np.load(os.path.join(out, "pd.npy")), want)
                self.assertEqual(np.load(os.path.join(out, "margin.npy")).shape, (50,))
            with open(os.path.join(d, "bad.csv"), "w") as f:
                f.write("1,2,3,4\n1,x,3,4\n")
            r = self.tool("--url", self.kilnd.url, "submit", "risk.score", "model=altman-z2",
                          "--rows", os.path.join(d, "bad.csv"))
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("line 2, column 2", r.stderr)

    def test_kiln_bench_score_model(self):
        async def put():
            c = await self.client()
            r = await model_put(c, "bench-model", train(41, features=7)[0])
            await c.close()
            return r
        self.assertEqual(self.run_async(put())["op"], "model")
        bench = os.environ.get("KILN_BENCH", "build/daemon/bench/kiln-bench")
        for args in (["--scenario", "score-model", "--model", "bench-model"], ["--scenario", "score"]):
            r = self.tool("--url", self.kilnd.url, "--duration", 1, "--connections", 4, "--pipeline", 4, "--json",
                          *args, prog=bench)
            self.assertEqual(r.returncode, 0, r.stderr)
            res = json.loads(r.stdout)
            self.assertEqual(res["errors"], 0, res)
            self.assertGreater(res["jobs_per_s"], 0, res)
        r = self.tool("--url", self.kilnd.url, "--duration", 1, "--scenario", "score-model", "--model", "absent",
                      prog=bench)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("no model \"absent\"", r.stderr)
        r = self.tool("--url", self.kilnd.url, "--scenario", "score-model", prog=bench)
        self.assertEqual(r.returncode, 2, r.stderr)


if __name__ == "__main__":
    unittest.main()
