#!/usr/bin/python3
"""Writes XGBoost models and XGBoost's own predictions for test_model.c.

Usage: gen_models.py OUTDIR

Trains small binary:logistic models with the installed XGBoost (Debian's
python3-xgboost), saves them as JSON, reloads each saved file into a fresh Booster
and records its predictions on rows chosen to probe the scorer's edges. Nothing is
downloaded; everything is derived from a fixed seed.

OUTDIR receives, for every model NAME listed in models.txt ("NAME TREES FEATURES ROWS"):
  NAME.json        the model as XGBoost wrote it
  NAME.v3.json     the same text with base_score in XGBoost 3.x's "[5E-1]" form
  NAME.rows.f32    float32 [ROWS][FEATURES], NaN = missing
  NAME.margin.f32  predict(output_margin=True), float32 [ROWS]
  NAME.pd.f32      predict(), float32 [ROWS]
and the models the scorer must refuse, refuse_CASE.json (refuse_ubjson.json holds
UBJSON bytes; test_model.c lists each case and the field it must name).
"""
import json
import os
import re
import sys

import numpy as np
import xgboost as xgb

F = 8
RNG = np.random.default_rng(20240611)


def training_data(n=3000):
    """Features of mixed kinds: continuous, integer-valued (many ties on split
    thresholds), heavy-tailed, and about 10 % missing values."""
    x = RNG.normal(size=(n, F)).astype(np.float32)
    x[:, 2] = RNG.integers(0, 6, n)
    x[:, 5] = RNG.standard_cauchy(n)
    x[:, 7] = RNG.integers(-3, 4, n) * 0.25
    x[RNG.random((n, F)) < 0.1] = np.nan
    z = np.nan_to_num(x, nan=0.3)
    logit = 1.2 * z[:, 0] - 0.8 * z[:, 1] * (z[:, 2] > 2) + np.tanh(z[:, 5]) + 0.5 * z[:, 7] ** 2
    y = (logit + RNG.normal(scale=0.8, size=n) > 0.3).astype(np.float32)
    return x, y


def split_thresholds(model):
    """(feature, threshold) of every split of every tree."""
    out = []
    for t in model["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(t["left_children"]):
            if left != -1:
                out.append((t["split_indices"][i], np.float32(t["split_conditions"][i])))
    return out


def probe_rows(model, x_train):
    """Rows from the training distribution, then rows with special values, then rows
    whose values sit exactly on split thresholds or one float32 step either side."""
    rows = [x_train[RNG.integers(0, len(x_train), 300)]]
    clean = np.nan_to_num(x_train[RNG.integers(0, len(x_train), 400)], nan=0.0)

    special = np.array([0.0, -0.0, np.nan, np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e30, -1e30,
                        1e-45, -1e-45, 1e-38], dtype=np.float32)
    s = clean[:100].copy()
    mask = RNG.random(s.shape) < 0.4
    s[mask] = RNG.choice(special, size=int(mask.sum()))
    rows.append(s)
    rows.append(np.full((1, F), np.nan, dtype=np.float32))
    rows.append(np.zeros((1, F), dtype=np.float32))
    rows.append(np.full((1, F), -0.0, dtype=np.float32))

    splits = split_thresholds(model)
    if splits:
        picks = [splits[i] for i in RNG.permutation(len(splits))[:200]]
        for k, (f, t) in enumerate(picks):
            base = clean[100 + k % 300]
            for v in (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))):
                r = base.copy()
                r[f] = v
                rows.append(r[None, :])
        by_feature = {}
        for f, t in splits:
            by_feature.setdefault(f, []).append(t)
        for k in range(150):
            r = clean[k].copy()
            for f, ts in by_feature.items():
                t = ts[RNG.integers(0, len(ts))]
                r[f] = (t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf)))[k % 3]
            rows.append(r[None, :])
    return np.ascontiguousarray(np.concatenate(rows).astype(np.float32))


def to_v3(text):
    """XGBoost 3.x writes base_score as a one-element array in a string."""
    out, n = re.subn(r'"base_score"(\s*):(\s*)"([^"\[\]]*)"', r'"base_score"\1:\2"[\3]"', text)
    assert n == 1, "base_score not found once"
    return out


