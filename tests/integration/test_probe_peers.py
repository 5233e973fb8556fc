"""`smtpgate probe` against independent servers: Postfix + Cyrus SASL and Dovecot submission,
started privately on loopback by peers.py. Each mechanism with the right and a wrong password;
exit codes, results and diagnosis text; TLS modes and certificate checks; --auth all; --send;
--json; secrets masked.

Skipped when not root or when the packages are missing.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
from harness import binary  # noqa: E402

TIMEOUT = 60


def probe(*args, secret=None):
    """Run the probe; returns (exit code, stdout, stderr)."""
    argv = [binary(), "probe"] + [str(a) for a in args]
    r = subprocess.run(argv, input=(secret + "\n").encode() if secret is not None else b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class _PeerTests:
    PEER = None
    peer = None

    @classmethod
    def setUpClass(cls):
        if not cls.PEER.available():
            raise unittest.SkipTest(cls.PEER.__name__ + " not available (needs root and packages)")
        cls.peer = cls.PEER()

    @classmethod
    def tearDownClass(cls):
        if cls.peer is not None:
            cls.peer.stop()

    def target(self):
        return "127.0.0.1:%d" % self.peer.port

    def tls_args(self):
        return ["--cafile", self.peer.cafile]

    def run_mech(self, mech, password, *extra):
        return probe(self.target(), *self.tls_args(), "--auth", mech, "--user", "alice",
                     "--password-stdin", "--timeout", "20", *extra, secret=password)

    def check_mechs(self):
        for mech in self.PEER.MECHS:
            with self.subTest(mech=mech, password="right"):
                rc, out, err = self.run_mech(mech, self.peer.users["alice"])
                self.assertEqual(rc, 0, out + err)
                self.assertIn("Result: AUTH %s succeeded as alice" % mech, out)
                self.assertIn("Authentication with %s succeeded" % mech, out)
                self.assertNotIn(self.peer.users["alice"], out, "password leaked")
            with self.subTest(mech=mech, password="wrong"):
                rc, out, err = self.run_mech(mech, "not-the-password")
                self.assertEqual(rc, 1, out + err)
                self.assertIn("Result: AUTH %s failed: 535" % mech, out)
                self.assertIn("535: the server refused the credentials for alice", out)
                self.assertIn("Check the login format", out)
                self.assertNotIn("not-the-password", out, "password leaked")

    def test_each_mechanism_right_and_wrong_password(self):
        self.check_mechs()

    def test_decoded_transcript_login(self):
        rc, out, _ = self.run_mech("LOGIN", self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("S: 334 VXNlcm5hbWU6  (Username:)", out)
        self.assertIn("S: 334 UGFzc3dvcmQ6  (Password:)", out)
        self.assertIn("C: YWxpY2U=  (alice)", out)
        self.assertIn("C: ****  (****)", out)

    def test_plain_masked_and_shown(self):
        pw = self.peer.users["alice"]
        rc, out, _ = self.run_mech("PLAIN", pw)
        self.assertEqual(rc, 0, out)
        self.assertIn("C: AUTH PLAIN ****  (\\0alice\\0****)", out)
        rc, out, _ = self.run_mech("PLAIN", pw, "--show-secrets")
        self.assertEqual(rc, 0, out)
        self.assertIn("(\\0alice\\0%s)" % pw, out)

    def test_scram_decoded(self):
        rc, out, _ = self.run_mech("SCRAM-SHA-256", self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"\(.,,n=alice,r=[^)]+\)")
        self.assertRegex(out, r"\(r=[^,]+,s=[^,]+,i=\d+\)")
        self.assertRegex(out, r"\(c=[^,]+,r=[^,]+,p=[^)]+\)")
        self.assertRegex(out, r"\(v=[^)]+\)")

    def test_tls_summary_verified(self):
        rc, out, _ = probe(self.target(), *self.tls_args())
        self.assertEqual(rc, 0, out)
        self.assertIn("TLS: TLSv1.3", out)
        self.assertIn("certificate subject: CN = localhost", out)
        self.assertIn("verified:            yes", out)
        self.assertIn("channel binding:     tls-exporter", out)

    def test_self_signed_refused_then_insecure(self):
        rc, out, _ = probe(self.target())
        self.assertEqual(rc, 3, out)
        self.assertIn("self-signed", out)
        self.assertIn("--cafile", out)
        rc, out, _ = probe(self.target(), "--insecure")
        self.assertEqual(rc, 0, out)
        self.assertIn("ignored: --insecure", out)

    def test_implicit_tls_on_starttls_port(self):
        rc, out, _ = probe(self.target(), "--tls", "implicit", "--insecure", "--timeout", "5")
        self.assertEqual(rc, 3, out)
        self.assertIn("--tls starttls", out)

    def test_mechanism_not_offered(self):
        # a mechanism the probe has and neither peer offers
        rc, out, _ = self.run_mech("SCRAM-SHA-256-PLUS", self.peer.users["alice"])
        self.assertEqual(rc, 1, out)
        self.assertIn("the server does not offer SCRAM-SHA-256-PLUS. It offers: ", out)
        self.assertNotIn(self.peer.users["alice"], out)

    def test_auth_all_matrix(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "all", "--user", "alice",
                           "--password-stdin", secret=self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("Matrix:", out)
        for mech in self.PEER.MECHS:
            self.assertRegex(out, r"\n  %s +ok +235" % mech)

    def test_auth_all_wrong_password(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "all", "--user", "alice",
                           "--password-stdin", secret="wrong")
        self.assertEqual(rc, 1, out)
        for mech in self.PEER.MECHS:
            self.assertRegex(out, r"\n  %s +refused +535" % mech)

    def test_json(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "PLAIN", "--user", "alice",
                           "--password-stdin", "--json", secret=self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        doc = json.loads(out)
        self.assertEqual(doc["exit_code"], 0)
        self.assertEqual(doc["result"], "success")
        self.assertTrue(doc["tls"]["verified"])
        self.assertIn("PLAIN", doc["mechanisms"]["offered"])
        self.assertEqual(doc["mechanisms"]["tried"], ["PLAIN"])
        a = doc["attempts"][0]
        self.assertTrue(a["authenticated"])
        self.assertEqual(a["reply"]["code"], 235)
        self.assertNotIn(self.peer.users["alice"], out)

    def test_unknown_mechanism_usage(self):
        rc, out, err = probe(self.target(), "--auth", "NOPE")
        self.assertEqual(rc, 2)
        self.assertIn("unknown mechanism", err)

    def test_usage_errors(self):
        self.assertEqual(probe()[0], 2)
        self.assertEqual(probe(self.target(), "--tls", "sometimes")[0], 2)
        self.assertEqual(probe(self.target(), "--password-stdin", secret="x")[0], 2)
        self.assertEqual(probe(self.target(), "--send")[0], 2)
        rc, out, _ = probe("--help")
        self.assertEqual(rc, 0)
        self.assertIn("EXIT STATUS", out)

    def test_connection_refused(self):
        port = peers.free_port()
        rc, out, _ = probe("127.0.0.1:%d" % port, "--tls", "none")
        self.assertEqual(rc, 3, out)
        self.assertIn("Nothing accepts connections", out)


class TestProbePostfix(_PeerTests, unittest.TestCase):
    PEER = peers.PostfixPeer

    def test_plaintext_connection(self):
        rc, out, _ = probe(self.target(), "--tls", "none", "--auth", "PLAIN", "--user", "alice",
                           "--password-stdin", secret=self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("over a plaintext connection", out)
        self.assertIn("TLS: not used (the server offers STARTTLS)", out)

    def test_ntlm_decoded(self):
        rc, out, _ = self.run_mech("NTLM", self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("NTLM NEGOTIATE message", out)
        self.assertIn("NTLM CHALLENGE message", out)
        self.assertIn('NTLM AUTHENTICATE message', out)
        self.assertIn('user "alice"', out)

    def test_send_relay_denied_without_auth(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--send", "--from", "x@probe.test",
                           "--to", "someone@example.com")
        self.assertEqual(rc, 1, out)
        self.assertIn("554 to RCPT: relaying to <someone@example.com> needs authentication", out)

    def test_send_after_auth(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "SCRAM-SHA-1", "--user",
                           "alice", "--password-stdin", "--send", "--from", "alice@probe.test",
                           "--to", "someone@example.com", "--subject", "probe test",
                           secret=self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("The server accepted the test message: 250", out)

    def test_unknown_mech_504(self):
        # a mechanism the probe knows and Postfix's Cyrus list does not include
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "OAUTHBEARER", "--user",
                           "alice", "--token-stdin", secret="tok")
        self.assertEqual(rc, 1, out)
        self.assertIn("the server does not offer OAUTHBEARER. It offers: PLAIN LOGIN CRAM-MD5",
                      out)


class TestProbeDovecot(_PeerTests, unittest.TestCase):
    PEER = peers.DovecotPeer

    def test_oauth_right_and_wrong_token(self):
        good = self.peer.token("alice")
        expired = self.peer.token("alice", ttl=-600)
        for mech in self.PEER.TOKEN_MECHS:
            with self.subTest(mech=mech, token="right"):
                rc, out, err = probe(self.target(), *self.tls_args(), "--auth", mech, "--user",
                                     "alice", "--token-stdin", secret=good)
                self.assertEqual(rc, 0, out + err)
                self.assertIn("Result: AUTH %s succeeded as alice" % mech, out)
                self.assertIn("auth=Bearer ****", out)
                self.assertNotIn(good, out)
            with self.subTest(mech=mech, token="expired"):
                rc, out, err = probe(self.target(), *self.tls_args(), "--auth", mech, "--user",
                                     "alice", "--token-stdin", secret=expired)
                self.assertEqual(rc, 1, out + err)
                self.assertIn("535: the server refused the token", out)
                self.assertRegex(out, r'\(\{"status":"(invalid_token|401)"')

    def test_send_after_auth(self):
        rc, out, _ = probe(self.target(), *self.tls_args(), "--auth", "PLAIN", "--user", "alice",
                           "--password-stdin", "--send", "--from", "alice@probe.test",
                           "--to", "someone@example.com", secret=self.peer.users["alice"])
        self.assertEqual(rc, 0, out)
        self.assertIn("The server accepted the test message: 250", out)


if __name__ == "__main__":
    unittest.main()
