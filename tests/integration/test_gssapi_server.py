"""GSSAPI (RFC 4752) against the real smtpgate binary, with a throw-away KDC
(krb5_realm.py) and real clients: msmtp (GNU SASL), curl (its own GSSAPI code),
gsasl --smtp, and smtpgate probe (our client side).

The server runs with hostname "localhost" and gss_keytab holding smtp/localhost:
msmtp and curl build the service name from the host they connect to.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import krb5_realm  # noqa: E402
from harness import Server, User, require_tool  # noqa: E402

MSG = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: gss\r\n\r\nhi\r\n"


@unittest.skipUnless(krb5_realm.available(), "MIT KDC not installed")
class GssapiServer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.realm = krb5_realm.standard_realm()
        try:
            for u in krb5_realm.USERS:
                cls.realm.kinit(u, u.split("/")[0] + "pw",
                                ccache=krb5_realm.ccache_for(cls.realm, u))
            cls.tmp = tempfile.mkdtemp(prefix="sg-gss-it-")
            # The server drops root for an unprivileged user: it must be able to
            # read krb5.conf and the keytab (as with Postfix and Cyrus SASL).
            os.chmod(cls.realm.dir, 0o755)
            for f in (cls.realm.krb5_conf, cls.realm.keytab):
                os.chmod(f, 0o644)
            cls.srv = cls.server()
        except BaseException:
            cls.realm.stop()
            if hasattr(cls, "tmp"):
                shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def server(cls, **settings):
        s = {"gss_keytab": cls.realm.keytab, "gss_realm": cls.realm.realm}
        s.update(settings)
        srv = Server(users=[User("alice", "alice-local-pw", addresses=["alice@example.test"]),
                            User("bob", "bob-local-pw", disabled=True)],
                     listeners={"submission": "submission"}, hostname="localhost",
                     settings=s, env={"KRB5_CONFIG": cls.realm.krb5_conf}, start=False)
        os.chmod(srv.tmp, 0o755)  # reachable after the server drops root
        try:
            srv.start()
        except BaseException:
            srv.print_log_tail("server failed to start")
            srv.cleanup()
            raise
        return srv

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        probs = cls.srv.problems()
        if probs:
            cls.srv.print_log_tail("; ".join(probs))
        cls.srv.cleanup()
        cls.realm.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if probs:
            raise AssertionError("; ".join(probs))

    def cenv(self, user="alice"):
        return self.realm.env(ccache=krb5_realm.ccache_for(self.realm, user))

    def log(self):
        try:
            with open(self.srv.log_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def show(self, r):
        return "rc=%d\n%s\n%s\n--- server log ---\n%s" % (r.returncode, r.stdout[-3000:],
                                                         r.stderr[-3000:], self.log())

    def test_ehlo_offers_gssapi(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            self.assertIn("GSSAPI", c.auth_mechs())

    def test_config_variants(self):
        # no readable keytab: not offered; wrong realm: 535 wrong_realm; map domain
        other = self.server(gss_keytab=os.path.join(self.tmp, "missing.keytab"))
        try:
            with other.raw("submission") as c:
                c.ehlo()
                self.assertNotIn("GSSAPI", c.auth_mechs())
        finally:
            other.cleanup()
        other = self.server(gss_realm="OTHER.TEST")
        try:
            r = self.gsasl(port=other.port("submission"))
            self.assertIn("535", r.stdout + r.stderr)
            self.assertTrue(any("reason=wrong_realm" in ln for ln in other.log_lines()))
        finally:
            other.cleanup()

    # -- msmtp: auth gssapi, user ignored (GNU SASL takes the ccache principal)
    def msmtp(self, user="alice", tls="off"):
        require_tool("msmtp")
        conf = os.path.join(self.tmp, "msmtprc-" + user.replace("/", "_"))
        with open(conf, "w") as f:
            f.write("account default\nhost localhost\nport %d\nauth gssapi\nuser %s\n"
                    "tls %s\ntls_starttls on\ntls_certcheck off\nfrom alice@example.test\n"
                    % (self.srv.port("submission"), user, tls))
        os.chmod(conf, 0o600)
        return subprocess.run(["msmtp", "-C", conf, "--debug", "bob@example.test"], input=MSG,
                              env=self.cenv(user), capture_output=True, text=True, timeout=30)

    def test_msmtp(self):
        r = self.msmtp()
        self.assertEqual(r.returncode, 0, self.show(r))
        self.assertIn("235", r.stdout + r.stderr)

    def test_msmtp_starttls(self):
        r = self.msmtp(tls="on")
        self.assertEqual(r.returncode, 0, self.show(r))

    def test_msmtp_refused(self):
        for user, login, reason in (("bob", "bob", "disabled"),
                                    ("carol", "carol", "unknown_principal"),
                                    ("alice/admin", "alice/admin@SMTPGATE.TEST",
                                     "unknown_principal")):
            r = self.msmtp(user)
            self.assertNotEqual(r.returncode, 0, self.show(r))
            self.assertIn("535", r.stdout + r.stderr, self.show(r))
            self.assertTrue(any("mech=GSSAPI" in ln and "login=%s " % login.lower() in ln.lower()
                                and "reason=%s" % reason in ln for ln in self.srv.log_lines()),
                            self.show(r))

    # -- curl: GSSAPI only with an empty user (--user :)
    def test_curl(self):
        require_tool("curl")
        msg = os.path.join(self.tmp, "msg")
        with open(msg, "w") as f:
            f.write(MSG)
        r = subprocess.run(["curl", "-sS", "-v", "smtp://localhost:%d" % self.srv.port("submission"),
                            "--login-options", "AUTH=GSSAPI", "--user", ":",
                            "--mail-from", "alice@example.test", "--mail-rcpt", "bob@example.test",
                            "-T", msg], env=self.cenv(), capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 0, self.show(r))
        self.assertIn("235", r.stderr, self.show(r))

    # -- gsasl --smtp
    def gsasl(self, authzid=None, port=None):
        require_tool("gsasl")
        argv = ["gsasl", "--smtp", "--connect",
                "localhost:%d" % (port or self.srv.port("submission")),
                "-m", "GSSAPI", "--no-starttls", "--service", "smtp", "--hostname", "localhost",
                "--quality-of-protection", "qop-auth"]
        if authzid:
            argv += ["-z", authzid]
        return subprocess.run(argv, env=self.cenv(), capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)

    def test_gsasl(self):
        r = self.gsasl()
        self.assertIn("235", r.stdout + r.stderr, self.show(r))
        r = self.gsasl(authzid="alice")
        self.assertIn("235", r.stdout + r.stderr, self.show(r))
        r = self.gsasl(authzid="bob")
        self.assertIn("535", r.stdout + r.stderr, self.show(r))

    # -- our own client side: smtpgate probe --auth GSSAPI (default ccache)
    def probe(self, user="alice", *extra):
        return subprocess.run([self.srv.bin, "probe", "localhost:%d" % self.srv.port("submission"),
                               "--auth", "GSSAPI"] + list(extra), env=self.cenv(user),
                              capture_output=True, text=True, timeout=30)

    def test_probe(self):
        r = self.probe("alice", "--tls", "none")
        self.assertEqual(r.returncode, 0, self.show(r))
        r = self.probe("alice", "--tls", "starttls", "--insecure")
        self.assertEqual(r.returncode, 0, self.show(r))
        r = self.probe("carol", "--tls", "none")
        self.assertEqual(r.returncode, 1, self.show(r))


if __name__ == "__main__":
    unittest.main(verbosity=2)
