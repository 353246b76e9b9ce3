"""The manual pages built in build/docs/man: they render without warnings (groff, and
man as lintian runs it), their gzipped copies are current, and the pages that mirror
tables in the code list every entry of those tables, as kiln-docgen and the
programs' --help report them."""
import gzip
import os
import re
import subprocess
import unittest

MAN_DIR = os.environ["KILN_MAN_DIR"]
DOCGEN = os.environ["KILN_DOCGEN"]
PAGES = ["kilnd.8", "kilnctl.1", "kiln-bench.1", "kiln.conf.5", "kiln-protocol.7"]
PROGRAMS = {"kilnd.8": "KILND", "kilnctl.1": "KILNCTL", "kiln-bench.1": "KILN_BENCH"}


def page_path(page):
    return os.path.join(MAN_DIR, page)


def run(*args, env=None):
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def render(page):
    """The page as plain text, wide enough that few lines wrap."""
    r = run("groff", "-man", "-Tutf8", "-rLL=300n", "-P-cbou", page_path(page))
    assert r.returncode == 0, r.stderr
    return r.stdout


def sections(text):
    """{"NAME": [lines], ...}: the lines under each top-level heading."""
    out, current = {}, None
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Z ]+$", line):
            current = line
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def docgen_list(what):
    r = run(DOCGEN, "list", what)
    assert r.returncode == 0, r.stderr
    return [line.split() for line in r.stdout.splitlines() if line]


class RenderTest(unittest.TestCase):
    def test_every_page_is_built_and_its_gzip_is_current(self):
        for page in PAGES:
            with open(page_path(page), "rb") as f:
                text = f.read()
            with gzip.open(page_path(page) + ".gz", "rb") as f:
                self.assertEqual(f.read(), text, page)
            self.assertNotIn(b"@VERSION@", text, page)
            self.assertNotIn(b"@GENERATED@", text, page)
            self.assertNotIn(b"@OUTPUTS", text, page)

    def test_groff_reports_no_warning(self):
        for page in PAGES:
            r = run("groff", "-man", "-ww", "-z", page_path(page))
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)

    def test_man_reports_no_warning_at_80_columns(self):
        # What lintian runs on a packaged page.
        env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
        for page in PAGES:
            r = run("man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", page_path(page), env=env)
            self.assertEqual((r.returncode, r.stderr), (0, ""), page)

    def test_name_line_is_a_whatis_entry(self):
        for page in PAGES:
            name = sections(render(page))["NAME"]
            stem = page.rsplit(".", 1)[0]
            self.assertRegex(" ".join(name).strip(), rf"^{re.escape(stem)} - \S", page)

    def test_references_to_kiln_pages_resolve(self):
        for page in PAGES:
            for name, sec in re.findall(r"\b(kiln[\w.-]*)\((\d)\)", render(page)):
                self.assertIn(f"{name}.{sec}", PAGES, f"{page} refers to {name}({sec})")


class ConfigPageTest(unittest.TestCase):
    def test_every_key_of_the_schema_in_its_section(self):
        lines = sections(render("kiln.conf.5"))["SECTIONS AND KEYS"]
        found, section = set(), None
        for line in lines:
            m = re.match(r"^   \[(\S+)\]$", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r"^       (\w+) = \S", line)
            if m:
                found.add((section, m.group(1)))
        expected = {tuple(k) for k in docgen_list("keys")}
        self.assertGreaterEqual(len(expected), 30)
        self.assertEqual(found, expected)

    def test_every_key_names_its_default_and_variable(self):
        text = render("kiln.conf.5")
        for section, key in docgen_list("keys"):
            if section == "batch.KIND":
                continue
            var = f"KILN_{section}_{key}".upper().replace(".", "_")
            self.assertIn(f"Environment: {var}.", text)
        self.assertRegex(text, r"max_object_bytes = size\n +.*\n +Default 8GiB; range 1KiB\.\.1TiB\.")


class ProtocolPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = render("kiln-protocol.7")
        cls.sections = sections(cls.text)

    def test_every_kind_and_parameter_with_outputs(self):
        kinds, kind = {}, None
        for line in self.sections["KINDS"]:
            m = re.match(r"^   (\S+)$", line)
            if m:
                kind = m.group(1)
                kinds[kind] = {"params": set(), "outputs": False}
                continue
            m = re.match(r"^       ([\w.]+) \((number|integer|boolean|string|array|object)", line)
            if m and kind:
                kinds[kind]["params"].add(m.group(1))
            if kind and line.strip().startswith("Outputs"):
                kinds[kind]["outputs"] = True
        expected = {}
        for kind_name, param in docgen_list("kinds"):
            expected.setdefault(kind_name, set()).add(param)
        self.assertTrue(expected)
        self.assertEqual(set(kinds), set(expected))
        for name, params in expected.items():
            self.assertEqual(kinds[name]["params"], params, name)
            self.assertTrue(kinds[name]["outputs"], f"{name} has no Outputs paragraph")

    def test_hand_written_outputs_of_the_lens_kinds(self):
        kinds = "\n".join(self.sections["KINDS"])
        nfw = kinds[kinds.index("   lens.nfw\n"):kinds.index("   lens.raytrace\n")]
        for word in ("kappa", "gamma1", "alpha_x", "psi", "theta_e_arcsec", "d_ls_mpc"):
            self.assertIn(word, nfw[nfw.index("Outputs"):])
        raytrace = kinds[kinds.index("   lens.raytrace\n"):]
        self.assertIn("The part image", raytrace)

    def test_every_op_has_its_message(self):
        for (op,) in docgen_list("ops"):
            self.assertIn(f'{{"op":"{op}"', self.text, op)
        # SPEC 2.4: the object ops are documented whether or not this build has them.
        for op in ("model.put", "model.list", "model.delete", "vec.put", "vec.delete", "vec.drop",
                   "vec.info", "vec.list"):
            self.assertIn(f'{{"op":"{op}"', self.text, op)

    def test_every_error_code_is_described(self):
        described = {line.strip() for line in self.sections["ERRORS"] if re.match(r"^       \w+$", line)}
        codes = {code for (code,) in docgen_list("errors")}
        self.assertEqual(len(codes), 15)
        self.assertEqual(codes - described, set())

    def test_binary_frame_and_multi_frame_parts(self):
        frames = "\n".join(self.sections["BINARY FRAMES"])
        self.assertIn('"KLNB" | u32 LE header_len', frames)
        for field in ("ref", "part", "dtype", "shape", "offset"):
            self.assertRegex(frames, rf"(?m)^       {field}\b")


class ProgramPagesTest(unittest.TestCase):
    """Every option a program's --help lists is in its page."""

    def help_text(self, var):
        r = run(os.environ[var], "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_every_option_of_help_is_documented(self):
        for page, var in PROGRAMS.items():
            options = set(re.findall(r"--[a-z][a-z-]*", self.help_text(var)))
            self.assertTrue(options, var)
            documented = set(re.findall(r"--[a-z][a-z-]*", render(page)))
            self.assertEqual(options - documented, set(), page)

    def test_every_kilnctl_command_is_documented(self):
        commands = re.findall(r"(?m)^  ([a-z]+) ", self.help_text("KILNCTL"))
        self.assertIn("submit", commands)
        described = "\n".join(sections(render("kilnctl.1"))["COMMANDS"])
        for command in commands:
            self.assertRegex(described, rf"(?m)^       {command}\b", command)

    def test_every_bench_scenario_is_documented(self):
        scenarios = re.search(r"--scenario ([a-z|-]+)", self.help_text("KILN_BENCH")).group(1).split("|")
        described = "\n".join(sections(render("kiln-bench.1"))["SCENARIOS"])
        for scenario in scenarios:
            self.assertRegex(described, rf"(?m)^       {scenario}\b", scenario)


if __name__ == "__main__":
    unittest.main()
