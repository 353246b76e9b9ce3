"""image.relief through the real kilnd (SPEC §1.6): PNG and JPEG images in every
sample format become meshes that Debian's admesh finds closed with no error and that
an edge count of our own finds manifold; hostile images are refused at submit with
the field named; kilnctl writes mesh.stl and mesh.glb; kiln-bench runs its relief
scenario."""
import base64
import json
import os
import struct
import subprocess
import tempfile
import unittest
import zlib

import numpy as np

from kiln_fixture import KILNCTL, KilndTestCase, encode_frame

KILN_BENCH = os.environ.get("KILN_BENCH", "build/daemon/bench/kiln-bench")

# A 48 x 32 baseline JPEG made with libjpeg-turbo (quality 100, no subsampling): a
# left-to-right ramp from black to white, with a blue band along the top.
BASE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"
    "AQEBAQEBAQEBAQEBAQEBAQH/2wBDAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"
    "AQEBAQEBAQEBAQEBAQH/wAARCAAgADADAREAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAA"
    "AgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6"
    "Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXG"
    "x8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREA"
    "AgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5"
    "OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPE"
    "xcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwD+PT4UfGLzTb/8U7tyV/5i+ehX/qFiv93s"
    "1/bW/wBrKX/HNH1fmuv+Ty+1tdP/AKtVT7n5zhfDn2b/AORzfp/yL7bL/sOZ+mfwn+KPmi3/AOJHt5i/5iefQf8AQPFfmubf"
    "tXv7WlL/AI0J9X5+b/m6XtbXX/Zuad9vI97DcDez5X/anNr/ANAVt3/2Fs/TL4U+PfNFsf7J28qP+P7P8I/6cx6V+aZr+0P/"
    "ALWUn/xCD6vzNr/k4Htbbf8AVE0z3MPwn7Oz/tC9mv8AmFtsv+wln6a/CfxZ5ptj9g25Kn/j6z95k/6dh0/WvzPNvpgf2u5f"
    "8a7+r86/6K32trp/9UzSvv5Hu4bIPZpP63e0Uv4Ft7/9Pmfpl8J9a877N/o23cqf8ts4wAf+eQr80zbxy/tfn/4xf6vzO/8A"
    "yO/a2u2/+hRSPdw+WeylH9/zWbf8O3n/AM/H2P00+E1z5ptvk25ZB97PcHP3R61+aZtxH/a3/MH9X5lb/ePa2u7/APPinf8A"
    "A9zD0vZW97mvy9LdvNn+Mn8Iutt9R/NK/HYbP1/RH55R3Xq/yP1G+EPS2+sX8xXbD4l8/wAmehT2j6/qfqR8I/u231X/ANAr"
    "rhs/X9Ed0Nn6/oj9R/hF1tv+2f8A6EtdlPePp+h3UtvlH8mfqN8Ielp/ur/6DXXT6/L9Tvh8S+f5M/Uf4Qdbb/fT+a12Q+z/"
    "ANu/od0Ps/8Abv6H+M78Iutt9R/NK+Ehs/X9Efm1Hder/I/Ub4Q9Lb6xfzFdsPiXz/JnoU9o+v6n6kfCP7tt9V/9Arrhs/X9"
    "Ed0Nn6/oj9R/hF1tv+2f/oS12U94+n6HdS2+UfyZ+o3wh6Wn+6v/AKDXXT6/L9Tvh8S+f5M/Uf4Qdbb/AH0/mtdkPs/9u/od"
    "0Ps/9u/of4zvwi6231H80r4SGz9f0R+bUd16v8j9RvhD0tvrF/MV2w+JfP8AJnoU9o+v6n6kfCP7tt9V/wDQK64bP1/RHdDZ"
    "+v6I/Uf4Rdbb/tn/AOhLXZT3j6fod1Lb5R/Jn6jfCHpaf7q/+g110+vy/U74fEvn+TP1H+EHW2/30/mtdkPs/wDbv6HdD7P/"
    "AG7+h//Z")


