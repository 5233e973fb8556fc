"""Installing smtpgate (issue 11): what `meson install` puts on a system, the systemd unit, and
the man pages that must not drift from the binary.

- the unit passes `systemd-analyze verify`;
- `meson install --destdir` installs the binary, smtpgate(8), smtpgate.conf(5), the example
  configuration in /etc/smtpgate/, the unit, sysusers.d and tmpfiles.d entries;
- the installed binary, started as the unit starts it (its capability bounding set and
  NoNewPrivileges, via setpriv), drops to its user and serves an authenticated message;
- every option in each subcommand's --help is in smtpgate(8), every key the config parser
  accepts is in smtpgate.conf(5).
"""

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import unittest

import harness
from harness import ALICE, HOST, free_port, require_tool

ROOT = harness._repo_root()
MAN = os.path.join(ROOT, "docs", "man")


def build_dir():
    # SMTPGATE_BIN is BUILD/src/smtpgate
    return os.path.dirname(os.path.dirname(harness.binary()))


def unit_directives(text, key):
    return [ln.split("=", 1)[1].strip() for ln in text.splitlines() if ln.startswith(key + "=")]


class ManPages(unittest.TestCase):
    """One source (docs/man/*.scd) that cannot drift from --help and the config parser."""

    @staticmethod
    def options_in(text):
        """--options of a --help text: in its usage lines and in the lines that describe an
        option (indented at most 4; the examples, indented further, are left out)."""
        opts = set()
        in_usage = True
        for ln in text.splitlines():
            if not ln.strip():
                in_usage = False
            if in_usage or ln.startswith("usage:") or re.match(r"^ {1,4}(-\w, )?--[a-z]", ln):
                opts.update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", ln))
        opts.discard("--help")
        return opts

    def help_text(self, *args):
        r = subprocess.run([harness.binary()] + list(args) + ["--help"], capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, (args, r.stderr))
        return r.stdout

    def test_every_help_option_in_smtpgate_8(self):
        with open(os.path.join(MAN, "smtpgate.8.scd")) as f:
            page = f.read()
        main_help = self.help_text()
        commands = re.findall(r"^  ([a-z]+) ", main_help, re.M)
        self.assertIn("serve", commands, main_help)
        missing = {}
        for cmd, text in [("smtpgate", main_help)] + [(c, self.help_text(c)) for c in commands]:
            for opt in sorted(self.options_in(text)):
                if "*%s*" % opt not in page:
                    missing.setdefault(cmd, []).append(opt)
        self.assertEqual(missing, {}, "options of --help missing from docs/man/smtpgate.8.scd")
        no_section = [c for c in commands if "# %s" % c.upper() not in page]
        self.assertEqual(no_section, [], "commands without a section in docs/man/smtpgate.8.scd")

    def test_every_config_key_in_smtpgate_conf_5(self):
        with open(os.path.join(ROOT, "src", "server", "config.c")) as f:
            src = f.read()
        table = src[src.index("keys[] = {"):]
        table = table[:table.index("};")]
        keys = set(re.findall(r'^\s*\{"([a-z0-9_]+)",', table, re.M))
        # the keys parsed by name: listener keys, and every other *config*.c (relay, ...)
        listener = set(re.findall(r'strcmp\(k, "([a-z0-9_]+)"\)', src))
        for dirpath, _, files in os.walk(os.path.join(ROOT, "src")):
            for name in files:
                if name.endswith("config.c") and name != "config.c":
                    with open(os.path.join(dirpath, name)) as f:
                        listener |= set(re.findall(r'strcmp\(k, "([a-z0-9_]+)"\)', f.read()))
        self.assertGreater(len(keys), 40, "the key table of src/server/config.c was not found")
        self.assertIn("role", listener)
        with open(os.path.join(MAN, "smtpgate.conf.5.scd")) as f:
            page = f.read()
        missing = sorted(k for k in keys | listener if "*%s*" % k not in page)
        self.assertEqual(missing, [], "config keys missing from docs/man/smtpgate.conf.5.scd")

    def test_pages_built_when_scdoc_is_there(self):
        if not shutil.which("scdoc"):
            self.skipTest("scdoc not installed (scripts/deps installs it)")
        for page in ("smtpgate.8", "smtpgate.conf.5"):
            path = os.path.join(build_dir(), "docs", "man", page)
            self.assertTrue(os.path.isfile(path), "%s not built" % path)
            with open(path) as f:
                self.assertIn(".TH", f.read())


class Unit(unittest.TestCase):
    def unit_text(self):
        path = os.path.join(build_dir(), "dist", "smtpgate.service")
        with open(path) as f:
            return f.read()

    def test_hardening(self):
        text = self.unit_text()
        self.assertEqual(unit_directives(text, "ProtectSystem"), ["strict"])
        self.assertEqual(unit_directives(text, "NoNewPrivileges"), ["yes"])
        self.assertEqual(unit_directives(text, "PrivateTmp"), ["yes"])
        self.assertEqual(unit_directives(text, "ReadWritePaths"), ["/var/lib/smtpgate"])
        caps = set(unit_directives(text, "CapabilityBoundingSet")[0].split())
        self.assertIn("CAP_NET_BIND_SERVICE", caps)
        self.assertLessEqual(caps, {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
                                    "CAP_FOWNER", "CAP_DAC_OVERRIDE"}, caps)

    def test_systemd_analyze_verify(self):
        require_tool("systemd-analyze")
        text = self.unit_text()
        with tempfile.TemporaryDirectory(prefix="sg-it-unit-") as d:
            # the unit as built, pointing at this build's binary (verify checks it exists)
            exe = unit_directives(text, "ExecStart")[0].split()[0]
            unit = os.path.join(d, "smtpgate.service")
            with open(unit, "w") as f:
                f.write(text.replace(exe, harness.binary()))
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", unit], capture_output=True,
                               text=True, timeout=120)
            out = (r.stdout + r.stderr).strip()
            self.assertEqual(r.returncode, 0, out)
            self.assertNotIn("smtpgate.service:", out, "warnings about the unit: " + out)


