"""The built packages: names, versions, computed dependencies, conffiles, maintainer
scripts, file lists (dpkg-deb, rpm -qp) and lintian with no errors."""
import os
import re
import unittest

from pkg_fixture import HAS_BENCH, HAS_CUDA, VERSION, deb_path, rpm_path, run

KILN_FILES = [
    "/usr/sbin/kilnd",
    "/usr/bin/kilnctl",
    "/etc/kiln/kiln.conf",
    "/usr/lib/systemd/system/kiln.service",
    "/usr/lib/systemd/system/kiln.socket",
    "/usr/lib/systemd/system-preset/50-kiln.preset",
    "/usr/lib/sysusers.d/kiln.conf",
    "/usr/lib/tmpfiles.d/kiln.conf",
    "/usr/share/kiln/web_ui/index.html",
    "/usr/share/doc/kiln/copyright",
    "/usr/share/doc/kiln/changelog.Debian.gz",
    "/usr/share/man/man8/kilnd.8.gz",
    "/usr/share/man/man1/kilnctl.1.gz",
    "/usr/share/man/man1/kiln-bench.1.gz",
    "/usr/share/man/man5/kiln.conf.5.gz",
    "/usr/share/man/man7/kiln-protocol.7.gz",
]
if HAS_BENCH:
    KILN_FILES.append("/usr/bin/kiln-bench")


def deb_field(deb, field):
    return run("dpkg-deb", "-f", deb, field).stdout.strip()


def deb_files(deb):
    # "drwxr-xr-x root/root 0 2024-01-01 00:00 ./usr/sbin/kilnd"
    return {line.split()[-1].lstrip(".") for line in run("dpkg-deb", "-c", deb).stdout.splitlines()}


class DebTest(unittest.TestCase):
    def test_kiln_deb_metadata(self):
        deb = deb_path("kiln")
        self.assertEqual(deb_field(deb, "Package"), "kiln")
        self.assertEqual(deb_field(deb, "Version"), VERSION)
        depends = deb_field(deb, "Depends")
        # Computed by dpkg-shlibdeps from kilnd/kilnctl, not written by hand.
        for lib in ("libwebsockets17", "liblmdb0", "libjansson4", "libsystemd0", "libssl3", "libc6"):
            self.assertRegex(depends, rf"(^|, ){lib}\b", depends)
        self.assertNotIn("cuda", depends)

    def test_kiln_deb_files(self):
        files = deb_files(deb_path("kiln"))
        for f in KILN_FILES:
            self.assertIn(f, files)
        self.assertFalse([f for f in files if f.startswith("/usr/etc") or f.startswith("/usr/local")], files)
        self.assertFalse([f for f in files if "/kiln/" in f and f.endswith(".so")], "the plugin belongs to kiln-cuda")

    def test_conffile_and_scripts(self):
        ctl = run("dpkg-deb", "-I", deb_path("kiln")).stdout
        for script in ("postinst", "prerm", "postrm", "conffiles"):
            self.assertRegex(ctl, rf"\b{script}\b")
        conffiles = run("dpkg-deb", "--ctrl-tarfile", deb_path("kiln")).stdout  # binary-ish, just a presence check
        self.assertTrue(conffiles)
        r = run("sh", "-c", f"dpkg-deb --ctrl-tarfile '{deb_path('kiln')}' | tar -xO ./conffiles")
        self.assertEqual(r.stdout.split(), ["/etc/kiln/kiln.conf"])

    def test_packaged_config_listens_publicly_with_auth(self):
        r = run("sh", "-c", f"dpkg-deb --fsys-tarfile '{deb_path('kiln')}' | tar -xO ./etc/kiln/kiln.conf")
        self.assertRegex(r.stdout, r"(?m)^listen = 0\.0\.0\.0:8080$")
        self.assertRegex(r.stdout, r"(?m)^required = true$")

    @unittest.skipUnless(HAS_CUDA, "the kiln-cuda target is not built here")
    def test_kiln_cuda_deb(self):
        deb = deb_path("kiln-cuda")
        self.assertEqual(deb_field(deb, "Package"), "kiln-cuda")
        self.assertIn(f"kiln (= {VERSION})", deb_field(deb, "Depends"))
        self.assertIn("libcuda1", deb_field(deb, "Recommends"))
        files = deb_files(deb)
        self.assertTrue([f for f in files if re.match(r"/usr/lib/.*kiln/.*\.so$", f)], files)

    def test_lintian_reports_no_errors(self):
        debs = [deb_path("kiln")] + ([deb_path("kiln-cuda")] if HAS_CUDA else [])
        r = run("lintian", "--fail-on", "error", "--no-tag-display-limit", *debs, check=False)
        errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
        self.assertEqual(errors, [], r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class RpmTest(unittest.TestCase):
    def query(self, rpm, *args):
        return run("rpm", "-qp", *args, rpm).stdout

    def test_kiln_rpm(self):
        rpm = rpm_path("kiln")
        self.assertEqual(self.query(rpm, "--qf", "%{NAME} %{VERSION}-%{RELEASE}"), f"kiln {VERSION}")
        files = set(self.query(rpm, "-l").split())
        for f in KILN_FILES:
            if "changelog.Debian" not in f:
                self.assertIn(f, files)
        self.assertEqual(self.query(rpm, "--configfiles").split(), ["/etc/kiln/kiln.conf"])
        requires = self.query(rpm, "--requires")
        # rpm's autoreq read the ELF files.
        for lib in ("libwebsockets.so.17", "liblmdb.so.0", "libjansson.so.4", "libsystemd.so.0"):
            self.assertIn(lib, requires)
        scripts = self.query(rpm, "--scripts")
        self.assertIn("systemctl --no-reload preset kiln.service", scripts)
        self.assertIn("try-restart kiln.service", scripts)
        # Directories of the filesystem and systemd packages are not claimed.
        for d in ("/etc", "/usr/lib/systemd/system", "/usr/lib/sysusers.d", "/usr/share/doc", "/usr/share/man",
                  "/usr/share/man/man1"):
            self.assertNotIn(d, files)

    @unittest.skipUnless(HAS_CUDA, "the kiln-cuda target is not built here")
    def test_kiln_cuda_rpm(self):
        rpm = rpm_path("kiln-cuda")
        self.assertIn(f"kiln = {VERSION}", self.query(rpm, "--requires"))
        self.assertTrue([f for f in self.query(rpm, "-l").split() if f.endswith(".so")])
        self.assertNotIn("libcuda", self.query(rpm, "--requires"))


if __name__ == "__main__":
    unittest.main()
