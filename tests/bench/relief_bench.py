#!/usr/bin/python3
"""image.relief against OpenSCAD's surface() on the same images, in one run (not a
CTest test; it prints figures and asserts nothing).

For each image (1024 x 1024 by default: a smooth "artwork" scene of soft gradients
and blobs with a few hard-edged shapes, and a synthetic photo-like one with fine
texture), it times:

  kind        the kind's own run on kilnd's CPU worker (`ms.run` of its `done`):
              decode, heightfield, mesh and file, volume;
  done        submit -> the `done` message over one WebSocket: upload of the PNG,
              queueing, run, and storing the mesh in LMDB (`done` is sent only once
              the result is committed);
  ws          submit -> the last byte of the mesh over the same WebSocket (upload of the
              PNG, queueing, run, storing the result, sending it), read by Python's
              `websockets` package, which takes about 0.2 s of its own CPU to
              receive a 105 MB mesh;
  kilnctl     `kilnctl submit image.relief --image IN.png --out DIR`, the wall time
              of the whole command (process start to mesh.stl on disk): the end to
              end figure, printed as within or over 0.5 s at tolerance 0;
  openscad    `openscad -o OUT.stl --export-format binstl` of `surface(file=IN.png)`
              (its time to a binary STL on disk), on the same PNG;

at tolerance 0 and at one grey level (max_height_mm / 255), with the triangle
counts, and checks every STL written with admesh. kilnd runs with its cache off
(every repeat is computed) and one CPU worker per core.

Before the runs it prints how this machine treats memory the kernel hands out again
(see `memory_probe`): on a virtual machine whose balloon device reports free pages to
the host, every page the store's file or kilnctl's output newly takes from the free
lists costs a trip to the hypervisor on first touch, several times the cost of a page
already in use, and a 105 MB result is written twice (kilnd's store, kilnctl's file).

Every timed run starts after os.sync(): the figures are one image's latency, not
the disk's sustained bandwidth. Without it a run would wait behind the writeback
of the earlier runs' results (about 105 MB each at tolerance 0; the kernel
throttles a writer once enough of them are dirty), and the later cases would be
charged for the earlier ones' bytes.

    KILND=build/daemon/kilnd KILNCTL=build/daemon/ctl/kilnctl tests/bench/relief_bench.py \\
        [--size 1024] [--repeats 3] [--json FILE]
"""
import argparse
import asyncio
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from kiln_fixture import KILNCTL, Client, Kilnd, decode_frame, encode_frame  # noqa: E402
from test_relief import admesh, png  # noqa: E402

MAX_HEIGHT = 3.0


def artwork(n, rng):
    """Soft gradients and blobs with a hard-edged disc, ring and bars (antialiased
    by a 4 x 4 supersample): what reliefs and lithophanes are usually made of."""
    s = 4
    y, x = np.mgrid[0:n * s, 0:n * s] / (n * s)
    v = 0.35 + 0.25 * x + 0.1 * np.cos(3 * y)
    for cx, cy, r, a in rng.uniform([0.1, 0.1, 0.05, -0.3], [0.9, 0.9, 0.2, 0.3], (8, 4)):
        v += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    d = np.hypot(x - 0.3, y - 0.35)
    v = np.where(d < 0.12, 0.95, v)
    v = np.where(np.abs(np.hypot(x - 0.7, y - 0.65) - 0.15) < 0.02, 0.05, v)
    v = np.where((np.abs(y - 0.85) < 0.03) & (x > 0.1) & (x < 0.6), 0.2, v)
    v = v.reshape(n, s, n, s).mean(axis=(1, 3))
    return np.clip(v, 0, 1)


def photo_like(n, rng):
    """The artwork with fine texture and sensor-like noise (sigma ~1.5 grey levels)."""
    v = artwork(n, rng)
    y, x = np.mgrid[0:n, 0:n] / n
    v = v + 0.02 * np.sin(120 * x + 40 * np.sin(7 * y)) + rng.normal(0, 1.5 / 255, (n, n))
    return np.clip(v, 0, 1)


