"""Shared helpers of the package tests: where CPack left the packages, unpacking a
.deb, and running the packaged kilnd from the unpacked tree with the packaged config.

CTest sets KILN_PKG_DIR (the build tree holding the packages), KILN_PKG_VERSION
(VERSION-RELEASE), KILN_PKG_CUDA / KILN_PKG_BENCH (1 when those targets are built),
KILN_SOURCE_DIR, KILND and KILNCTL (the daemon and CLI built from the tree).
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import kiln_fixture  # noqa: E402  (Client, free_port, Kilnd)

PKG_DIR = os.environ.get("KILN_PKG_DIR", "build")
VERSION = os.environ.get("KILN_PKG_VERSION", "0.1.0-1")
HAS_CUDA = os.environ.get("KILN_PKG_CUDA") == "1"
HAS_BENCH = os.environ.get("KILN_PKG_BENCH") == "1"
SOURCE_DIR = os.environ.get("KILN_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
RPM_ARCH = os.uname().machine


def deb_path(name):
    return os.path.join(PKG_DIR, f"{name}_{VERSION}_{ARCH}.deb")


def rpm_path(name):
    return os.path.join(PKG_DIR, f"{name}-{VERSION}.{RPM_ARCH}.rpm")


def run(*cmd, check=True, env=None):
    """Runs a command; returns its CompletedProcess with text output."""
    r = subprocess.run(list(cmd), capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


class Unpacked:
    """The kiln .deb (and kiln-cuda when built) unpacked with dpkg-deb -x into a fresh
    directory: ROOT/usr/sbin/kilnd, ROOT/etc/kiln/kiln.conf, ..."""

    def __init__(self, deb=None):
        self.root = tempfile.mkdtemp(prefix="kiln-pkg-")
        run("dpkg-deb", "-x", deb or deb_path("kiln"), self.root)
        if HAS_CUDA and deb is None:
            run("dpkg-deb", "-x", deb_path("kiln-cuda"), self.root)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    @property
    def kilnd(self):
        return self.path("/usr/sbin/kilnd")

    @property
    def kilnctl(self):
        return self.path("/usr/bin/kilnctl")

    @property
    def config(self):
        return self.path("/etc/kiln/kiln.conf")

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class PackagedKilnd(kiln_fixture.Kilnd):
    """The packaged kilnd with the packaged /etc/kiln/kiln.conf (0.0.0.0:8080, auth
    required). The environment moves only what a test cannot use as is: the listen
    address (loopback, a free port), the state and token paths (a fresh directory) and
    the web root (the unpacked /usr/share/kiln/web_ui)."""

    def __init__(self, unpacked, kilnd=None, state_dir=None, env=None):
        super().__init__(env=env, state_dir=state_dir)
        self.unpacked = unpacked
        self.binary = kilnd or unpacked.kilnd
        self.tokens = os.path.join(self.tmp, "tokens")

    def environment(self):
        env = super().environment()
        del env["KILN_AUTH_REQUIRED"]  # the packaged file's "required = true" applies
        env["KILN_SERVER_WEB_ROOT"] = self.unpacked.path("/usr/share/kiln/web_ui")
        env["KILN_AUTH_TOKENS_FILE"] = self.tokens
        env.update(self.extra_env)
        return env

    def start(self, wait=True, args=()):
        saved = kiln_fixture.KILND
        kiln_fixture.KILND = self.binary
        self.config = self.unpacked.config
        try:
            return super().start(wait=wait, args=args)
        finally:
            kiln_fixture.KILND = saved

    def new_token(self, name="admin", tenant="t1", role="admin"):
        """Adds a token with the packaged kilnctl and returns it."""
        r = run(self.unpacked.kilnctl, "token", "new", name, tenant, role, "--tokens-file", self.tokens)
        return r.stdout.strip()