def png(pixels, colour, depth=8, palette=None):
    """A PNG of `pixels` (rows x columns [x samples]) in colour type `colour` (0 grey,
    2 RGB, 3 palette, 4 grey+alpha, 6 RGBA) and 8 or 16 bits."""
    a = np.asarray(pixels)
    h, w = a.shape[:2]
    raw = a.astype(">u2" if depth == 16 else "u1").reshape(h, -1).tobytes()
    stride = len(raw) // h
    rows = b"".join(b"\0" + raw[i * stride:(i + 1) * stride] for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(np.asarray(palette, dtype="u1").ravel()))
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def with_orientation(jpeg, o):
    """The JPEG with an APP1 Exif segment (little-endian TIFF) saying orientation o."""
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0)
    body = b"Exif\0\0" + tiff + struct.pack("<I", 0)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def smooth(w, h):
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x / w - 0.4, y / h - 0.55)
    return 0.5 + 0.3 * np.cos(6 * r) * np.exp(-2 * r) + 0.15 * x / w


def stl_triangles(data):
    """The vertices (n, 3, 3) and normals (n, 3) of a binary STL."""
    (n,) = struct.unpack_from("<I", data, 80)
    assert len(data) == 84 + 50 * n, (len(data), n)
    rec = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]), offset=84)
    return rec["v"].astype(np.float64), rec["n"].astype(np.float64)


def glb_triangles(data):
    """The triangles of a GLB (checked on the way: header, 4-byte chunks, uint32
    indices, POSITION min/max) in mm with +z up."""
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data)), (magic, version, length)
    jl, jt = struct.unpack_from("<I4s", data, 12)
    assert jt == b"JSON" and jl % 4 == 0
    doc = json.loads(data[20:20 + jl])
    bl, bt = struct.unpack_from("<I4s", data, 20 + jl)
    assert bt == b"BIN\0" and bl % 4 == 0 and 28 + jl + bl == len(data)
    pos_acc, idx_acc = doc["accessors"]
    assert idx_acc["componentType"] == 5125 and pos_acc["componentType"] == 5126
    binary = data[28 + jl:]
    pos = np.frombuffer(binary, dtype="<f4", count=3 * pos_acc["count"]).reshape(-1, 3)
    idx = np.frombuffer(binary, dtype="<u4", count=idx_acc["count"], offset=12 * pos_acc["count"])
    assert np.array_equal(pos.min(axis=0), np.array(pos_acc["min"], dtype=np.float32)), pos_acc["min"]
    assert np.array_equal(pos.max(axis=0), np.array(pos_acc["max"], dtype=np.float32)), pos_acc["max"]
    assert idx.max() < len(pos)
    mm = np.stack([pos[:, 0], -pos[:, 2], pos[:, 1]], axis=1).astype(np.float64) * 1000.0
    return mm[idx.reshape(-1, 3)]


