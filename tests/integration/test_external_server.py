"""EXTERNAL (RFC 4422 appendix A) with TLS client certificates against the real
smtpgate binary: raw smtplib-level checks, msmtp, curl, gsasl and smtpgate probe.

A throw-away CA signs client certificates; the server gets tls_client_ca. The
certificate identity is the SAN email, else the CN: alice@example.test is an
address owned by account "alice", "erin" is a login itself.
"""

import base64
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, User, require_tool, tls_context  # noqa: E402

MSG = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: ext\r\n\r\nhi\r\n"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=60)


def make_pki(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=smtpgate test CA", cwd=d)

    def client(name, subj, san=None):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj, cwd=d)
        ext = os.path.join(d, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                    "extendedKeyUsage=clientAuth\n")
            if san:
                f.write("subjectAltName=" + san + "\n")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
        for f in (name + ".pem", name + ".key"):
            os.chmod(os.path.join(d, f), 0o644)

    client("alice", "/CN=Alice", "email:alice@example.test")   # address owned by alice
    client("erin", "/CN=erin")                                 # CN is a login
    client("bob", "/CN=bob")                                   # disabled account
    client("mallory", "/CN=mallory", "email:mallory@evil.test")  # no account
    # a certificate from another CA
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "self.key", "-out", "self.pem", "-days", "2", "-subj",
            "/CN=alice", cwd=d)
    os.chmod(d, 0o755)
    for f in ("ca.pem", "self.pem", "self.key"):
        os.chmod(os.path.join(d, f), 0o644)


class ExternalServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl CLI not installed")
        cls.pki = tempfile.mkdtemp(prefix="sg-pki-")
        make_pki(cls.pki)
        srv = Server(users=[User("alice", "alice-local-pw", addresses=["alice@example.test"]),
                            User("erin", "erin-local-pw"),
                            User("bob", "bob-local-pw", disabled=True)],
                     listeners={"submission": "submission", "submissions": "submissions"},
                     hostname="localhost",
                     settings={"tls_client_ca": os.path.join(cls.pki, "ca.pem")}, start=False)
        os.chmod(srv.tmp, 0o755)
        try:
            srv.start()
        except BaseException:
            srv.print_log_tail("server failed to start")
            srv.cleanup()
            shutil.rmtree(cls.pki, ignore_errors=True)
            raise
        cls.srv = srv

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        probs = cls.srv.problems()
        if probs:
            cls.srv.print_log_tail("; ".join(probs))
        cls.srv.cleanup()
        shutil.rmtree(cls.pki, ignore_errors=True)
        if probs:
            raise AssertionError("; ".join(probs))

    def cert(self, name):
        return os.path.join(self.pki, name + ".pem"), os.path.join(self.pki, name + ".key")

    def show(self, r):
        return "rc=%d\n%s\n%s\n--- server log ---\n%s" % (
            r.returncode, r.stdout[-3000:], r.stderr[-3000:], "\n".join(self.srv.log_lines()[-30:]))

    def logged(self, login, result, reason=None):
        for ln in self.srv.log_lines():
            if "mech=EXTERNAL" in ln and "login=%s " % login in ln and "result=%s" % result in ln:
                if reason is None or "reason=%s" % reason in ln:
                    return True
        return False

    # -- raw protocol ------------------------------------------------------
    def raw(self, cert=None, listener="submissions"):
        ctx = tls_context(client_cert=self.cert(cert)[0] if cert else None,
                          client_key=self.cert(cert)[1] if cert else None)
        c = self.srv.raw(listener, context=ctx)
        if listener == "submission":
            c.ehlo()
            c.starttls()
        c.ehlo()
        return c

    def test_not_offered_without_certificate(self):
        with self.raw(None) as c:
            self.assertNotIn("EXTERNAL", c.auth_mechs())
            code, _ = c.cmd("AUTH EXTERNAL =")
            self.assertNotEqual(code, 235)

    def test_raw_forms(self):
        b = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
        cases = [("alice", "AUTH EXTERNAL =", 235),
                 ("alice", "AUTH EXTERNAL " + b("alice"), 235),
                 ("alice", "AUTH EXTERNAL " + b("erin"), 535),
                 ("erin", "AUTH EXTERNAL =", 235),
                 ("bob", "AUTH EXTERNAL =", 535),
                 ("mallory", "AUTH EXTERNAL =", 535)]
        for cert, line, want in cases:
            with self.subTest(cert=cert, line=line), self.raw(cert) as c:
                self.assertIn("EXTERNAL", c.auth_mechs())
                code, text = c.cmd(line)
                self.assertEqual(code, want, text)
        # no initial response: "334 " then the authzid (empty line)
        with self.raw("alice", "submission") as c:
            code, _ = c.cmd("AUTH EXTERNAL")
            self.assertEqual(code, 334)
            code, _ = c.cmd("")
            self.assertEqual(code, 235)
        self.assertTrue(self.logged("bob", "fail", "disabled"))
        self.assertTrue(self.logged("mallory@evil.test", "fail", "no_account_for_certificate"))
        self.assertTrue(self.logged("alice", "fail", "bad_authzid"))

    def test_untrusted_certificate(self):
        try:
            c = self.raw("self")
        except Exception:
            return  # the handshake was refused: fine
        with c:
            self.assertNotIn("EXTERNAL", c.auth_mechs())

    # -- real clients ----------------------------------------------------------
    def test_msmtp(self):
        require_tool("msmtp")
        crt, key = self.cert("alice")
        conf = os.path.join(self.pki, "msmtprc")
        with open(conf, "w") as f:
            # msmtp (GNU SASL) sends "AUTH EXTERNAL" without an initial response when
            # the authzid is empty and then does not answer the "334 ": give a user,
            # which it sends as the authzid in the initial response.
            f.write("account default\nhost localhost\nport %d\nauth external\nuser alice\n"
                    "tls on\ntls_starttls off\ntls_certcheck off\ntls_cert_file %s\n"
                    "tls_key_file %s\nfrom alice@example.test\n"
                    % (self.srv.port("submissions"), crt, key))
        os.chmod(conf, 0o600)
        r = subprocess.run(["msmtp", "-C", conf, "--debug", "bob@example.test"], input=MSG,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, self.show(r))

    def test_curl(self):
        require_tool("curl")
        crt, key = self.cert("alice")
        msg = os.path.join(self.pki, "msg")
        with open(msg, "w") as f:
            f.write(MSG)
        # curl sends the user name as the authzid
        r = subprocess.run(["curl", "-sS", "-v", "-k", "smtps://localhost:%d"
                            % self.srv.port("submissions"), "--cert", crt, "--key", key,
                            "--login-options", "AUTH=EXTERNAL", "--user", "alice",
                            "--mail-from", "alice@example.test", "--mail-rcpt",
                            "bob@example.test", "-T", msg], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, self.show(r))
        self.assertIn("235", r.stderr, self.show(r))

    def test_gsasl(self):
        require_tool("gsasl")
        crt, key = self.cert("alice")
        r = subprocess.run(["gsasl", "--smtp", "--connect", "localhost:%d"
                            % self.srv.port("submission"), "-m", "EXTERNAL", "--starttls",
                            "--x509-cert-file", crt, "--x509-key-file", key,
                            "--x509-ca-file", os.path.join(self.srv.data_dir, "tls", "cert.pem"),
                            "-z", ""], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        self.assertIn("235", r.stdout + r.stderr, self.show(r))

    def test_probe(self):
        crt, key = self.cert("alice")
        r = subprocess.run([self.srv.bin, "probe", "localhost:%d" % self.srv.port("submissions"),
                            "--tls", "implicit", "--insecure", "--auth", "EXTERNAL",
                            "--client-cert", crt, "--client-key", key],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, self.show(r))


if __name__ == "__main__":
    unittest.main(verbosity=2)