def write_case(out, name, booster, x_train, manifest, text=None):
    """`text`: the model file as written by hand (XGBoost loads it for the predictions)
    instead of as the booster saves itself."""
    path = os.path.join(out, name + ".json")
    if text is None:
        booster.save_model(path)
        with open(path) as fh:
            text = fh.read()
    else:
        with open(path, "w") as fh:
            fh.write(text)
    with open(os.path.join(out, name + ".v3.json"), "w") as fh:
        fh.write(to_v3(text))
    model = json.loads(text)
    # Predict with the model as loaded from the file, as kiln will see it, on a fresh
    # DMatrix (no prediction cache from training).
    loaded = xgb.Booster()
    loaded.load_model(path)
    rows = probe_rows(model, x_train)
    dm = xgb.DMatrix(rows, missing=np.nan)
    margin = loaded.predict(dm, output_margin=True).astype(np.float32)
    pd = loaded.predict(dm).astype(np.float32)
    assert margin.shape == (len(rows),) and pd.shape == (len(rows),)
    rows.tofile(os.path.join(out, name + ".rows.f32"))
    margin.tofile(os.path.join(out, name + ".margin.f32"))
    pd.tofile(os.path.join(out, name + ".pd.f32"))
    trees = len(model["learner"]["gradient_booster"]["model"]["trees"])
    manifest.append(f"{name} {trees} {F} {len(rows)}")
    return model


def hand_tree(like, left, right, parents, conditions, default_left=None):
    """A tree in the form of `like` (a tree of an XGBoost model) with these arrays;
    every split reads feature 0."""
    n = len(left)
    t = dict(like)
    t.update(left_children=left, right_children=right, parents=parents, split_indices=[0] * n,
             split_conditions=conditions, default_left=default_left or [0] * n, split_type=[0] * n,
             base_weights=[0.0] * n, loss_changes=[0.0] * n, sum_hessian=[1.0] * n, categories=[],
             categories_nodes=[], categories_segments=[], categories_sizes=[])
    t["tree_param"] = dict(t["tree_param"], num_nodes=str(n), num_deleted="0")
    return t


def with_trees(model, trees):
    """A copy of model with these trees (ids in order, all of class 0)."""
    m = json.loads(json.dumps(model))
    gb = m["learner"]["gradient_booster"]["model"]
    for i, t in enumerate(trees):
        t["id"] = i
    gb["trees"] = trees
    gb["tree_info"] = [0] * len(trees)
    gb["gbtree_model_param"]["num_trees"] = str(len(trees))
    return m


def write_hand_made(out, name, model, x, manifest, text=None):
    """Writes a hand-made model, has XGBoost load it, and records it as a case (its
    predictions are XGBoost's like any other's)."""
    path = os.path.join(out, name + ".src.json")
    with open(path, "w") as fh:
        fh.write(text if text is not None else json.dumps(model))
    b = xgb.Booster()
    b.load_model(path)
    return write_case(out, name, b, x, manifest, text=text)


def stump_model(template, leaves):
    """A hand-made one-tree model: f0 < 0 goes to leaves[0], else leaves[1]."""
    like = template["learner"]["gradient_booster"]["model"]["trees"][0]
    return with_trees(template, [hand_tree(like, [1, -1, -1], [2, -1, -1], [2147483647, 0, 0],
                                           [0.0, float(leaves[0]), float(leaves[1])], default_left=[1, 0, 0])])


def write_chain(out, template, x, manifest, depth):
    """A one-tree model whose tree is a chain: split k (node 2k) sends f0 < k/depth to
    leaf 2k+1 and the rest on to node 2k+2, the last of which is a leaf."""
    n = 2 * depth + 1
    left, right, parents = [-1] * n, [-1] * n, [2147483647] + [0] * (n - 1)
    cond = [0.0] * n
    for k in range(depth):
        left[2 * k], right[2 * k] = 2 * k + 1, 2 * k + 2
        parents[2 * k + 1] = parents[2 * k + 2] = 2 * k
        cond[2 * k] = k / depth
        cond[2 * k + 1] = 0.001 * (k % 7 - 3)
    cond[n - 1] = 0.5
    like = template["learner"]["gradient_booster"]["model"]["trees"][0]
    write_hand_made(out, "deep_chain", with_trees(template, [hand_tree(like, left, right, parents, cond)]), x,
                    manifest)


def train(params, x, y, rounds, **dm_args):
    base = {"objective": "binary:logistic", "eta": 0.3, "seed": 7, "nthread": 1}
    base.update(params)
    return xgb.train(base, xgb.DMatrix(x, label=y, **dm_args), num_boost_round=rounds)


def write_json(out, name, model):
    with open(os.path.join(out, "refuse_" + name + ".json"), "w") as fh:
        json.dump(model, fh)