class MesonInstall(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_tool("meson")
        cls.dest = tempfile.mkdtemp(prefix="sg-it-install-")
        r = subprocess.run(["meson", "install", "-C", build_dir(), "--no-rebuild", "--destdir",
                            cls.dest], capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            shutil.rmtree(cls.dest, ignore_errors=True)
            raise AssertionError("meson install failed:\n" + (r.stdout + r.stderr)[-3000:])
        cls.files = {os.path.relpath(os.path.join(dp, f), cls.dest)
                     for dp, _, fs in os.walk(cls.dest) for f in fs}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, ignore_errors=True)

    def find(self, suffix):
        hits = [f for f in self.files if f.endswith(suffix)]
        self.assertEqual(len(hits), 1, "%s in %r" % (suffix, sorted(self.files)))
        return os.path.join(self.dest, hits[0])

    def test_files(self):
        self.find("bin/smtpgate")
        self.find("lib/systemd/system/smtpgate.service")
        self.find("lib/sysusers.d/smtpgate.conf")
        self.find("lib/tmpfiles.d/smtpgate.conf")
        self.find("smtpgate/smtpgate.conf.example")
        conf = self.find("smtpgate/smtpgate.conf")
        self.assertTrue(conf.endswith("etc/smtpgate/smtpgate.conf"), conf)
        if shutil.which("scdoc"):
            self.find("man8/smtpgate.8")
            self.find("man5/smtpgate.conf.5")
        with open(self.find("lib/sysusers.d/smtpgate.conf")) as f:
            self.assertRegex(f.read(), r"(?m)^u smtpgate ")
        with open(self.find("lib/tmpfiles.d/smtpgate.conf")) as f:
            self.assertRegex(f.read(), r"(?m)^d /var/lib/smtpgate 0700 smtpgate smtpgate")

    def test_example_config_is_valid(self):
        """The installed configuration, as the unit gives it to serve (ports and data dir
        moved to this test's), starts the server."""
        conf = self.find("smtpgate/smtpgate.conf")
        with open(conf) as f:
            text = f.read()
        self.assertIn("data_dir = /var/lib/smtpgate", text)
        self.assertIn("user = smtpgate", text)
        srv_conf = os.path.join(self.dest, "test.conf")
        data = tempfile.mkdtemp(prefix="sg-it-installed-data-")
        self.addCleanup(shutil.rmtree, data, True)
        os.chmod(data, 0o711)
        ports = {}
        out = []
        section = None
        for ln in text.splitlines():
            m = re.match(r"^\[listener (\w+)\]", ln)
            if m:
                section = m.group(1)
            if ln.startswith("data_dir"):
                ln = "data_dir = %s/data" % data
            elif ln.startswith("http_listen"):
                ln = "http_listen = %s:%d" % (HOST, free_port())
            elif ln.startswith("listen") and section:
                ports[section] = free_port()
                ln = "listen = %s:%d" % (HOST, ports[section])
            out.append(ln)
        with open(srv_conf, "w") as f:
            f.write("\n".join(out) + "\n")
        self.assertEqual(set(ports), {"mx", "submission", "submissions"})
        binary = self.find("bin/smtpgate")
        r = subprocess.run([binary, "user", "add", ALICE.login, "--password-stdin", "--config",
                            srv_conf], input=ALICE.password + "\n", capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        argv = [binary, "serve", "--config", srv_conf]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            # the unit's CapabilityBoundingSet and NoNewPrivileges: the start (bind, chown of
            # the data dir, the drop to the user smtpgate) must work with exactly these
            argv = ["setpriv", "--no-new-privs", "--bounding-set=-all,+net_bind_service,+setuid,"
                    "+setgid,+chown,+fowner,+dac_override"] + argv
        log_path = os.path.join(data, "serve.log")
        with open(log_path, "wb") as log:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            ok = harness.wait_until(lambda: p.poll() is not None or
                                    "event=ready" in open(log_path).read(), 30)
            with open(log_path) as f:
                logtext = f.read()
            self.assertIsNone(p.poll(), logtext)
            self.assertTrue(ok, logtext)
            if os.geteuid() == 0:
                self.assertIn("event=privileges user=smtpgate", logtext)
            with smtplib.SMTP_SSL(HOST, ports["submissions"], timeout=30,
                                  context=harness.tls_context()) as s:
                s.login(ALICE.login, ALICE.password)
                s.sendmail(ALICE.login, ["friend@example.net"], b"Subject: installed\r\n\r\nok\r\n")
            new = os.path.join(data, "data", "mail", ALICE.login, "new")
            self.assertEqual(len(os.listdir(new)), 1)
        finally:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.assertEqual(p.returncode, 0, open(log_path).read()[-2000:])


if __name__ == "__main__":
    unittest.main()
