#!/usr/bin/python3
"""What writing a heavy result costs this machine's kernel, without kilnd.

    python3 tests/bench/pagecache.py [--dir DIR] [--mib 48] [--rounds 8]

A `heavy` job's result is 48 MiB (grid 2048, three f32 maps), and kilnd writes it
into LMDB: into new pages at the end of the file while the store grows. This
writes the same amount the same way (pwrite + fdatasync into a new file in DIR,
default: a temporary directory next to this checkout), then again over the pages
just written, and prints wall and CPU milliseconds per write for both. On a
virtual machine whose memory the host hands out lazily, the first write of each
new page is far dearer than the second: that cost, paid on kilnd's one writer
thread, bounds `heavy`. Nothing is asserted.
"""
import argparse
import os
import resource
import tempfile
import time


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--mib", type=int, default=48, help="bytes per write, MiB (default 48)")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()

    data = os.urandom(1 << 20) * args.mib
    size = len(data)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="kiln-pagecache-") as tmp:
        fd = os.open(os.path.join(tmp, "data"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for label, offset in (("new pages (file grows)", lambda i: i * size),
                                  ("same pages again", lambda i: i * size)):
                write_ms, sync_ms, cpu_ms = [], [], []
                for i in range(args.rounds):
                    t0, c0 = time.monotonic(), cpu_s()
                    os.pwrite(fd, data, offset(i))
                    t1, c1 = time.monotonic(), cpu_s()
                    os.fdatasync(fd)
                    t2 = time.monotonic()
                    write_ms.append((t1 - t0) * 1e3)
                    sync_ms.append((t2 - t1) * 1e3)
                    cpu_ms.append((c1 - c0) * 1e3)
                med = lambda v: sorted(v)[len(v) // 2]
                print(f"{label:<24} {args.mib} MiB: write {med(write_ms):7.1f} ms (CPU {med(cpu_ms):7.1f} ms, "
                      f"{args.mib / max(med(write_ms), 1e-6) * 1e3:7.0f} MiB/s), fdatasync {med(sync_ms):6.1f} ms "
                      f"(median of {args.rounds})")
        finally:
            os.close(fd)


if __name__ == "__main__":
    main()
