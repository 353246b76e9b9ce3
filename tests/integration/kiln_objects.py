"""Helpers for the stored-object tests (SPEC §2.4): XGBoost JSON models written
here (the layout XGBoost 1.7 writes), KLNB frames that carry a part whole or in
pieces with "offset", and the object ops as calls of the fixture's Client.
"""
import hashlib
import json
import os

import numpy as np

from kiln_fixture import Client, Kilnd, encode_frame


def xgb_model(n_trees=2, n_features=3, objective="binary:logistic", booster="gbtree", base_score="5E-1",
              categorical=False, seed=0):
    """An XGBoost JSON model as bytes: n_trees stumps (one split, two leaves) over
    n_features features. `objective`, `booster` and `categorical` make models kiln
    must refuse; `base_score` "[5E-1]" is how XGBoost 3 writes it."""
    rng = np.random.default_rng(seed)
    trees = []
    for t in range(n_trees):
        leaves = [float(v) for v in rng.normal(0, 0.5, 2).astype(np.float32)]
        trees.append({
            "base_weights": [0.0] + leaves,
            "categories": [1] if categorical else [],
            "categories_nodes": [0] if categorical else [],
            "categories_segments": [0] if categorical else [],
            "categories_sizes": [1] if categorical else [],
            "default_left": [1, 0, 0],
            "id": t,
            "left_children": [1, -1, -1],
            "loss_changes": [1.0, 0.0, 0.0],
            "parents": [2147483647, 0, 0],
            "right_children": [2, -1, -1],
            "split_conditions": [float(np.float32(rng.normal()))] + leaves,
            "split_indices": [t % n_features, 0, 0],
            "split_type": [1 if categorical else 0, 0, 0],
            "sum_hessian": [10.0, 5.0, 5.0],
            "tree_param": {"num_deleted": "0", "num_feature": str(n_features), "num_nodes": "3",
                           "size_leaf_vector": "0"},
        })
    if booster == "gblinear":
        gb = {"model": {"param": {"num_feature": str(n_features), "num_output_group": "1"},
                        "weights": [0.1] * (n_features + 1)}, "name": "gblinear"}
    else:
        gb = {"model": {"gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(n_trees),
                                               "size_leaf_vector": "0"},
                        "tree_info": [0] * n_trees, "trees": trees}, "name": booster}
    model = {
        "learner": {
            "attributes": {},
            "feature_names": [],
            "feature_types": [],
            "gradient_booster": gb,
            "learner_model_param": {"base_score": base_score, "boost_from_average": "1", "num_class": "0",
                                    "num_feature": str(n_features), "num_target": "1"},
            "objective": {"name": objective, "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [1, 7, 4],
    }
    return json.dumps(model).encode()


def xgb_model_of_size(min_bytes, n_features=5):
    """A valid model of at least min_bytes (more trees, no padding), with its tree count."""
    n = max(1, min_bytes // 600)
    while True:
        data = xgb_model(n_trees=n, n_features=n_features)
        if len(data) >= min_bytes:
            return data, n
        n = n * min_bytes // len(data) + 1


def part_frames(ref, part, dtype, shape, payload, piece=None, order=None):
    """The KLNB frames of one part: one frame without "offset" when piece is None,
    else frames of `piece` payload bytes, each with its offset; order "reverse"
    sends them last piece first."""
    header = {"ref": ref, "part": part, "dtype": dtype, "shape": list(shape)}
    if piece is None:
        return [encode_frame(header, payload)]
    frames = [encode_frame(dict(header, offset=o), payload[o:o + piece]) for o in range(0, len(payload), piece)]
    if order == "reverse":
        frames.reverse()
    return frames


def next_ref(c):
    c.ref += 1
    return c.ref


async def send_frames(c, frames):
    for f in frames:
        await c.ws.send(f)


async def model_put(c, name, data, piece=None, order=None, ref=None, timeout=60):
    """model.put with `data` (bytes) as part "model"; returns the reply."""
    ref = ref if ref is not None else next_ref(c)
    await send_frames(c, part_frames(ref, "model", "bytes", [len(data)], data, piece, order))
    return await c.call({"op": "model.put", "name": name, "ref": ref}, timeout)


def vectors_payload(vectors):
    a = np.ascontiguousarray(vectors, dtype="<f4")
    assert a.ndim == 2, a.shape
    return a.tobytes(), list(a.shape)


async def vec_put(c, collection, vectors, ids, metric=None, piece=None, order=None, ref=None, timeout=60):
    """vec.put of float32 `vectors` [n][dim] with `ids`; returns the reply."""
    ref = ref if ref is not None else next_ref(c)
    payload, shape = vectors_payload(vectors)
    await send_frames(c, part_frames(ref, "vectors", "f32", shape, payload, piece, order))
    msg = {"op": "vec.put", "collection": collection, "ids": list(ids), "ref": ref}
    if metric is not None:
        msg["metric"] = metric
    return await c.call(msg, timeout)


async def model_list(c):
    r = await c.call({"op": "model.list"})
    assert r.get("op") == "models", r
    return {m["name"]: m for m in r["models"]}


async def vec_list(c):
    r = await c.call({"op": "vec.list"})
    assert r.get("op") == "collections", r
    return {e["collection"]: e for e in r["collections"]}


async def connect_welcome(url, token=None):
    """A client and the server's welcome."""
    c = await Client.connect(url, hello=False)
    msg = {"op": "hello", "client": "kiln-tests/1"}
    if token:
        msg["token"] = token
    w = await c.call(msg)
    assert w.get("op") == "welcome", w
    return c, w


def unit_rows(n, dim, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# Tokens of the role tests: token -> (name, tenant, role).
TOKENS = {
    "obj-read": ("reader", "acme", "read"),
    "obj-submit": ("submitter", "acme", "submit"),
    "obj-writer": ("writer", "acme", "writer"),
    "obj-admin": ("admin", "acme", "admin"),
    "obj-globex": ("globex-admin", "globex", "admin"),
}


def start_with_tokens(env=None):
    """kilnd with authentication on and the TOKENS above."""
    k = Kilnd(env=dict({"KILN_AUTH_REQUIRED": "true"}, **(env or {})))
    with open(os.path.join(k.tmp, "tokens"), "w") as f:
        for tok, (name, tenant, role) in TOKENS.items():
            f.write(f"{name} {tenant} {role} {hashlib.sha256(tok.encode()).hexdigest()}\n")
    return k.start()
