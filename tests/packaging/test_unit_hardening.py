"""The packaged kiln.service scores an exposure of at most 2.0 with
`systemd-analyze security --offline=true`, keeps the GPU devices reachable, and
the packaged units, sysusers.d and tmpfiles.d files parse."""
import os
import re
import unittest

from pkg_fixture import Unpacked, run


class UnitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pkg = Unpacked()
        cls.unit = cls.pkg.path("/usr/lib/systemd/system/kiln.service")

    @classmethod
    def tearDownClass(cls):
        cls.pkg.cleanup()

    def test_exposure_at_most_2(self):
        r = run("systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", self.unit,
                check=False)
        m = re.search(r"Overall exposure level for kiln\.service: (\d+\.\d+)", r.stdout)
        self.assertTrue(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_service_contract(self):
        text = open(self.unit).read()
        for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "StateDirectory=kiln",
                     "User=kiln", "DevicePolicy=closed", "DeviceAllow=/dev/nvidiactl rw",
                     "DeviceAllow=/dev/nvidia-uvm rw", "DeviceAllow=char-nvidia-frontend rw"):
            self.assertIn(line + "\n", text)
        self.assertRegex(text, r"(?m)^WatchdogSec=\d+")
        # PrivateDevices= would hide /dev/nvidia*.
        self.assertNotRegex(text, r"(?m)^PrivateDevices=(yes|true|1)")

    def test_socket_unit(self):
        text = open(self.pkg.path("/usr/lib/systemd/system/kiln.socket")).read()
        self.assertRegex(text, r"(?m)^ListenStream=0\.0\.0\.0:8080$")
        self.assertRegex(text, r"(?m)^WantedBy=sockets\.target$")

    def test_sysusers_creates_kiln(self):
        r = run("systemd-sysusers", "--dry-run", "--root", self.pkg.root,
                self.pkg.path("/usr/lib/sysusers.d/kiln.conf"), check=False)
        out = r.stdout + r.stderr
        self.assertRegex(out, r"Creating (user|group) '?kiln", out)

    def test_tmpfiles_parse(self):
        # --root keeps it inside the unpacked tree; the user kiln must exist there.
        os.makedirs(self.pkg.path("/etc"), exist_ok=True)
        run("systemd-sysusers", "--root", self.pkg.root, self.pkg.path("/usr/lib/sysusers.d/kiln.conf"))
        run("systemd-tmpfiles", "--root", self.pkg.root, "--create",
            self.pkg.path("/usr/lib/tmpfiles.d/kiln.conf"))
        st = os.stat(self.pkg.path("/var/lib/kiln"))
        self.assertEqual(st.st_mode & 0o777, 0o700)
        st = os.stat(self.pkg.path("/etc/kiln/tokens"))
        self.assertEqual(st.st_mode & 0o777, 0o640)
        self.assertNotEqual(st.st_gid, 0)  # group kiln, so kilnd can read the tokens


if __name__ == "__main__":
    unittest.main()
