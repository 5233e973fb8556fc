"""`smtpgate probe` against smtpgate itself (every mechanism, each diagnosis provoked on
purpose) and against scripted fake servers for what smtpgate never sends (534, 454 from AUTH,
hostile replies: short lines, overlong lines, code changes, STARTTLS injection, a stall)."""

import json
import os
import socket
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ALICE, BOB, CAROL, DAVE, STD_USERS, ServerTestCase,  # noqa: E402
                     binary, free_port)

TIMEOUT = 60


def probe(*args, secret=None):
    argv = [binary(), "probe"] + [str(a) for a in args]
    r = subprocess.run(argv, input=(secret + "\n").encode() if secret is not None else b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class ProbeSmtpgate(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {
        "mx": "mx",
        "submission": "submission",
        "submissions": "submissions",
        "only_plain": {"role": "submissions", "mechanisms": "PLAIN"},
    }
    SETTINGS = {"channel_binding": "yes"}     # -PLUS is opt-in (issue 16)

    PASSWORD_MECHS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1",
                      "NTLM", "CRAM-MD5", "PLAIN", "LOGIN"]

    def target(self, name):
        return "127.0.0.1:%d" % self.srv.port(name)

    def tls_mode(self, name):
        return "implicit" if self.srv.role(name) == "submissions" else "starttls"

    def run_probe(self, name, *args, secret=None, tls=None):
        return probe(self.target(name), "--tls", tls or self.tls_mode(name), "--cafile",
                     self.srv.cert_path(), "--timeout", "20", *args, secret=secret)

    def auth(self, name, mech, user, password, *args):
        return self.run_probe(name, "--auth", mech, "--user", user.login if hasattr(user, "login")
                              else user, "--password-stdin", *args, secret=password)

    def token(self, login):
        r = self.srv.cli("token", "issue", login, "--config", self.srv.config_path)
        return r.stdout.strip()

    # -- every mechanism ---------------------------------------------------------------
    def test_password_mechanisms_right_and_wrong(self):
        for name in ("submission", "submissions"):
            for mech in self.PASSWORD_MECHS:
                with self.subTest(listener=name, mech=mech, password="right"):
                    rc, out, err = self.auth(name, mech, ALICE, ALICE.password)
                    self.assertEqual(rc, 0, out + err)
                    self.assertIn("Result: AUTH %s succeeded as %s" % (mech, ALICE.login), out)
                    self.assertNotIn(ALICE.password, out)
                with self.subTest(listener=name, mech=mech, password="wrong"):
                    rc, out, err = self.auth(name, mech, ALICE, "wrong-password")
                    self.assertEqual(rc, 1, out + err)
                    self.assertIn("Result: AUTH %s failed: 535" % mech, out)
                    self.assertIn("535: the server refused the credentials", out)
                    self.assertNotIn("wrong-password", out)

    def test_oauth_mechanisms(self):
        tok = self.token(ALICE.login)
        for mech in ("OAUTHBEARER", "XOAUTH2"):
            with self.subTest(mech=mech):
                rc, out, err = self.run_probe("submissions", "--auth", mech, "--user", ALICE.login,
                                              "--token-stdin", secret=tok)
                self.assertEqual(rc, 0, out + err)
                self.assertIn("auth=Bearer ****", out)
                self.assertNotIn(tok, out)
            with self.subTest(mech=mech, token="bad"):
                rc, out, err = self.run_probe("submissions", "--auth", mech, "--user", ALICE.login,
                                              "--token-stdin", secret=tok[:-4] + "AAAA")
                self.assertEqual(rc, 1, out + err)
                self.assertIn("535", out)

    def test_auth_all(self):
        rc, out, _ = self.run_probe("submissions", "--auth", "all", "--user", ALICE.login,
                                    "--password-stdin", secret=ALICE.password)
        self.assertEqual(rc, 0, out)
        for mech in self.PASSWORD_MECHS:
            self.assertRegex(out, r"\n  %s +ok +235" % mech)
        self.assertRegex(out, r"\n  XOAUTH2 +skipped")

    def test_plus_uses_channel_binding(self):
        rc, out, _ = self.auth("submissions", "SCRAM-SHA-256-PLUS", ALICE, ALICE.password)
        self.assertEqual(rc, 0, out)
        self.assertIn("(p=tls-exporter,,n=", out)

    def test_json(self):
        rc, out, _ = self.auth("submissions", "CRAM-MD5", ALICE, ALICE.password, "--json")
        self.assertEqual(rc, 0, out)
        doc = json.loads(out)
        self.assertEqual(doc["result"], "success")
        self.assertEqual(doc["tls"]["channel_binding"], "tls-exporter")
        self.assertTrue(doc["attempts"][0]["authenticated"])

    # -- diagnoses --------------------------------------------------------------------
    def test_535_disabled_account(self):
        rc, out, _ = self.auth("submissions", "PLAIN", CAROL, CAROL.password)
        self.assertEqual(rc, 1, out)
        self.assertIn("account is disabled", out)

    def test_535_login_format_hint(self):
        rc, out, _ = self.auth("submissions", "PLAIN", "alice", ALICE.password)
        self.assertEqual(rc, 1, out)
        self.assertIn('expect the full address ("alice@yourdomain")', out)
        rc, out, _ = self.auth("submissions", "PLAIN", "dave@example.org", DAVE.password)
        self.assertEqual(rc, 1, out)
        self.assertIn('the local part only ("dave")', out)

    def test_no_auth_before_starttls(self):
        rc, out, _ = probe(self.target("submission"), "--tls", "none", "--user", ALICE.login,
                           "--password-stdin", secret=ALICE.password)
        # plaintext mechanisms are hidden before TLS; the probe picks a non-plaintext one
        self.assertIn(rc, (0, 1), out)
        rc, out, _ = probe(self.target("submission"), "--tls", "none", "--auth", "PLAIN", "--user",
                           ALICE.login, "--password-stdin", secret=ALICE.password)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"538|530|does not offer PLAIN")
        self.assertIn("--tls starttls", out)

    def test_504_not_offered(self):
        rc, out, _ = self.auth("only_plain", "LOGIN", ALICE, ALICE.password)
        self.assertEqual(rc, 1, out)
        self.assertIn("the server does not offer LOGIN. It offers: PLAIN", out)

    def test_530_mail_without_auth(self):
        rc, out, _ = self.run_probe("submissions", "--send", "--from", ALICE.login, "--to",
                                    BOB.login)
        self.assertEqual(rc, 1, out)
        self.assertIn("530", out)
        self.assertIn("requires authentication before accepting mail", out)

    def test_553_sender_not_owned(self):
        rc, out, _ = self.auth("submissions", "PLAIN", ALICE, ALICE.password, "--send", "--from",
                               BOB.login, "--to", BOB.login)
        self.assertEqual(rc, 1, out)
        self.assertIn("553 to MAIL: the server does not let %s send as <%s>" % (ALICE.login,
                                                                             BOB.login), out)

    def test_send_ok(self):
        rc, out, _ = self.auth("submissions", "SCRAM-SHA-256", ALICE, ALICE.password, "--send",
                               "--from", ALICE.login, "--to", BOB.login, "--subject", "hello")
        self.assertEqual(rc, 0, out)
        self.assertIn("The server accepted the test message: 250", out)

    def test_554_relay_denied_on_mx(self):
        rc, out, _ = self.run_probe("mx", "--send", "--from", "someone@elsewhere.test", "--to",
                                    "x@elsewhere.test")
        self.assertEqual(rc, 1, out)
        self.assertIn("554 to RCPT: relaying to <x@elsewhere.test> needs authentication", out)

    def test_550_no_such_user_on_mx(self):
        rc, out, _ = self.run_probe("mx", "--send", "--from", "someone@elsewhere.test", "--to",
                                    "nobody@example.test")
        self.assertEqual(rc, 4, out)
        self.assertIn("550 to RCPT: the recipient <nobody@example.test> does not exist", out)

    def test_certificate_not_trusted(self):
        rc, out, _ = probe(self.target("submissions"), "--tls", "implicit")
        self.assertEqual(rc, 3, out)
        self.assertIn("--cafile", out)
        rc, out, _ = probe(self.target("submissions"), "--tls", "implicit", "--insecure")
        self.assertEqual(rc, 0, out)

    def test_certificate_wrong_name(self):
        rc, out, _ = probe("127.0.0.2:%d" % self.srv.port("submissions"), "--tls", "implicit",
                           "--cafile", self.srv.cert_path(), "--timeout", "5")
        if "Nothing accepts" in out:
            self.skipTest("the server listens on 127.0.0.1 only")
        self.assertEqual(rc, 3, out)
        self.assertIn("not for 127.0.0.2", out)

    def test_tls_mode_mismatch(self):
        rc, out, _ = probe(self.target("submission"), "--tls", "implicit", "--insecure",
                           "--timeout", "5")
        self.assertEqual(rc, 3, out)
        self.assertIn("--tls starttls", out)
        rc, out, _ = probe(self.target("submissions"), "--tls", "starttls", "--insecure",
                           "--timeout", "2")
        self.assertEqual(rc, 3, out)
        self.assertIn("--tls implicit", out)


