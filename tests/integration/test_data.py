"""DATA: only CRLF.CRLF ends it (SMTP smuggling, CVE-2023-51764 family), bare LF refused by
default and normalized on request, dot-unstuffing and 8-bit content byte-exact on disk, the
headers we add (Return-Path, Received with ESMTPSA and the login), the durable Maildir."""

import os
import unittest

from harness import (ALICE, BOB, R_AUTH_OK, R_QUEUED, STD_USERS, ServerTestCase, assert_reply,
                     header_block, headers, make_message, queued_id, split_message)

SMUGGLE_ENDINGS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r"]


class Data(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {
        "mx": "mx",
        "submissions": "submissions",
        "mx_norm": {"role": "mx", "bare_lf": "normalize"},
        "subs_norm": {"role": "submissions", "bare_lf": "normalize"},
    }

    def authed(self, name="submissions", user=ALICE):
        c = self.srv.raw(name)
        c.ehlo()
        assert_reply(c.auth_plain(user.login, user.password), R_AUTH_OK)
        return c

    def submit(self, message, name="submissions", rcpt="someone@remote.test", dot_stuff=True):
        with self.authed(name) as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME"), "250")
            assert_reply(c.cmd("RCPT TO:<%s>" % rcpt), "250")
            r = c.data(message, dot_stuff=dot_stuff)
            assert_reply(r, R_QUEUED)
            return queued_id(r)

    # -- what lands on disk ---------------------------------------------------------
    def test_stored_with_added_headers(self):
        msg = make_message(ALICE.login, "someone@remote.test", "added headers")
        mid = self.submit(msg)
        self.assertIn(mid, self.srv.messages(ALICE.login))
        stored = self.srv.read_message(ALICE.login, mid)
        added, _ = split_message(stored, msg)
        self.assertTrue(added, "no header added in front of the client's message")
        self.assertEqual(headers(stored, "Return-Path"), ["<alice@example.test>"])
        rec = headers(stored, "Received")
        self.assertTrue(rec, "no Received header")
        self.assertIn("ESMTPSA", rec[0])
        self.assertIn(ALICE.login, rec[0])
        self.assertIn(self.srv.hostname, rec[0])
        self.assertIn(mid, self.srv.messages(ALICE.login))
        tmp = os.path.join(self.srv.maildir(ALICE.login), "tmp")
        self.assertEqual(os.listdir(tmp) if os.path.isdir(tmp) else [], [], "left-overs in tmp/")

    def test_dot_unstuffing_byte_exact(self):
        body = (b".leading dot\r\n..two dots\r\n.\r\n...\r\n .space dot\r\n"
                b"end.\r\n.\r\nlast line\r\n")
        msg = make_message(ALICE.login, "x@remote.test", "dots", body.decode())
        mid = self.submit(msg)                       # the client dot-stuffs
        split_message(self.srv.read_message(ALICE.login, mid), msg)

    def test_eight_bit_and_utf8_byte_exact(self):
        body = "Grüße, ½ €, 日本語\r\n".encode() + bytes(range(0x80, 0x100)) + b"\r\n"
        msg = b"Subject: =?utf-8?q?8bit?=\r\nFrom: alice@example.test\r\n\r\n" + body
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> BODY=8BITMIME SMTPUTF8"), "250")
            assert_reply(c.cmd("RCPT TO:<jörg@remote.test>"), "250")
            r = c.data(msg)
            assert_reply(r, R_QUEUED)
        split_message(self.srv.read_message(ALICE.login, queued_id(r)), msg)

    def test_message_without_trailing_newline_in_body(self):
        # the last line before CRLF.CRLF is kept whole
        msg = b"Subject: short\r\n\r\nno more"
        mid = self.submit(msg)
        stored = self.srv.read_message(ALICE.login, mid)
        self.assertTrue(stored.replace(b"\r\n", b"\n").endswith(b"\n\nno more\n"), stored[-50:])

    def test_parallel_sessions(self):
        """20 clients at once (hashing and fsync off the event loop): all stored, ids distinct."""
        import threading
        results, errors = [], []

        def one(i):
            try:
                msg = make_message(ALICE.login, "p%d@remote.test" % i, "parallel %d" % i)
                with self.authed() as c:
                    assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
                    assert_reply(c.cmd("RCPT TO:<p%d@remote.test>" % i), "250")
                    results.append((queued_id(c.data(msg)), msg))
            except Exception as e:            # reported below
                errors.append("%d: %r" % (i, e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 20)
        self.assertEqual(len({mid for mid, _ in results}), 20, "duplicate ids")
        for mid, msg in results:
            split_message(self.srv.read_message(ALICE.login, mid), msg)

    # -- smuggling: only CRLF.CRLF ends DATA ------------------------------------
    def smuggle(self, name, ending, auth):
        """Send a message containing `ending` followed by a second, smuggled transaction to bob.
        Returns (final reply, messages stored for bob during the call, for alice)."""
        bob_before = set(self.srv.messages(BOB.login))
        alice_before = set(self.srv.messages(ALICE.login))
        c = self.authed(name) if auth else self.srv.raw(name)
        with c:
            if not auth:
                c.ehlo()
            sender = "alice@example.test" if auth else "someone@remote.test"
            assert_reply(c.cmd("MAIL FROM:<%s>" % sender), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            c.send(b"Subject: smuggle test\r\n\r\nfirst part" + ending +
                   b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                   b"Subject: smuggled\r\n\r\nsmuggled body\r\n")
            self.assertEqual(c.pending(0.4), b"",
                             "%r ended DATA on %s (the server answered)" % (ending, name))
            c.send(b".\r\n")
            r = c.read_reply()
            extra = c.pending(0.3)
            self.assertEqual(extra, b"", "more replies after the end of data: %r" % extra)
        bob_new = set(self.srv.messages(BOB.login)) - bob_before
        alice_new = set(self.srv.messages(ALICE.login)) - alice_before
        self.assertEqual(bob_new, set(), "a smuggled message reached bob with %r" % ending)
        return r, alice_new

    def test_bare_endings_never_end_data_default(self):
        for ending in SMUGGLE_ENDINGS:
            for name, auth in (("mx", False), ("submissions", True)):
                with self.subTest(ending=ending, listener=name):
                    r, alice_new = self.smuggle(name, ending, auth)
                    self.assertGreaterEqual(r.code, 500,
                                            "bare CR/LF accepted by default (%r): %r" % (ending, r))
                    self.assertLess(r.code, 600)
                    self.assertEqual(alice_new, set(), "refused message was stored")

    def test_bare_lf_normalize_still_not_end_of_data(self):
        for ending in (b"\n.\n", b"\n.\r\n", b"\r\n.\n"):
            for name, auth in (("mx_norm", False), ("subs_norm", True)):
                with self.subTest(ending=ending, listener=name):
                    r, alice_new = self.smuggle(name, ending, auth)
                    assert_reply(r, R_QUEUED, "bare LF with bare_lf=normalize")
                    self.assertEqual(alice_new, {queued_id(r)})
                    stored = self.srv.read_message(ALICE.login, queued_id(r))
                    self.assertIn(b"smuggled body", stored)
                    self.assertIn(b"RCPT TO:<bob@example.test>", stored)

    def test_bare_cr_never_a_line_end_with_normalize(self):
        for ending in (b"\r.\r\n", b"\r.\r"):
            with self.subTest(ending=ending):
                r, alice_new = self.smuggle("subs_norm", ending, True)
                self.assertLessEqual(len(alice_new), 1)

    def test_bare_lf_in_headers(self):
        msg = b"Subject: bare lf\nFrom: alice@example.test\r\n\r\nbody\nmore\r\n"
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
            r = c.data(msg)
            self.assertTrue(500 <= r.code < 600, "bare LF accepted by default: %r" % r)
        with self.authed("subs_norm") as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
            r = c.data(msg)
            assert_reply(r, R_QUEUED)
        stored = self.srv.read_message(ALICE.login, queued_id(r))
        self.assertIn("Subject: bare lf", header_block(stored))
        self.assertIn("From: alice@example.test", header_block(stored),
                      "normalized bare LF not treated as a line end")
        if b"\r\n" in stored:
            self.assertNotRegex(stored, rb"[^\r]\n", "normalize left a bare LF in a CRLF file")

    def test_session_continues_after_refused_message(self):
        with self.authed() as c:
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
            r = c.data(b"Subject: x\n\nbare\n")
            self.assertGreaterEqual(r.code, 500)
            try:
                r2 = c.cmd("MAIL FROM:<alice@example.test>")
            except (ConnectionError, OSError):
                return                           # closing after a smuggling attempt is fine
            if r2.code != 421:
                assert_reply(r2, "250")
                assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
                assert_reply(c.data(b"Subject: fine\r\n\r\nfine\r\n"), R_QUEUED)


if __name__ == "__main__":
    unittest.main()
