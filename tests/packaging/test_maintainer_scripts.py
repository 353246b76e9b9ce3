"""The packages' maintainer scripts, run with recording stand-ins for systemctl,
deb-systemd-helper, deb-systemd-invoke, systemd-sysusers and systemd-tmpfiles first on
PATH, against a scratch root (DPKG_ROOT): enable and start on install, restart on
upgrade, stop on remove, state kept on remove and deleted only on purge."""
import os
import shutil
import subprocess
import tempfile
import unittest

from pkg_fixture import deb_path, rpm_path, run

TOOLS = ("systemctl", "deb-systemd-helper", "deb-systemd-invoke", "systemd-sysusers", "systemd-tmpfiles")


class Sandbox:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kiln-scripts-")
        self.bin = os.path.join(self.dir, "bin")
        self.root = os.path.join(self.dir, "root")
        self.calls = os.path.join(self.dir, "calls")
        os.makedirs(self.bin)
        os.makedirs(os.path.join(self.root, "run/systemd/system"))  # "systemd is running"
        os.makedirs(os.path.join(self.root, "var/lib/kiln"))
        with open(os.path.join(self.root, "var/lib/kiln/data.mdb"), "w") as f:
            f.write("state")
        for tool in TOOLS:
            p = os.path.join(self.bin, tool)
            with open(p, "w") as f:
                # was-enabled answers "yes" (a first install) unless told otherwise.
                f.write(f'#!/bin/sh\necho "{tool} $*" >> "{self.calls}"\n'
                        f'[ "$1 $2" = "--quiet was-enabled" ] && [ -n "$WAS_DISABLED" ] && exit 1\nexit 0\n')
            os.chmod(p, 0o755)

    def run(self, script, *args, **env):
        open(self.calls, "w").close()
        e = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", DPKG_ROOT=self.root, **env)
        r = subprocess.run(["sh", "-e", script, *args], env=e, capture_output=True, text=True)
        if r.returncode:
            raise AssertionError(f"{script} {args} exited {r.returncode}: {r.stderr}")
        with open(self.calls) as f:
            return f.read().splitlines()

    def state_kept(self):
        return os.path.exists(os.path.join(self.root, "var/lib/kiln/data.mdb"))


class DebScriptsTest(unittest.TestCase):
    def setUp(self):
        self.sb = Sandbox()
        self.ctl = os.path.join(self.sb.dir, "control")
        run("dpkg-deb", "-e", deb_path("kiln"), self.ctl)

    def tearDown(self):
        shutil.rmtree(self.sb.dir, ignore_errors=True)

    def script(self, name):
        return os.path.join(self.ctl, name)

    def test_install_enables_and_starts(self):
        calls = self.sb.run(self.script("postinst"), "configure", "")
        self.assertIn(f"systemd-sysusers --root={self.sb.root} kiln.conf", calls)
        self.assertIn(f"systemd-tmpfiles --root={self.sb.root} --create kiln.conf", calls)
        self.assertIn("deb-systemd-helper enable kiln.service", calls)
        self.assertNotIn("deb-systemd-helper enable kiln.socket", calls)
        self.assertEqual(calls[-1], "deb-systemd-invoke start kiln.service")

    def test_upgrade_restarts_and_keeps_the_admins_choice(self):
        calls = self.sb.run(self.script("postinst"), "configure", "0.0.9-1", WAS_DISABLED="1")
        self.assertNotIn("deb-systemd-helper enable kiln.service", calls)
        self.assertIn("deb-systemd-helper update-state kiln.service", calls)
        self.assertEqual(calls[-1], "deb-systemd-invoke restart kiln.service")
        self.assertTrue(self.sb.state_kept())

    def test_remove_stops_and_keeps_state(self):
        self.assertIn("deb-systemd-invoke stop kiln.socket kiln.service", self.sb.run(self.script("prerm"), "remove"))
        self.assertEqual(self.sb.run(self.script("prerm"), "upgrade", "0.2.0-1"), [])
        self.sb.run(self.script("postrm"), "remove")
        self.assertTrue(self.sb.state_kept())

    def test_purge_deletes_state(self):
        self.sb.run(self.script("postrm"), "remove")
        calls = self.sb.run(self.script("postrm"), "purge")
        self.assertIn("deb-systemd-helper purge kiln.service kiln.socket", calls)
        self.assertFalse(os.path.exists(os.path.join(self.sb.root, "var/lib/kiln")))


class RpmScriptsTest(unittest.TestCase):
    def setUp(self):
        self.sb = Sandbox()

    def tearDown(self):
        shutil.rmtree(self.sb.dir, ignore_errors=True)

    def script(self, tag):
        text = run("rpm", "-qp", "--qf", f"%{{{tag}}}", rpm_path("kiln")).stdout
        p = os.path.join(self.sb.dir, tag)
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_install_presets_and_starts(self):
        calls = self.sb.run(self.script("POSTIN"), "1")
        self.assertIn("systemctl --no-reload preset kiln.service kiln.socket", calls)
        self.assertIn("systemctl start kiln.service", calls)

    def test_upgrade_restarts(self):
        self.assertNotIn("systemctl --no-reload preset kiln.service kiln.socket", self.sb.run(self.script("POSTIN"), "2"))
        self.assertEqual(self.sb.run(self.script("PREUN"), "1"), [])
        self.assertIn("systemctl try-restart kiln.service", self.sb.run(self.script("POSTUN"), "1"))

    def test_erase_stops(self):
        self.assertIn("systemctl --no-reload disable --now kiln.socket kiln.service", self.sb.run(self.script("PREUN"), "0"))
        self.assertNotIn("systemctl try-restart kiln.service", self.sb.run(self.script("POSTUN"), "0"))


if __name__ == "__main__":
    unittest.main()