# -- scripted fake servers ---------------------------------------------------------------
class FakeServer:
    """Accepts one connection at a time and answers from a script: greeting bytes, then a
    dict of command prefix -> reply bytes (default "250 ok"). None as a greeting: stall."""

    def __init__(self, greeting, replies=None):
        self.greeting = greeting
        self.replies = replies or {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    self.session(conn)
                except OSError:
                    pass

    def session(self, conn):
        if self.greeting is None:
            conn.recv(100)  # stall until the client gives up
            return
        conn.sendall(self.greeting)
        f = conn.makefile("rb")
        for line in f:
            cmd = line.rstrip(b"\r\n").decode(errors="replace")
            reply = b"250 ok\r\n"
            for prefix, r in self.replies.items():
                if cmd.upper().startswith(prefix):
                    reply = r
                    break
            if cmd.upper() == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            conn.sendall(reply)

    def close(self):
        self.stop_flag = True
        self.sock.close()


EHLO_AUTH = b"250-fake.test\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250 STARTTLS\r\n"


class ProbeFakeServers(unittest.TestCase):
    def fake(self, greeting, replies=None):
        s = FakeServer(greeting, replies)
        self.addCleanup(s.close)
        return s

    def run_fake(self, s, *args, secret="pw"):
        return probe("127.0.0.1:%d" % s.port, "--tls", "none", "--timeout", "3", *args,
                     secret=secret)

    def auth_fake(self, s, mech="PLAIN"):
        return self.run_fake(s, "--auth", mech, "--user", "u", "--password-stdin")

    def test_534_too_weak(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH,
                                        "AUTH": b"534 5.7.9 Authentication mechanism is too weak\r\n"})
        rc, out, _ = self.auth_fake(s)
        self.assertEqual(rc, 1, out)
        self.assertIn("534: the server considers PLAIN too weak", out)

    def test_538_encryption_required(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH, "AUTH": b"538 5.7.11 Encryption "
                                        b"required for requested authentication mechanism\r\n"})
        rc, out, _ = self.auth_fake(s)
        self.assertEqual(rc, 1, out)
        self.assertIn("538: PLAIN needs an encrypted connection", out)

    def test_454_temporary(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH,
                                        "AUTH": b"454 4.7.0 Temporary authentication failure\r\n"})
        rc, out, _ = self.auth_fake(s)
        self.assertEqual(rc, 1, out)
        self.assertIn("454: a temporary failure on the server side", out)

    def test_530_starttls_first(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH,
                                        "AUTH": b"530 5.7.0 Must issue a STARTTLS command first\r\n"})
        rc, out, _ = self.auth_fake(s)
        self.assertEqual(rc, 1, out)
        self.assertIn("--tls starttls", out)

    def test_no_auth_offered(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": b"250-fake.test\r\n250 STARTTLS\r\n"})
        rc, out, _ = self.run_fake(s, "--user", "u", "--password-stdin")
        self.assertEqual(rc, 1, out)
        self.assertIn("offers AUTH only after STARTTLS", out)

    def test_stall_timeout(self):
        s = self.fake(None)
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 3, out)
        self.assertIn("sent no greeting within 3 s", out)

    def test_stall_after_auth(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH, "AUTH": b""})
        rc, out, _ = self.auth_fake(s)
        self.assertEqual(rc, 3, out)
        self.assertIn("timeout", out)

    def test_short_lines(self):
        # CVE-2020-8794 class: lines of 4 octets or fewer
        for greeting, ok in ((b"220\r\n", True), (b"220 \r\n", True), (b"22\r\n", False),
                             (b"2\r\n", False), (b"\r\n", False)):
            with self.subTest(greeting=greeting):
                s = self.fake(greeting, {"EHLO": b"250-\r\n250\r\n"})
                rc, out, _ = self.run_fake(s)
                self.assertEqual(rc, 0 if ok else 4, out)
                if not ok:
                    self.assertIn("reply line shorter than a reply code", out)

    def test_overlong_line(self):
        s = self.fake(b"220 " + b"x" * 5000 + b"\r\n")
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 4, out)
        self.assertIn("reply line too long", out)

    def test_code_change_in_multiline(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": b"250-fake\r\n251 other\r\n"})
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 4, out)
        self.assertIn("multiline reply changes its reply code", out)

    def test_endless_multiline(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": b"250-x\r\n" * 2000})
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 4, out)
        self.assertIn("too many lines in one reply", out)

    def test_starttls_injection(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH,
                                        "STARTTLS": b"220 go ahead\r\n250 injected\r\n"})
        rc, out, _ = probe("127.0.0.1:%d" % s.port, "--tls", "starttls", "--insecure",
                           "--timeout", "3")
        self.assertEqual(rc, 4, out)
        self.assertIn("possible injection attack", out)

    def test_bad_base64_challenge(self):
        s = self.fake(b"220 fake\r\n", {"EHLO": EHLO_AUTH, "AUTH": b"334 !!!notbase64\r\n",
                                        "*": b"501 5.7.0 Authentication aborted\r\n"})
        rc, out, _ = self.auth_fake(s, "CRAM-MD5")
        self.assertEqual(rc, 4, out)
        self.assertIn("not valid base64", out)

    def test_hostile_text_escaped(self):
        # terminal escapes and invalid UTF-8 from the server are escaped, JSON stays valid
        s = self.fake(b"220 \x1b[2J\xff\xfe evil\r\n", {"EHLO": EHLO_AUTH})
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("\x1b", out)
        self.assertIn("220 \\x1b[2J", out)
        rc, out, _ = self.run_fake(s, "--json")
        self.assertEqual(rc, 0, out)
        doc = json.loads(out)
        self.assertIn("\\xff\\xfe", doc["greeting"])

    def test_greeting_refused(self):
        s = self.fake(b"554 5.7.1 go away\r\n")
        rc, out, _ = self.run_fake(s)
        self.assertEqual(rc, 3, out)
        self.assertIn("refused the session in its greeting", out)

    def test_connection_refused(self):
        rc, out, _ = probe("127.0.0.1:%d" % free_port(), "--tls", "none")
        self.assertEqual(rc, 3, out)
        self.assertIn("Nothing accepts connections", out)


if __name__ == "__main__":
    unittest.main()