def to_stl(tris):
    """A binary STL of triangles (n, 3, 3), normals from the vertices."""
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    n /= np.linalg.norm(n, axis=1)[:, None]
    rec = np.zeros(len(tris), dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")]))
    rec["n"], rec["v"] = n, tris
    return b"glb converted to STL".ljust(80, b" ") + struct.pack("<I", len(tris)) + rec.tobytes()


def edge_check(tris, normals=None):
    """Our own count: every directed edge once and its reverse once (closed,
    manifold, consistently oriented), no triangle with a repeated vertex or zero
    area, V - E + F = 2, outward normals. Returns (vertices, volume)."""
    flat = tris.reshape(-1, 3)
    verts, ids = np.unique(flat, axis=0, return_inverse=True)
    ids = ids.reshape(-1, 3)
    assert np.all((ids[:, 0] != ids[:, 1]) & (ids[:, 1] != ids[:, 2]) & (ids[:, 0] != ids[:, 2])), "repeated vertex"
    cross = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    assert np.all(np.linalg.norm(cross, axis=1) > 0), "zero-area triangle"
    if normals is not None:
        cos = np.sum(normals * cross, axis=1) / np.linalg.norm(cross, axis=1)
        assert np.all(cos > 0.999), "a normal disagrees with its vertices"
    nv = len(verts)
    e = np.concatenate([ids[:, [0, 1]], ids[:, [1, 2]], ids[:, [2, 0]]])
    key = e[:, 0].astype(np.int64) * nv + e[:, 1]
    rev = e[:, 1].astype(np.int64) * nv + e[:, 0]
    assert len(np.unique(key)) == len(key), "an edge is used twice in the same direction"
    assert np.all(np.isin(rev, key)), "an open edge"
    assert nv - len(key) // 2 + len(tris) == 2, "V - E + F != 2"
    volume = np.sum(np.einsum("ij,ij->i", tris[:, 0], np.cross(tris[:, 1], tris[:, 2]))) / 6
    assert volume > 0, "inward normals"
    return nv, volume


def surface_error(tris, heights, pitch):
    """The largest distance (mm) between a grid point's height and the top surface
    above it, over every grid point of `heights` (rows x columns, mm): the top
    triangles (no vertex at z = 0) are mapped back to grid points and each grid
    point under one is interpolated there. Fails when a point is under none.
    `pitch`: the grid's spacing along x and along y (mm)."""
    rows, cols = heights.shape
    top = tris[np.all(tris[:, :, 2] > 0, axis=1)]
    px, py = pitch
    ij = np.rint(np.stack([-top[:, :, 1] / py, top[:, :, 0] / px], axis=2)).astype(np.int64)
    covered = np.zeros(heights.shape, bool)
    worst = 0.0
    for (p0, p1, p2), z in zip(ij, top[:, :, 2]):
        (i0, j0), (i1, j1), (i2, j2) = p0, p1, p2
        d = (j1 - j0) * (i2 - i0) - (i1 - i0) * (j2 - j0)
        assert d != 0, "a degenerate top triangle"
        i, j = np.mgrid[min(i0, i1, i2):max(i0, i1, i2) + 1, min(j0, j1, j2):max(j0, j1, j2) + 1]
        b0 = (j1 - j) * (i2 - i) - (i1 - i) * (j2 - j)
        b1 = (j2 - j) * (i0 - i) - (i2 - i) * (j0 - j)
        b2 = d - b0 - b1
        inside = (np.sign(b0) * np.sign(d) >= 0) & (np.sign(b1) * np.sign(d) >= 0) & (np.sign(b2) * np.sign(d) >= 0)
        zi = (b0 * z[0] + b1 * z[1] + b2 * z[2]) / d
        err = np.abs(zi - heights[i, j])[inside]
        if err.size:
            worst = max(worst, float(err.max()))
        covered[i[inside], j[inside]] = True
    assert covered.all(), f"{(~covered).sum()} grid points under no top triangle"
    return worst


def admesh(path):
    """admesh's report of an STL as {statistic: (original, final) or value}."""
    out = subprocess.run(["admesh", path], capture_output=True, text=True, timeout=120, check=True).stdout
    stats = {}
    for line in out.splitlines():
        if ":" not in line:
            continue
        key, _, rest = line.partition(":")
        words = rest.split()
        if "Volume" in rest:  # "Number of parts :  1   Volume : 25985.6"
            stats["Volume"] = float(rest.split(":")[-1])
            words = words[:1]
        try:
            stats[key.strip()] = [float(w) for w in words]
        except ValueError:
            pass
    return stats


class ReliefTest(KilndTestCase):

    def check_stl_file(self, data, tmpdir, name):
        path = os.path.join(tmpdir, name + ".stl")
        with open(path, "wb") as f:
            f.write(data)
        s = admesh(path)
        for key in ("Total disconnected facets", "Facets with 1 disconnected edge"):
            self.assertEqual(s[key], [0.0, 0.0], f"{name}: admesh {key}")
        for key in ("Degenerate facets", "Edges fixed", "Facets removed", "Facets added", "Facets reversed",
                    "Backwards edges", "Normals fixed"):
            self.assertEqual(s[key], [0.0], f"{name}: admesh {key}")
        self.assertEqual(s["Number of parts"], [1.0], name)
        return s

    def check_mesh(self, done, parts, fmt, tmpdir, name):
        """admesh and our edge count on a job's mesh; its values against both."""
        self.assertEqual(done["state"], "done", done)
        data = parts["mesh"].tobytes()
        r = done["result"]
        if fmt == "glb":
            tris, normals = glb_triangles(data), None
            stl = to_stl(tris)
        else:
            tris, normals = stl_triangles(data)
            stl = data
        nv, volume = edge_check(tris, normals)
        s = self.check_stl_file(stl, tmpdir, name)
        self.assertEqual(r["triangles"], len(tris), name)
        self.assertEqual(r["vertices"], nv, name)
        self.assertAlmostEqual(r["volume_mm3"] / volume, 1, delta=1e-6, msg=name)
        self.assertAlmostEqual(s["Volume"] / r["volume_mm3"], 1, delta=1e-4, msg=name)
        return r, tris

    async def relief(self, c, image, params=None, dtype="bytes"):
        """Sends `image` as the part `image` and submits; returns (done, parts) or the error."""
        c.ref += 1
        ref = c.ref
        payload = image if isinstance(image, bytes) else image.tobytes()
        shape = [len(payload) // (4 if dtype == "f32" else 1)]
        await c.ws.send(encode_frame({"ref": ref, "part": "image", "dtype": dtype, "shape": shape}, payload))
        acc = await c.call({"op": "submit", "kind": "image.relief", "params": params or {}, "ref": ref})
        if acc["op"] != "accepted":
            return acc, None
        done, parts, _ = await c.read_done(acc["job"], timeout=120)
        return done, parts

    def run_cases(self, cases):
        async def go():
            c = await self.client()
            out = []
            for name, image, params in cases:
                out.append((name, params, await self.relief(c, image, params)))
            await c.close()
            return out
        results = self.run_async(go())
        with tempfile.TemporaryDirectory() as tmp:
            return {name: self.check_mesh(done, parts, params.get("format", "stl"), tmp, name)
                    for name, params, (done, parts) in results}

    def test_every_sample_format_gives_a_closed_mesh(self):
        g = smooth(64, 48)
        rgb = (np.stack([g, g ** 2, 1 - g], axis=2) * 255).round()
        alpha = (np.linspace(0, 1, 64)[None, :].repeat(48, 0) * 255).round()
        cases = [
            ("rgb8", png(rgb, 2), {}),
            ("grey16", png((g * 65535).round(), 0, 16), {"format": "glb"}),
            ("rgba8", png(np.dstack([rgb, alpha]), 6), {}),
            ("grey_alpha16", png(np.dstack([g * 65535, alpha * 257]).round(), 4, 16), {"format": "glb"}),
            ("palette", png(np.arange(48 * 64).reshape(48, 64) % 3, 3, palette=[[0, 0, 0], [255, 0, 0], [9, 200, 9]]),
             {}),
            ("jpeg", BASE_JPEG, {}),
            ("jpeg_rotated", with_orientation(BASE_JPEG, 6), {"format": "glb"}),
            ("one_pixel", png([[128]], 0), {}),
            ("one_column", png(np.arange(300).reshape(300, 1) % 256, 0), {"format": "glb"}),
            ("one_row", png(np.arange(300).reshape(1, 300) % 256, 0), {"tolerance_mm": 0.01}),
            ("lithophane", png(rgb, 2), {"invert": True, "max_height_mm": 2.5, "base_mm": 0.6, "width_mm": 80}),
            ("simplified", png((g * 255).round(), 0), {"tolerance_mm": 3 / 255}),
            ("simplified_glb", png((g * 255).round(), 0), {"tolerance_mm": 0.05, "format": "glb"}),
            ("shrunk", png(rgb, 2), {"max_side_px": 20}),
        ]
        got = self.run_cases(cases)
        # Full grids have the counts of their grid; the simplified one far fewer.
        self.assertEqual(got["rgb8"][0]["triangles"], 2 * 63 * 47 + 3 * (2 * 63 + 2 * 47))
        self.assertLess(got["simplified"][0]["triangles"] * 5, got["rgb8"][0]["triangles"])
        self.assertEqual(got["shrunk"][0]["width_mm"], 100)
        self.assertAlmostEqual(got["shrunk"][0]["depth_mm"], 100 * 48 / 64)  # the image's aspect, shrunk or not
        # EXIF orientation 6 turns the 48 x 32 image to 32 x 48, the ramp now top to
        # bottom: the bright end (the highest points) along the bottom edge, y = -depth.
        r, tris = got["jpeg_rotated"]
        self.assertAlmostEqual(r["depth_mm"], 100 * 48 / 32, places=6)
        pts = tris.reshape(-1, 3)
        high = pts[pts[:, 2] > pts[:, 2].max() - 0.1]
        self.assertGreater(len(high), 0)
        self.assertTrue(np.all(high[:, 1] < -0.8 * r["depth_mm"]))
        r, _ = got["jpeg"]
        self.assertAlmostEqual(r["depth_mm"], 100 * 32 / 48, places=6)
        self.assertAlmostEqual(got["one_pixel"][0]["volume_mm3"], 100 * 100 * (1 + 3 * 128 / 255), delta=0.1)

    def test_a_noisy_image_at_small_tolerances_stays_closed_and_within_them(self):
        """Noise finer than the tolerance cannot be simplified away: the full grid
        (or a mesh that is no larger) comes back, closed, every pixel within the
        tolerance; a smooth image at one grey level is really simplified and
        passes the same pixel check."""
        rng = np.random.default_rng(18)
        g = smooth(48, 40)
        noisy = np.clip(g + rng.uniform(-0.01, 0.01, g.shape) / 3, 0, 1)
        grey16 = (noisy * 65535).round()
        smooth8 = (g * 255).round()
        heights16 = 1 + 3 * grey16 / 65535
        heights8 = 1 + 3 * smooth8 / 255
        noisy_png, smooth_png = png(grey16, 0, 16), png(smooth8, 0)
        cases = [("noisy tol 0", noisy_png, {}), ("smooth tol 0", smooth_png, {})]
        tolerance = {"noisy tol 0": 0.0, "smooth tol 0": 0.0, "smooth one grey level": 3 / 255}
        for tol in (0.001, 0.0065):
            for fmt in ("stl", "glb"):
                name = f"noisy tol {tol} {fmt}"
                cases.append((name, noisy_png, {"tolerance_mm": tol, "format": fmt}))
                tolerance[name] = tol
        cases.append(("smooth one grey level", smooth_png, {"tolerance_mm": 3 / 255}))
        got = self.run_cases(cases)
        pitch = (100 / 47, 100 * 40 / 48 / 39)  # along x, along y: the image's aspect
        full = got["noisy tol 0"][0]["triangles"]
        self.assertEqual(full, 2 * 47 * 39 + 3 * (2 * 47 + 2 * 39))
        errors = {}
        for name, (r, tris) in got.items():
            with self.subTest(name):
                self.assertLessEqual(r["triangles"], full)
                errors[name] = surface_error(tris, heights8 if name.startswith("smooth") else heights16, pitch)
                # float32 vertices: a few 1e-7 mm off the double heights.
                self.assertLessEqual(errors[name], tolerance[name] + 1e-5)
        # The smooth image is really simplified: far fewer triangles, and points
        # off the surface by a good part of the tolerance, which the check saw.
        self.assertLess(got["smooth one grey level"][0]["triangles"] * 5, got["smooth tol 0"][0]["triangles"])
        self.assertGreater(errors["smooth one grey level"], 0.5 * 3 / 255)

    def test_volume_is_the_heightfield_sum(self):
        grey = (smooth(40, 30) * 255).round()
        z = 1 + 3 * grey / 255.0
        px, py = 100 / 39, 100 * 30 / 40 / 29  # 100 mm wide, as deep as the image's aspect makes it
        cells = (z[:-1, :-1] + z[1:, :-1] + z[1:, 1:]) / 3 + (z[:-1, :-1] + z[1:, 1:] + z[:-1, 1:]) / 3
        want = cells.sum() * px * py / 2
        got = self.run_cases([("sum", png(grey, 0), {})])
        self.assertAlmostEqual(got["sum"][0]["volume_mm3"] / want, 1, delta=1e-6)

    def assertRefused(self, reply, field="inputs.image", code="bad_params"):
        self.assertEqual(reply["op"], "error", reply)
        self.assertEqual(reply["code"], code, reply)
        self.assertEqual(reply["field"], field, reply)

    def test_hostile_images_are_refused_with_the_field_named(self):
        good = png((smooth(32, 32) * 255).round(), 0)
        rng = np.random.default_rng(7)
        damaged = bytearray(good)
        damaged[60] ^= 0x40
        cases = [
            ("truncated png", good[:len(good) // 2], "truncated PNG"),
            ("truncated jpeg", BASE_JPEG[:len(BASE_JPEG) - 200], "truncated JPEG"),
            ("damaged png", bytes(damaged), "CRC"),
            ("random bytes", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "neither a PNG nor a JPEG"),
            ("png signature and noise", good[:8] + rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), "PNG"),
            ("empty", b"", "neither a PNG nor a JPEG"),
        ]

        async def go():
            c = await self.client()
            out = [(name, words, (await self.relief(c, data))[0]) for name, data, words in cases]
            out.append(("float32", "dtype", (await self.relief(c, np.zeros(8, np.float32), dtype="f32"))[0]))
            missing = await c.call({"op": "submit", "kind": "image.relief", "params": {}})
            # A base thinner than float32 resolves would collapse the walls' triangles.
            thin = [(await self.relief(c, good, {"base_mm": b}))[0] for b in (5e-324, 1e-40, 0.0099)]
            ok = await self.relief(c, good)
            await c.close()
            return out, missing, thin, ok
        out, missing, thin, (done, _) = self.run_async(go())
        for reply in thin:
            self.assertRefused(reply, "params.base_mm")
        for name, words, reply in out:
            with self.subTest(name):
                self.assertRefused(reply)
                self.assertIn(words, reply["message"])
        self.assertRefused(missing)
        self.assertEqual(done["state"], "done")  # the daemon serves on

    def test_an_image_whose_coded_data_is_corrupt_fails_bad_params(self):
        # A restart marker in the middle of the entropy-coded data: the headers and
        # segments pass the checks at submit, the pixels do not decode when it runs.
        damaged = bytearray(BASE_JPEG)
        damaged[629:631] = b"\xff\xd0"

        async def go():
            c = await self.client()
            r = await self.relief(c, bytes(damaged))
            await c.close()
            return r[0]
        done = self.run_async(go())
        self.assertEqual(done["op"], "done", done)
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["error"]["code"], "bad_params", done)
        self.assertIn("inputs.image", done["error"]["message"])
        self.assertEqual(done["error"].get("field"), "inputs.image", done)

    def huge_png(self):
        """A PNG header that claims 20000 x 20000 pixels (400 MP), with no pixels."""
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))

    def test_a_huge_claimed_size_is_refused_at_submit_from_its_header(self):
        async def go():
            c = await self.client()
            r = await self.relief(c, self.huge_png())
            await c.close()
            return r[0]
        reply = self.run_async(go())
        self.assertEqual(reply["op"], "error", reply)
        self.assertEqual(reply["field"], "inputs.image")
        self.assertIn("20000 x 20000 = 400000000 pixels, over the limit of 50000000", reply["message"])

    # The kind's check refuses it with -EFBIG: too_large, before a pixel is decoded.
    def test_a_huge_claimed_size_is_too_large(self):
        async def go():
            c = await self.client()
            r = await self.relief(c, self.huge_png())
            await c.close()
            return r[0]
        self.assertRefused(self.run_async(go()), code="too_large")

    def test_kilnctl_writes_mesh_stl_and_mesh_glb(self):
        with tempfile.TemporaryDirectory() as tmp:
            img = os.path.join(tmp, "in.png")
            with open(img, "wb") as f:
                f.write(png((smooth(50, 40) * 255).round(), 0))
            env = dict(os.environ, KILNCTL_NO_PROGRESS="1")
            for fmt in ("stl", "glb"):
                out = os.path.join(tmp, fmt)
                p = subprocess.run([KILNCTL, "--url", self.kilnd.url, "submit", "image.relief", f"format={fmt}",
                                    "--image", img, "--out", out], capture_output=True, text=True, timeout=60,
                                   env=env)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("triangles = ", p.stdout)
                self.assertEqual(os.listdir(out), [f"mesh.{fmt}"])
                with open(os.path.join(out, f"mesh.{fmt}"), "rb") as f:
                    data = f.read()
                tris = glb_triangles(data) if fmt == "glb" else stl_triangles(data)[0]
                edge_check(tris)
            with open(os.path.join(tmp, "stl", "mesh.stl"), "rb") as f:
                self.check_stl_file(f.read(), tmp, "kilnctl")
            p = subprocess.run([KILNCTL, "--url", self.kilnd.url, "submit", "image.relief", "--image",
                                os.path.join(tmp, "missing.png")], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 2)
            self.assertIn("missing.png", p.stderr)

    def test_kiln_bench_runs_the_relief_scenario(self):
        for env in ({}, {"KILN_BENCH_LWS_WS": "1"}):  # raw framing, and libwebsockets' client
            p = subprocess.run([KILN_BENCH, "--url", self.kilnd.url, "--scenario", "relief", "--connections", "2",
                                "--duration", "1", "--json"], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, **env))
            self.assertEqual(p.returncode, 0, p.stderr)
            r = json.loads(p.stdout)
            self.assertEqual(r["scenario"], "relief")
            self.assertEqual(r["errors"], 0, r)
            self.assertGreater(r["jobs"], 0, r)


if __name__ == "__main__":
    unittest.main()