def refusals(out, template, x, y):
    """Models kiln must refuse: real ones XGBoost wrote, and hand-broken copies of a
    valid one (each named for what is wrong)."""
    def edit(name, change):
        m = json.loads(json.dumps(template))
        change(m)
        write_json(out, name, m)

    for name, params, rounds in (("gblinear", {"booster": "gblinear"}, 3),
                                 ("dart", {"booster": "dart", "rate_drop": 0.1, "max_depth": 2}, 3),
                                 ("reg_logistic", {"objective": "reg:logistic", "max_depth": 2}, 2)):
        train(params, x, y, rounds).save_model(os.path.join(out, "refuse_" + name + ".json"))
    y3 = np.nan_to_num(x[:, 2], nan=0.0) % 3
    train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, x, y3, 2).save_model(
        os.path.join(out, "refuse_softprob.json"))
    # A real categorical split in tree 0: the label depends only on the category.
    xc = np.stack([RNG.integers(0, 5, 600).astype(np.float32), RNG.normal(size=600).astype(np.float32)], 1)
    yc = np.isin(xc[:, 0], [1, 3]).astype(np.float32)
    bc = train({"tree_method": "hist", "max_depth": 2}, xc, yc, 2, feature_types=["c", "q"],
               enable_categorical=True)
    path = os.path.join(out, "refuse_categorical.json")
    bc.save_model(path)
    with open(path) as fh:
        assert any(json.load(fh)["learner"]["gradient_booster"]["model"]["trees"][0]["split_type"])
    train({"max_depth": 2}, x, y, 2).save_model(os.path.join(out, "refuse_ubjson.json.ubj"))
    os.replace(os.path.join(out, "refuse_ubjson.json.ubj"), os.path.join(out, "refuse_ubjson.json"))

    lmp = lambda m: m["learner"]["learner_model_param"]  # noqa: E731
    gbm = lambda m: m["learner"]["gradient_booster"]["model"]  # noqa: E731
    tree = lambda m, i: gbm(m)["trees"][i]  # noqa: E731

    # XGBoost 1.7 reads the last two as its default 0.5: refused rather than scored otherwise.
    for tag, value in (("one", "1.5E0"), ("zero", "0E0"), ("text", "abc"), ("two", "[5E-1,5E-1]"),
                       ("empty", ""), ("number", 0.5), ("ten_digits", "0.3000000119"), ("blank", " 3E-1")):
        edit("base_score_" + tag, lambda m, v=value: lmp(m).__setitem__("base_score", v))
    # A NUL inside a name (JSON "\u0000") does not end it.
    edit("nul_booster", lambda m: m["learner"]["gradient_booster"].__setitem__("name", "gbtree\0x"))
    edit("nul_objective", lambda m: m["learner"]["objective"].__setitem__("name", "binary:logistic\0x"))
    edit("num_class", lambda m: lmp(m).__setitem__("num_class", "2"))
    edit("num_feature", lambda m: lmp(m).__setitem__("num_feature", "0"))
    edit("no_learner", lambda m: m.pop("learner"))
    edit("tree_info", lambda m: gbm(m)["tree_info"].__setitem__(1, 1))
    edit("num_trees", lambda m: gbm(m)["gbtree_model_param"].__setitem__("num_trees", "99"))
    edit("split_type", lambda m: tree(m, 2).__setitem__("split_type", [0] * (len(tree(m, 2)["split_type"]) - 1) + [1]))
    edit("categories", lambda m: tree(m, 0).update(categories=[1, 3], categories_nodes=[0], categories_segments=[0],
                                                    categories_sizes=[2]))
    edit("short_array", lambda m: tree(m, 1)["right_children"].pop())
    edit("num_nodes", lambda m: tree(m, 1)["tree_param"].__setitem__("num_nodes", "2"))
    edit("child_range", lambda m: tree(m, 0)["left_children"].__setitem__(0, len(tree(m, 0)["left_children"])))
    edit("child_root", lambda m: tree(m, 0)["right_children"].__setitem__(0, 0))

    def cycle(m):
        t = tree(m, 0)
        inner = [i for i in range(1, len(t["left_children"])) if t["left_children"][i] != -1]
        t["left_children"][inner[0]] = inner[0]
    edit("cycle", cycle)

    def one_child(m):
        t = tree(m, 0)
        leaf = [i for i in range(len(t["left_children"])) if t["left_children"][i] == -1][0]
        t["left_children"][leaf] = 1
    edit("one_child", one_child)
    edit("split_feature", lambda m: tree(m, 0)["split_indices"].__setitem__(0, F))
    edit("split_string", lambda m: tree(m, 0)["split_conditions"].__setitem__(0, "0.5"))
    edit("split_huge", lambda m: tree(m, 0)["split_conditions"].__setitem__(0, 1e39))
    # XGBoost writes non-finite floats as bare NaN / Infinity tokens (json.dump does too).
    edit("split_nan", lambda m: tree(m, 0)["split_conditions"].__setitem__(0, float("nan")))

    def stats_nan(m):
        t = tree(m, 0)
        t["loss_changes"][0] = float("nan")
        t["sum_hessian"][0] = float("inf")
        t["base_weights"][0] = float("-inf")
        m["learner"]["feature_names"] = ["NaN", "Infinity", "-Infinity", "a\\\"NaN"]
    m = json.loads(json.dumps(template))
    stats_nan(m)
    with open(os.path.join(out, "accept_stats_nan.json"), "w") as fh:
        json.dump(m, fh)
    edit("default_left", lambda m: tree(m, 0)["default_left"].__setitem__(0, 2))
    edit("leaf_vector", lambda m: tree(m, 0)["tree_param"].__setitem__("size_leaf_vector", "3"))
    edit("num_target", lambda m: lmp(m).__setitem__("num_target", "2"))
    with open(os.path.join(out, "refuse_not_json.json"), "w") as fh:
        fh.write('{"learner": ')


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    x, y = training_data()
    manifest = []
    template = None
    for depth in (1, 3, 6):
        for rounds in (1, 10, 50):
            b = train({"max_depth": depth, "tree_method": "exact"}, x, y, rounds)
            m = write_case(out, f"exact_d{depth}_t{rounds}", b, x, manifest)
            if depth == 3 and rounds == 10:
                template = m
    write_case(out, "hist_d6_t50", train({"max_depth": 6, "tree_method": "hist"}, x, y, 50), x, manifest)
    # Leaf-wise growth numbers nodes in the order they were split, not breadth first.
    write_case(out, "lossguide_t20", train({"tree_method": "hist", "grow_policy": "lossguide", "max_depth": 0,
                                            "max_leaves": 24}, x, y, 20), x, manifest)
    write_case(out, "base_score_0.3", train({"max_depth": 3, "base_score": 0.3}, x, y, 10), x, manifest)
    # Pruning (a large gamma with the exact updater) leaves deleted nodes in the arrays.
    pruned = train({"max_depth": 6, "tree_method": "exact", "gamma": 3.0}, x, y, 10)
    m = write_case(out, "pruned_d6_t10", pruned, x, manifest)
    print("pruned model: %d nodes marked deleted" %
          sum(int(t["tree_param"]["num_deleted"]) for t in m["learner"]["gradient_booster"]["model"]["trees"]))
    # Margins far beyond the sigmoid's clamp (XGBoost computes exp(min(-x, 88.7))).
    for name, leaves in (("stump_extreme", (-100.0, 100.0)), ("stump_zero", (0.0, -0.0))):
        write_hand_made(out, name, stump_model(template, leaves), x, manifest)
    # A split condition written with more digits than a double holds: as a double it
    # is the midpoint of 0.5 and the next float32 (rounding to 0.5), straight to
    # float32 it is that next float32. XGBoost reads JSON numbers straight to float32,
    # so the row value 0.5 goes left.
    text = json.dumps(stump_model(template, (-1.0, 1.0)))
    text, n = re.subn(r'"split_conditions": \[0\.0,', '"split_conditions": [0.500000029802322387695312500000001,',
                      text)
    assert n == 1
    write_hand_made(out, "stump_rounding", None, x, manifest, text=text)
    # Many trees far shallower than the deepest (20,000 one-leaf trees after one of
    # depth up to 9): kiln unrolls fewer top levels than the deepest tree has rather
    # than give every tree a top as wide as that one's (forest.c), and must still
    # score as XGBoost does.
    deep = write_case(out, "deep_d9_t1", train({"max_depth": 9, "tree_method": "exact"}, x, y, 1), x, manifest)
    first = deep["learner"]["gradient_booster"]["model"]["trees"][0]
    shallow = [hand_tree(first, [-1], [-1], [2147483647], [0.001 * (i % 7 - 3)]) for i in range(20000)]
    write_hand_made(out, "many_shallow", with_trees(deep, [dict(first)] + shallow), x, manifest)
    # One tree that is a chain 20,000 splits deep: a row past every threshold visits
    # them all, so kiln checks a job's stop flag every few rows (cpu.c chunk_rows).
    write_chain(out, template, x, manifest, depth=20000)
    # Nine significant digits, the most XGBoost 1.7 reads (leading zeros are not
    # digits of it); one more and it takes its default 0.5 (refused: refusals()).
    nine = json.loads(json.dumps(template))
    nine["learner"]["learner_model_param"]["base_score"] = "0.0300000011"
    write_hand_made(out, "base_score_nine_digits", nine, x, manifest)
    refusals(out, template, x, y)
    with open(os.path.join(out, "models.txt"), "w") as fh:
        fh.write("\n".join(manifest) + "\n")
    print("wrote %d models to %s" % (len(manifest), out))


if __name__ == "__main__":
    main()