def memory_probe(mib=256):
    """How this machine treats memory: (free page reporting, first-touch GB/s, again GB/s).

    Free page reporting is the virtio balloon's feature 5 (VIRTIO_BALLOON_F_REPORTING)
    with the kernel's page_reporting module loaded: free blocks of 2^order pages go back
    to the host, which backs them again on their next first touch. The rates are one
    fresh mapping of `mib` MiB written once (first touch) and once more (in use)."""
    reporting = None
    order = "/sys/module/page_reporting/parameters/page_reporting_order"
    for dev in glob.glob("/sys/bus/virtio/devices/*"):
        try:
            with open(os.path.join(dev, "device")) as f:
                if int(f.read(), 16) != 5:
                    continue
            with open(os.path.join(dev, "features")) as f:
                bits = f.read().strip()
        except OSError:
            continue
        if len(bits) > 5 and bits[5] == "1" and os.path.exists(order):
            with open(order) as f:
                n = int(f.read())
            # x86-64's largest free block is 2^10 pages: a larger order reports none.
            reporting = (f"on (virtio balloon, blocks of 2^{n} pages)" if n <= 10 else
                         f"off (page_reporting_order {n}: no free block is that large)")
        else:
            reporting = "off (virtio balloon without it)"
    n = mib << 20
    a = np.empty(n, np.uint8)
    t0 = time.perf_counter()
    a.fill(1)
    t1 = time.perf_counter()
    a.fill(2)
    t2 = time.perf_counter()
    del a
    return reporting or "none (no virtio balloon)", n / 1e9 / (t1 - t0), n / 1e9 / (t2 - t1)


async def ws_run(url, image, params):
    """(server run ms, submit -> done seconds, submit -> last part seconds, done, mesh bytes)."""
    c = await Client.connect(url)
    c.ref += 1
    t0 = time.perf_counter()
    await c.ws.send(encode_frame({"ref": c.ref, "part": "image", "dtype": "bytes", "shape": [len(image)]}, image))
    acc = await c.call({"op": "submit", "kind": "image.relief", "params": params, "ref": c.ref}, timeout=600)
    assert acc["op"] == "accepted", acc
    while True:
        done = await c.recv(600)
        if isinstance(done, dict) and done.get("op") == "done":
            break
    t_done = time.perf_counter() - t0
    assert done["state"] == "done", done
    frame = await c.recv(600)
    t = time.perf_counter() - t0
    await c.close()
    name, mesh = decode_frame(frame)
    assert name == "mesh" and [p["name"] for p in done["parts"]] == ["mesh"], done
    return done["ms"]["run"], t_done, t, done, mesh.tobytes()


def admesh_ok(path):
    s = admesh(path)
    bad = {k: s[k] for k in ("Total disconnected facets", "Degenerate facets", "Edges fixed", "Facets removed",
                             "Facets added", "Facets reversed", "Backwards edges", "Normals fixed")
           if any(s[k])}
    return "closed, 0 errors" if not bad and s["Number of parts"] == [1.0] else f"PROBLEMS {bad}"


def median_of(runs):
    return statistics.median(runs)


