"""ESMTP commands, EHLO keywords, listener roles (mx relay rules, submission), sender ownership,
limits, STARTTLS (RFC 3207 injection defence). Raw socket clients against the real binary."""

import unittest

from harness import (ALICE, Reply, BOB, DAVE, HOSTNAME, R_AUTH_OK, R_AUTH_REQUIRED, R_BAD_PARAM,
                     R_BAD_SEQUENCE, R_NO_SUCH_USER, R_QUEUED, R_RELAY_DENIED, R_SENDER_NOT_OWNED,
                     R_TOO_BIG, R_TOO_MANY_ERRORS, R_TOO_MANY_RCPTS, STD_USERS, ServerTestCase,
                     assert_enhanced, assert_reply, headers, make_message, plain_b64,
                     queued_id)

MAX_SIZE = 20000
MAX_RCPTS = 5


class SmtpProtocol(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {
        "mx": "mx",
        "submission": "submission",
        "submissions": "submissions",
        "sub_open": {"role": "submissions", "sender_policy": "off"},
    }
    SETTINGS = {"max_message_size": MAX_SIZE, "max_recipients": MAX_RCPTS}

    # -- helpers -------------------------------------------------------------
    def authed(self, name="submissions", user=ALICE):
        c = self.srv.raw(name)
        c.ehlo()
        if self.srv.role(name) != "submissions":
            c.starttls()
            c.ehlo()
        assert_reply(c.auth_plain(user.login, user.password), R_AUTH_OK, "AUTH PLAIN")
        return c

    def mx(self, tls=False):
        c = self.srv.raw("mx")
        c.ehlo()
        if tls:
            c.starttls()
            c.ehlo()
        return c

    # -- greeting, EHLO, simple commands --------------------------------------
    def test_greeting_names_host(self):
        for name in ("mx", "submission", "submissions"):
            with self.srv.raw(name) as c:
                self.assertEqual(c.greeting.code, 220, name)
                self.assertIn(HOSTNAME, c.greeting.first, name)

    def test_ehlo_keywords_mx(self):
        with self.mx() as c:
            self.assertRegex(c.ehlo().first, "^250[ -]" + HOSTNAME.replace(".", r"\."))
            for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                       "STARTTLS"):
                self.assertIn(kw, c.esmtp, "mx EHLO before TLS lacks %s: %r" % (kw, c.esmtp))
            self.assertEqual(c.esmtp["SIZE"].strip(), str(MAX_SIZE))
            self.assertNotIn("PLAIN", c.auth_mechs(), "PLAIN offered in clear text")
            self.assertNotIn("LOGIN", c.auth_mechs(), "LOGIN offered in clear text")
            c.starttls()
            c.ehlo()
            self.assertNotIn("STARTTLS", c.esmtp)
            for m in ("PLAIN", "LOGIN", "CRAM-MD5"):
                self.assertIn(m, c.auth_mechs(), "mx after TLS: %r" % c.esmtp)

    def test_ehlo_keywords_submission(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8",
                       "STARTTLS"):
                self.assertIn(kw, c.esmtp, "submission EHLO lacks %s: %r" % (kw, c.esmtp))
            self.assertNotIn("PLAIN", c.auth_mechs())
            self.assertNotIn("LOGIN", c.auth_mechs())
            c.starttls()
            c.ehlo()
            self.assertNotIn("STARTTLS", c.esmtp)
            for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "AUTH"):
                self.assertIn(kw, c.esmtp)
            for m in ("PLAIN", "LOGIN", "CRAM-MD5"):
                self.assertIn(m, c.auth_mechs())

    def test_ehlo_keywords_submissions(self):
        with self.srv.raw("submissions") as c:
            c.ehlo()
            self.assertNotIn("STARTTLS", c.esmtp, "STARTTLS offered on implicit TLS")
            for kw in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "AUTH"):
                self.assertIn(kw, c.esmtp)
            for m in ("PLAIN", "LOGIN", "CRAM-MD5"):
                self.assertIn(m, c.auth_mechs())

    def test_helo(self):
        with self.srv.raw("mx") as c:
            r = c.cmd("HELO client.example.test")
            self.assertEqual(r.code, 250)
            self.assertEqual(len(r.lines), 1, "HELO reply must be one line: %r" % r)
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")

    def test_noop_rset_vrfy_help_quit(self):
        with self.mx() as c:
            for line, code in (("NOOP", 250), ("RSET", 250), ("VRFY alice@example.test", 252),
                               ("HELP", 214)):
                r = c.cmd(line)
                self.assertEqual(r.code, code, "%s: %r" % (line, r))
                assert_enhanced(r, line)
            r = c.cmd("VRFY nobody@example.test")
            self.assertEqual(r.code, 252, "VRFY must not tell which users exist: %r" % r)
            r = c.cmd("QUIT")
            self.assertEqual(r.code, 221)
            assert_enhanced(r, "QUIT")
            self.assertTrue(c.closed(5), "connection still open after QUIT")

    def test_rset_ends_transaction(self):
        with self.mx() as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            assert_reply(c.cmd("RSET"), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), R_BAD_SEQUENCE)
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")

    def test_unknown_command(self):
        with self.mx() as c:
            r = c.cmd("FROBNICATE now")
            self.assertIn(r.code, (500, 502), r)
            self.assertTrue(r.first[4:].startswith("5.5."), r)
            assert_reply(c.cmd("NOOP"), "250")

    def test_command_line_too_long(self):
        with self.mx() as c:
            r = c.cmd("NOOP " + "x" * 20000)
            assert_reply(r, "500 5.5.")

    def test_mail_before_ehlo(self):
        with self.srv.raw("mx") as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), R_BAD_SEQUENCE)

    def test_rcpt_and_data_out_of_order(self):
        with self.mx() as c:
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), R_BAD_SEQUENCE)
            assert_reply(c.cmd("DATA"), R_BAD_SEQUENCE)
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), R_BAD_SEQUENCE)
            r = c.cmd("DATA")      # RFC 5321 3.3: 503 or 554 "no valid recipients"
            self.assertIn(r.first[:9], ("503 5.5.1", "554 5.5.1"), r)

    def test_mail_parameters(self):
        with self.mx() as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test> SIZE=100 BODY=8BITMIME SMTPUTF8"),
                         "250")
            c.cmd("RSET")
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test> AUTH=<>"), "250")
            c.cmd("RSET")
            r = c.cmd("MAIL FROM:<someone@remote.test> FROB=1")
            self.assertIn(r.code, (501, 555), r)          # RFC 5321 4.1.1.11: 555 for unknown
            self.assertEqual(r.first[4:9], "5.5.4", r)
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test> SIZE=lots"), R_BAD_PARAM)
            r = c.cmd("MAIL FROM:someone-without-brackets")
            self.assertEqual(r.code, 501, r)
            assert_enhanced(r)

    def test_too_many_errors(self):
        with self.mx() as c:
            got = None
            for _ in range(100):
                r = c.cmd("FROBNICATE")
                if r.code == 421:
                    got = r
                    break
            self.assertIsNotNone(got, "no 421 after 100 bad commands")
            assert_reply(got, R_TOO_MANY_ERRORS + " " + HOSTNAME + " Too many errors")
            self.assertTrue(c.closed(5))

    def test_enhanced_status_codes_everywhere(self):
        """RFC 2034/3463: every reply but the greeting, EHLO/HELO, 334 and 354 has one."""
        with self.srv.raw("submission") as c:
            c.ehlo()
            c.cmd("NOOP")
            c.cmd("MAIL FROM:<alice@example.test>")
            c.cmd("AUTH PLAIN " + plain_b64("", ALICE.login, ALICE.password))
            c.cmd("VRFY x")
            c.cmd("HELP")
            c.cmd("FROB")
            c.starttls()
            c.ehlo()
            c.cmd("AUTH PLAIN " + plain_b64("", ALICE.login, "wrong"))
            c.cmd("AUTH FROB")
            c.cmd("AUTH PLAIN " + plain_b64("", ALICE.login, ALICE.password))
            c.cmd("MAIL FROM:<bob@example.test>")
            c.cmd("MAIL FROM:<alice@example.test> SIZE=%d" % (MAX_SIZE + 1))
            c.cmd("MAIL FROM:<alice@example.test>")
            c.cmd("RCPT TO:<x@remote.test>")
            c.data(b"Subject: x\r\n\r\ny\r\n")
            c.cmd("RSET")
            c.cmd("QUIT")
            replies = [d for who, d in c.transcript if who == "S"]
        checked = 0
        for raw in replies[1:]:                       # [0] is the greeting
            if raw.startswith((b"250-", b"334 ", b"354 ", b"250 " + HOSTNAME.encode())):
                continue                              # EHLO, challenges, DATA go-ahead
            assert_enhanced(Reply(int(raw[:3]), [], raw))
            checked += 1
        self.assertGreater(checked, 12)

    # -- mx: local delivery, relay rules --------------------------------------
    def test_mx_relay_denied(self):
        with self.mx() as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<victim@elsewhere.test>"), R_RELAY_DENIED)
        with self.mx(tls=True) as c:        # TLS alone does not allow relaying
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<victim@elsewhere.test>"), R_RELAY_DENIED)

    def test_mx_unknown_local_user(self):
        with self.mx() as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<nobody@example.test>"), R_NO_SUCH_USER)

    def test_mx_local_delivery_from_anyone(self):
        before = set(self.srv.messages(ALICE.login))
        msg = make_message("someone@remote.test", ALICE.login, "mx local delivery")
        with self.mx() as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            r = c.data(msg)
            assert_reply(r, R_QUEUED)
            mid = queued_id(r)
        self.assertIn(mid, self.srv.messages(ALICE.login))
        self.assertEqual(len(set(self.srv.messages(ALICE.login)) - before), 1)
        stored = self.srv.read_message(ALICE.login, mid)
        self.assertIn(b"mx local delivery", stored)
        self.assertEqual(headers(stored, "Return-Path"), ["<someone@remote.test>"])
        rec = " ".join(headers(stored, "Received"))
        self.assertIn("ESMTP", rec)
        self.assertNotIn("ESMTPSA", rec, "not authenticated, yet Received says ESMTPSA")

    def test_mx_alias_and_domain_owner(self):
        ids = []
        with self.mx() as c:
            for rcpt in ("al@example.test", "anything@alice-corp.test", "dave@example.org"):
                assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
                assert_reply(c.cmd("RCPT TO:<%s>" % rcpt), "250", rcpt)
                r = c.data(make_message("someone@remote.test", rcpt, "to " + rcpt))
                assert_reply(r, R_QUEUED)
                ids.append(queued_id(r))
        self.assertIn(ids[0], self.srv.messages(ALICE.login))
        self.assertIn(ids[1], self.srv.messages(ALICE.login))
        self.assertIn(ids[2], self.srv.messages(DAVE.login))

    def test_mx_two_inboxes_same_id(self):
        with self.mx(tls=True) as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<bob@example.test>"), "250")
            r = c.data(make_message("someone@remote.test", "alice@example.test", "two inboxes"))
            assert_reply(r, R_QUEUED)
            mid = queued_id(r)
        self.assertIn(mid, self.srv.messages(ALICE.login))
        self.assertIn(mid, self.srv.messages(BOB.login))
        rec = " ".join(headers(self.srv.read_message(BOB.login, mid), "Received"))
        self.assertIn("ESMTPS", rec, "TLS session, Received lacks ESMTPS (RFC 3848)")
        self.assertNotIn("ESMTPSA", rec)

    def test_mx_relay_after_auth_is_captured(self):
        with self.mx(tls=True) as c:
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<friend@elsewhere.test>"), "250")
            r = c.data(make_message("alice@example.test", "friend@elsewhere.test", "relay"))
            assert_reply(r, R_QUEUED)
            mid = queued_id(r)
        stored = self.srv.read_message(ALICE.login, mid)
        rec = " ".join(headers(stored, "Received"))
        self.assertIn("ESMTPSA", rec)
        self.assertIn(ALICE.login, rec)

    # -- submission -----------------------------------------------------------
    def test_submission_requires_auth(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            r = c.cmd("MAIL FROM:<alice@example.test>")
            self.assertEqual(r.code, 530, "MAIL before STARTTLS/AUTH on submission: %r" % r)
            assert_reply(r, "530 5.7.0")
            c.starttls()
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), R_AUTH_REQUIRED)
        with self.srv.raw("submissions") as c:
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), R_AUTH_REQUIRED)
            # not even for a local recipient
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), R_AUTH_REQUIRED)

    def test_sender_not_owned(self):
        with self.authed("submissions") as c:
            assert_reply(c.cmd("MAIL FROM:<bob@example.test>"),
                         R_SENDER_NOT_OWNED + " " + ALICE.login)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test.evil>"), R_SENDER_NOT_OWNED)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
        with self.authed("submission") as c:
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), R_SENDER_NOT_OWNED)

    def test_sender_owned_alias_domain_case(self):
        with self.authed("submissions") as c:
            for sender in ("al@example.test", "whoever@alice-corp.test", "alice@EXAMPLE.TEST"):
                assert_reply(c.cmd("MAIL FROM:<%s>" % sender), "250", sender)
                c.cmd("RSET")

    def test_sender_login_not_an_address(self):
        with self.authed("submissions", DAVE) as c:
            assert_reply(c.cmd("MAIL FROM:<dave@example.org>"), "250")
            c.cmd("RSET")
            assert_reply(c.cmd("MAIL FROM:<dave@example.test>"), R_SENDER_NOT_OWNED + " dave")

    def test_sender_policy_off_listener(self):
        with self.authed("sub_open") as c:
            assert_reply(c.cmd("MAIL FROM:<bob@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<someone@remote.test>"), "250")
            r = c.data(make_message("bob@example.test", "someone@remote.test", "policy off"))
            assert_reply(r, R_QUEUED)
            self.assertIn(queued_id(r), self.srv.messages(ALICE.login))

    def test_auth_mail_parameter(self):
        with self.authed("submissions") as c:
            for param in ("AUTH=<>", "AUTH=alice@example.test"):
                assert_reply(c.cmd("MAIL FROM:<alice@example.test> " + param), "250", param)
                assert_reply(c.cmd("RCPT TO:<someone@remote.test>"), "250")
                r = c.data(make_message("alice@example.test", "someone@remote.test", param))
                assert_reply(r, R_QUEUED)

    # -- limits ----------------------------------------------------------------
    def test_size_declared_too_big(self):
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> SIZE=%d" % (MAX_SIZE + 1)), R_TOO_BIG)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> SIZE=%d" % (MAX_SIZE // 2)), "250")

    def test_size_actual_too_big(self):
        before = self.srv.all_messages()
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<someone@remote.test>"), "250")
            body = ("x" * 70 + "\r\n") * (2 * MAX_SIZE // 72)
            r = c.data(make_message("alice@example.test", "someone@remote.test", "big", body))
            assert_reply(r, R_TOO_BIG)
            assert_reply(c.cmd("NOOP"), "250")   # the session goes on
        self.assertEqual(self.srv.all_messages(), before, "an oversized message was stored")

    def test_too_many_recipients(self):
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            for i in range(MAX_RCPTS):
                assert_reply(c.cmd("RCPT TO:<r%d@remote.test>" % i), "250")
            assert_reply(c.cmd("RCPT TO:<one-too-many@remote.test>"), R_TOO_MANY_RCPTS)
            r = c.data(make_message("alice@example.test", "r0@remote.test", "max rcpts"))
            assert_reply(r, R_QUEUED)

    def test_pipelining(self):
        with self.authed() as c:
            c.send("MAIL FROM:<alice@example.test>\r\nRCPT TO:<p1@remote.test>\r\n"
                   "RCPT TO:<p2@remote.test>\r\nDATA\r\n")
            codes = [c.read_reply().code for _ in range(4)]
            self.assertEqual(codes, [250, 250, 250, 354])
            c.send(make_message("alice@example.test", "p1@remote.test", "pipelined") + b".\r\n")
            r = c.read_reply()
            assert_reply(r, R_QUEUED)
            # two transactions on one connection get distinct ids
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<p1@remote.test>"), "250")
            r2 = c.data(make_message("alice@example.test", "p1@remote.test", "second"))
            assert_reply(r2, R_QUEUED)
            self.assertNotEqual(queued_id(r), queued_id(r2))

    # -- STARTTLS (RFC 3207, CVE-2011-0411) -------------------------------------
    def test_starttls_discards_pipelined_input(self):
        with self.srv.raw("mx") as c:
            c.ehlo()
            c.send("STARTTLS\r\nEHLO evil.example\r\nMAIL FROM:<evil@remote.test>\r\n")
            r = c.read_reply()
            self.assertEqual(r.code, 220, r)
            self.assertEqual(c.buf, b"", "replies after 220 to STARTTLS: %r" % c.buf)
            c.sock = c.context.wrap_socket(c.sock, server_hostname=HOSTNAME)
            self.assertEqual(c.pending(0.5), b"", "injected commands were answered over TLS")
            # EHLO forgotten and the injected EHLO not executed:
            assert_reply(c.cmd("MAIL FROM:<ok@remote.test>"), R_BAD_SEQUENCE)
            c.ehlo()
            # the injected MAIL was not executed either (no nested MAIL):
            assert_reply(c.cmd("MAIL FROM:<ok@remote.test>"), "250")

    def test_starttls_injected_auth_not_executed(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            c.send("STARTTLS\r\nEHLO evil.example\r\nAUTH PLAIN %s\r\n"
                   % plain_b64("", ALICE.login, ALICE.password))
            r = c.read_reply()
            self.assertEqual(r.code, 220, r)
            c.sock = c.context.wrap_socket(c.sock, server_hostname=HOSTNAME)
            self.assertEqual(c.pending(0.5), b"")
            c.ehlo()
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK,
                         "AUTH after STARTTLS (an injected AUTH must not have run)")

    def test_starttls_misuse(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            r = c.cmd("STARTTLS now")
            self.assertEqual(r.code, 501, r)
            c.starttls()
            c.ehlo()
            r = c.cmd("STARTTLS")
            self.assertGreaterEqual(r.code, 500, "second STARTTLS: %r" % r)
        with self.srv.raw("submissions") as c:
            c.ehlo()
            r = c.cmd("STARTTLS")
            self.assertGreaterEqual(r.code, 500, "STARTTLS on implicit TLS: %r" % r)


if __name__ == "__main__":
    unittest.main()
