"""SMTP AUTH (RFC 4954) on the wire: PLAIN, LOGIN, CRAM-MD5, and every failure reply of the
table in PROTOCOL.md (535, 538, 504, 501, 500 5.5.6, 503, 530)."""

import re
import statistics
import time
import unittest

from harness import (ALICE, BOB, CAROL, HOSTNAME, R_AUTH_ABORTED, R_AUTH_BAD,
                     R_AUTH_LINE_TOO_LONG, R_AUTH_OK, R_BAD_BASE64, R_BAD_SEQUENCE,
                     R_ENCRYPTION_REQUIRED, R_SERVER_FIRST_IR, R_UNKNOWN_MECH, STD_USERS,
                     ServerTestCase, assert_reply, b64, cram_md5_response, plain_b64, unb64)

AUTH_LINE_MAX = 12288
DELAY_MS = 50


class Auth(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {
        "mx": "mx",
        "submission": "submission",
        "submissions": "submissions",
        "only_plain": {"role": "submissions", "mechanisms": "PLAIN"},
    }
    SETTINGS = {"auth_fail_delay_ms": DELAY_MS}

    def tls(self, name="submissions"):
        """A client after (STARTTLS and) EHLO."""
        c = self.srv.raw(name)
        c.ehlo()
        if self.srv.role(name) != "submissions":
            c.starttls()
            c.ehlo()
        return c

    # -- success -------------------------------------------------------------
    def test_plain_initial_response(self):
        for name in ("submission", "submissions", "mx"):
            with self.tls(name) as c:
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK, name)

    def test_plain_authzid(self):
        with self.tls() as c:
            assert_reply(c.auth_plain(ALICE.login, ALICE.password, authzid=ALICE.login), R_AUTH_OK)
        with self.tls() as c:
            assert_reply(c.auth_plain(ALICE.login, ALICE.password, authzid=BOB.login), R_AUTH_BAD,
                         "authzid of another account")

    def test_plain_empty_challenge(self):
        with self.tls() as c:
            r = c.cmd("AUTH PLAIN")
            self.assertEqual(r.raw, b"334 \r\n", "empty challenge must be '334 ' with the space")
            assert_reply(c.cmd(plain_b64("", ALICE.login, ALICE.password)), R_AUTH_OK)

    def test_login(self):
        with self.tls() as c:
            r = c.cmd("AUTH LOGIN")
            self.assertEqual(r.first, "334 VXNlcm5hbWU6")
            r = c.cmd(b64(ALICE.login))
            self.assertEqual(r.first, "334 UGFzc3dvcmQ6")
            assert_reply(c.cmd(b64(ALICE.password)), R_AUTH_OK)

    def test_login_initial_response(self):
        with self.tls("submission") as c:
            r = c.cmd("AUTH LOGIN " + b64(ALICE.login))
            self.assertEqual(r.first, "334 UGFzc3dvcmQ6")
            assert_reply(c.cmd(b64(ALICE.password)), R_AUTH_OK)

    def test_empty_initial_response(self):
        # "=" is an empty initial response (RFC 4954 section 4): neither "no initial response"
        # (a prompt for it) nor bad base64
        with self.tls() as c:
            r = c.cmd("AUTH LOGIN =")
            self.assertNotEqual(r.first, "334 VXNlcm5hbWU6",
                                "AUTH LOGIN = taken as no initial response (user name prompt)")
            if r.code == 334:
                self.assertEqual(r.first, "334 UGFzc3dvcmQ6")
                assert_reply(c.cmd(b64("whatever")), R_AUTH_BAD)
            else:
                self.assertIn(r.code, (501, 535), r)
                self.assertNotEqual(r.first, R_BAD_BASE64, "'=' is valid")
        with self.tls() as c:
            r = c.cmd("AUTH PLAIN =")
            self.assertNotEqual(r.code, 334, "AUTH PLAIN = taken as no initial response: %r" % r)
            self.assertIn(r.code, (501, 535), r)
            self.assertNotEqual(r.first, R_BAD_BASE64, "'=' is valid")

    def test_cram_md5(self):
        challenges = set()
        for _ in range(2):
            with self.tls("submission") as c:
                r = c.cmd("AUTH CRAM-MD5")
                self.assertEqual(r.code, 334)
                chal = unb64(r.lines[0].strip()).decode()
                self.assertRegex(chal, r"^<[^<>@\s]+@" + re.escape(HOSTNAME) + ">$")
                challenges.add(chal)
                assert_reply(c.cmd(cram_md5_response(ALICE.login, ALICE.password, r.lines[0].strip())),
                             R_AUTH_OK)
        self.assertEqual(len(challenges), 2, "CRAM-MD5 challenge repeated")

    def test_cram_md5_initial_response_refused(self):
        with self.tls() as c:
            assert_reply(c.cmd("AUTH CRAM-MD5 " + b64("alice@example.test 00")), R_SERVER_FIRST_IR)

    def test_retry_after_failure(self):
        with self.tls() as c:
            assert_reply(c.auth_plain(ALICE.login, "wrong"), R_AUTH_BAD)
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)

    # -- 535: same reply for wrong password, unknown login, disabled account ----
    def test_bad_credentials_same_reply(self):
        cases = [(ALICE.login, "wrong-password"), ("nobody@example.test", "x"),
                 (CAROL.login, CAROL.password)]
        seen = set()
        for login, pw in cases:
            for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
                with self.tls() as c:
                    r = {"PLAIN": c.auth_plain, "LOGIN": c.auth_login,
                         "CRAM-MD5": c.auth_cram_md5}[mech](login, pw)
                    assert_reply(r, R_AUTH_BAD, "%s %s" % (mech, login))
                    seen.add(r.raw)
        self.assertEqual(len(seen), 1, "535 replies differ: %r" % seen)

    def test_bad_credentials_similar_delay(self):
        def timed(login, pw):
            with self.tls() as c:
                t0 = time.monotonic()
                r = c.auth_plain(login, pw)
                dt = time.monotonic() - t0
                assert_reply(r, R_AUTH_BAD)
                return dt
        wrong = [timed(ALICE.login, "wrong") for _ in range(3)]
        unknown = [timed("nobody@example.test", "wrong") for _ in range(3)]
        disabled = [timed(CAROL.login, CAROL.password) for _ in range(3)]
        for name, ts in (("wrong password", wrong), ("unknown login", unknown),
                         ("disabled", disabled)):
            self.assertGreaterEqual(min(ts), DELAY_MS / 1000 * 0.8,
                                    "%s answered before auth_fail_delay_ms: %r" % (name, ts))
        mw = statistics.median(wrong)
        for name, ts in (("unknown login", unknown), ("disabled", disabled)):
            self.assertGreater(statistics.median(ts), 0.3 * mw,
                               "%s much faster than a wrong password (%r vs %r)" % (name, ts, wrong))

    # -- 538, 504, 501, 500, 503 -------------------------------------------------
    def test_plaintext_mech_before_tls(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            self.assertNotIn("PLAIN", c.auth_mechs())
            self.assertNotIn("LOGIN", c.auth_mechs())
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_ENCRYPTION_REQUIRED)
            assert_reply(c.cmd("AUTH PLAIN"), R_ENCRYPTION_REQUIRED)
            assert_reply(c.cmd("AUTH LOGIN"), R_ENCRYPTION_REQUIRED)
        with self.srv.raw("mx") as c:
            c.ehlo()
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_ENCRYPTION_REQUIRED, "mx")

    def test_unknown_mechanism(self):
        with self.tls() as c:
            assert_reply(c.cmd("AUTH FROBNICATE"), R_UNKNOWN_MECH)
            assert_reply(c.cmd("AUTH X-UNKNOWN " + b64("x")), R_UNKNOWN_MECH)
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)

    def test_listener_mechanisms(self):
        with self.tls("only_plain") as c:
            self.assertEqual(c.auth_mechs(), ["PLAIN"])
            r = c.cmd("AUTH CRAM-MD5")
            self.assertIn(r.code, (504, 534), "mechanism not offered on this listener: %r" % r)
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)

    # One connection per case: the server closes after max_errors / max_auth_attempts.
    def test_cancel(self):
        steps = {"PLAIN": [], "LOGIN at the user name": [], "LOGIN at the password": [b64(ALICE.login)],
                 "CRAM-MD5": []}
        for case, before in steps.items():
            with self.tls() as c:
                self.assertEqual(c.cmd("AUTH " + case.split()[0]).code, 334, case)
                for line in before:
                    self.assertEqual(c.cmd(line).code, 334, case)
                assert_reply(c.cmd("*"), R_AUTH_ABORTED, case)
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK, "after " + case)

    def test_bad_base64(self):
        cases = [("characters outside the alphabet", ["AUTH PLAIN !!!!"]),
                 ("'=' not at the end", ["AUTH PLAIN AG=FsaWNl"]),
                 ("missing padding", ["AUTH PLAIN AGFsaWNl" + "A"]),
                 ("in a PLAIN continuation", ["AUTH PLAIN", "%%%%"]),
                 ("LOGIN user name", ["AUTH LOGIN", "bm9ib2R5*"]),
                 ("LOGIN password", ["AUTH LOGIN", b64(ALICE.login), "cGFz c3dk"])]
        for case, lines in cases:
            with self.tls() as c:
                for line in lines[:-1]:
                    self.assertEqual(c.cmd(line).code, 334, case)
                assert_reply(c.cmd(lines[-1]), R_BAD_BASE64, case)

    def test_line_too_long(self):
        with self.tls() as c:
            r = c.cmd("AUTH PLAIN " + "QUFB" * 3200)          # 12,813 octets
            assert_reply(r, R_AUTH_LINE_TOO_LONG, "initial response")
        with self.tls() as c:
            self.assertEqual(c.cmd("AUTH PLAIN").code, 334)
            assert_reply(c.cmd("QUFB" * 3100), R_AUTH_LINE_TOO_LONG, "continuation")

    def test_line_at_limit_accepted(self):
        # a 12,288-octet AUTH line (CRLF included) is read and judged on its content
        prefix = b"\0" + ALICE.login.encode() + b"\0"
        room = AUTH_LINE_MAX - len("AUTH PLAIN \r\n")
        n = (room // 4) * 3 - len(prefix)
        line = "AUTH PLAIN " + b64(prefix + b"x" * n)
        self.assertLessEqual(len(line) + 2, AUTH_LINE_MAX)
        self.assertGreater(len(line) + 2, AUTH_LINE_MAX - 4)
        with self.tls() as c:
            r = c.cmd(line)
            # judged on its content: a 535, or malformed (RFC 4616 caps passwd at 255 octets)
            self.assertTrue(r.first.startswith(R_AUTH_BAD) or
                            r.first.startswith("501 5.5.2 Malformed"),
                            "a 12,288-octet AUTH line: %r" % r)

    def test_auth_twice(self):
        with self.tls() as c:
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_BAD_SEQUENCE)
            assert_reply(c.cmd("AUTH CRAM-MD5"), R_BAD_SEQUENCE)

    def test_auth_in_transaction(self):
        with self.tls("mx") as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_BAD_SEQUENCE)

    def test_auth_before_ehlo(self):
        with self.srv.raw("submissions") as c:
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_BAD_SEQUENCE)
        with self.srv.raw("submissions") as c:
            c.cmd("HELO client.example.test")
            r = c.auth_plain(ALICE.login, ALICE.password)
            self.assertNotEqual(r.code, 235, "AUTH after HELO (RFC 4954 requires EHLO): %r" % r)

    def test_auth_then_send(self):
        with self.tls() as c:
            assert_reply(c.auth_login(BOB.login, BOB.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<bob@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
            r = c.data(b"Subject: after LOGIN\r\n\r\nbody\r\n")
            assert_reply(r, "250 2.0.0 Ok: queued as ")


if __name__ == "__main__":
    unittest.main()