def bench_image(name, grey, kilnd, tmp, repeats, out):
    n = grey.shape[0]
    path = os.path.join(tmp, f"{name}.png")
    data = png((grey * 255).round(), 0)
    with open(path, "wb") as f:
        f.write(data)
    base = {"max_side_px": n, "width_mm": 100, "max_height_mm": MAX_HEIGHT}
    rows = []
    for label, tol in (("tolerance 0", 0.0), ("one grey level", MAX_HEIGHT / 255)):
        params = dict(base, tolerance_mm=tol)
        kind_ms, done_s, ws_s, cli_s = [], [], [], []
        done = mesh = None
        for _ in range(repeats):
            os.sync()
            ms, td, t, done, mesh = asyncio.run(ws_run(kilnd.url, data, params))
            kind_ms.append(ms)
            done_s.append(td)
            ws_s.append(t)
            odir = os.path.join(tmp, "out")
            words = [f"{k}={v}" for k, v in params.items()]
            os.sync()
            t0 = time.perf_counter()
            subprocess.run([KILNCTL, "--url", kilnd.url, "submit", "image.relief", *words, "--image", path,
                            "--out", odir], check=True, capture_output=True, env=dict(os.environ, KILNCTL_NO_PROGRESS="1"))
            cli_s.append(time.perf_counter() - t0)
        stl = os.path.join(tmp, f"{name}-{tol}.stl")
        with open(stl, "wb") as f:
            f.write(mesh)
        rows.append({"image": name, "case": label, "tolerance_mm": tol, "triangles": done["result"]["triangles"],
                     "kind_s": median_of(kind_ms) / 1000, "done_s": median_of(done_s), "ws_s": median_of(ws_s),
                     "kilnctl_s": median_of(cli_s), "done_runs": done_s, "ws_runs": ws_s, "kilnctl_runs": cli_s,
                     "stl_bytes": len(mesh), "admesh": admesh_ok(stl)})
    scad = os.path.join(tmp, f"{name}.scad")
    with open(scad, "w") as f:
        f.write(f'surface(file = "{path}");\n')
    times = []
    ostl = os.path.join(tmp, f"{name}-openscad.stl")
    for _ in range(repeats):
        os.sync()
        t0 = time.perf_counter()
        subprocess.run(["openscad", "-o", ostl, "--export-format", "binstl", scad], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    with open(ostl, "rb") as f:
        f.seek(80)
        tris = int.from_bytes(f.read(4), "little")
    rows.append({"image": name, "case": "openscad surface()", "triangles": tris, "openscad_s": median_of(times),
                 "stl_bytes": os.path.getsize(ostl), "admesh": admesh_ok(ostl)})
    out.extend(rows)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    reporting, first, again = memory_probe()
    rng = np.random.default_rng(2024)
    images = {"artwork": artwork(a.size, rng), "photo-like": photo_like(a.size, rng)}
    kilnd = Kilnd(env={"KILN_CACHE_ENABLED": "false", "KILN_STORE_SYNC": "batch"}).start()
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, grey in images.items():
                bench_image(name, grey, kilnd, tmp, a.repeats, results)
    finally:
        kilnd.stop()
        kilnd.cleanup()
    print(f"image.relief vs OpenSCAD surface(), {a.size} x {a.size} grey PNGs, median of {a.repeats}, "
          f"{os.cpu_count()} CPUs; os.sync() before every timed run (one image's latency, not the disk's "
          f"writeback of the earlier results)")
    print(f"memory: free page reporting {reporting}; a fresh 256 MiB written at {first:.2f} GB/s on first "
          f"touch, {again:.2f} GB/s once in use")
    print(f"{'image':<11} {'case':<19} {'triangles':>10} {'kind s':>7} {'done s':>7} {'ws s':>7} {'kilnctl s':>9} "
          f"{'openscad s':>10}  admesh")
    for r in results:
        def f(k):
            return f"{r[k]:.3f}" if k in r else "-"
        print(f"{r['image']:<11} {r['case']:<19} {r['triangles']:>10} {f('kind_s'):>7} {f('done_s'):>7} {f('ws_s'):>7} "
              f"{f('kilnctl_s'):>9} {f('openscad_s'):>10}  {r['admesh']}")
    for r in results:
        if "kilnctl_runs" in r:
            print(f"  {r['image']}, {r['case']}: kilnctl runs " + ", ".join(f"{t:.3f}" for t in r["kilnctl_runs"])
                  + " s; done runs " + ", ".join(f"{t:.3f}" for t in r["done_runs"])
                  + " s; ws runs " + ", ".join(f"{t:.3f}" for t in r["ws_runs"]) + " s")
    for name in images:
        rs = [r for r in results if r["image"] == name]
        full, simple, scad = rs
        print(f"{name}: end to end (kilnctl) at tolerance 0: {full['kilnctl_s']:.3f} s, "
              f"{'within' if full['kilnctl_s'] <= 0.5 else 'over'} 0.5 s; at one grey level "
              f"{simple['kilnctl_s']:.3f} s, {'within' if simple['kilnctl_s'] <= 1.0 else 'over'} 1 s")
        print(f"{name}: OpenSCAD / kilnctl at tolerance 0: {scad['openscad_s'] / full['kilnctl_s']:.1f}x; "
              f"one grey level: {full['triangles'] / simple['triangles']:.1f}x fewer triangles than tolerance 0, "
              f"{scad['triangles'] / simple['triangles']:.1f}x fewer than OpenSCAD")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
