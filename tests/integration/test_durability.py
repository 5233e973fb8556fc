"""Issue 5, durability: a 250 after DATA means the message is on disk. Several clients send
messages in a loop, the server is killed with SIGKILL in the middle, started again on the same
data dir, and every message that got a 250 must be in <data-dir>/mail/<login>/new/ byte-intact;
no file in new/ may be partial. SIGTERM: sessions in DATA finish (and get their 250), idle ones
are closed with 421 4.3.2, then the server exits 0."""

import hashlib
import os
import random
import re
import signal
import socket
import threading
import time
import unittest

from harness import (ALICE, BOB, HOST, R_AUTH_OK, R_QUEUED, STD_USERS, Server, assert_reply,
                     dot_stuff_bytes, plain_b64, queued_id, split_message)
from sec_util import PLAIN_SUBMISSION, connect, sigkill_and_restart

TOKEN_RE = re.compile(rb"X-Sec-Token: (\S+) len=(\d+) sha256=([0-9a-f]{64})\r?\n")


def make_body(token, size):
    """A message whose header names a token, the payload length and its SHA-256, and whose
    last line is an end marker: a file holding it is complete iff the checksum matches and the
    marker is there."""
    rnd = random.Random(token)
    lines = []
    n = 0
    while n < size:
        ln = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789 .-") for _ in range(76))
        lines.append(ln.encode())
        n += 78
    payload = b"\r\n".join(lines) + b"\r\n"
    head = ("From: <alice@example.test>\r\nTo: <sink@remote.test>\r\nSubject: durability %s\r\n"
            "X-Sec-Token: %s len=%d sha256=%s\r\n\r\n"
            % (token, token, len(payload), hashlib.sha256(payload).hexdigest())).encode()
    return head + payload + ("END-OF-%s\r\n" % token).encode()


def check_file(data):
    """(token, problem or None) for one stored file."""
    m = TOKEN_RE.search(data)
    if not m:
        return None, "no X-Sec-Token header (partial header block?)"
    token, ln, digest = m.group(1).decode(), int(m.group(2)), m.group(3).decode()
    body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    end = ("END-OF-%s\r\n" % token).encode()
    if not data.endswith(end):
        return token, "does not end with its end marker (truncated)"
    payload = body[:-len(end)]
    if len(payload) != ln or hashlib.sha256(payload).hexdigest() != digest:
        return token, "payload length/checksum mismatch (%d vs %d)" % (len(payload), ln)
    return token, None


class Durability(unittest.TestCase):

    def test_sigkill_mid_run_loses_no_acknowledged_message(self):
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION}) as srv:
            acked = {}                     # token -> (id, body)
            lock = threading.Lock()
            errors = []
            stop = threading.Event()
            killed = threading.Event()

            def client(k):
                i = 0
                try:
                    c = connect(srv, "submission", timeout=10)
                    c.ehlo()
                    assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
                    while not stop.is_set():
                        i += 1
                        token = "t%d-%d-%d" % (os.getpid(), k, i)
                        body = make_body(token, random.Random(token).randrange(200, 60000))
                        assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
                        assert_reply(c.cmd("RCPT TO:<sink@remote.test>"), "250")
                        r = c.data(body)
                        assert_reply(r, R_QUEUED)
                        with lock:
                            acked[token] = (queued_id(r), body)
                except (ConnectionError, socket.timeout, OSError, AssertionError) as e:
                    if not killed.is_set():
                        errors.append("client %d before the kill: %r" % (k, e))

            threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60       # generous: an ASan build on a busy machine
            while len(acked) < 150 and time.monotonic() < deadline:
                time.sleep(0.01)
            n_before = len(acked)
            self.assertGreaterEqual(n_before, 150, "only %d messages acknowledged in 60 s: %r"
                                    % (n_before, errors))
            killed.set()
            sigkill_and_restart(srv)       # while the clients are in the middle of DATA
            stop.set()
            for t in threads:
                t.join(15)
            self.assertEqual(errors, [])

            new = os.path.join(srv.maildir(ALICE.login), "new")
            files = {n: open(os.path.join(new, n), "rb").read() for n in os.listdir(new)
                     if not n.startswith(".")}
            by_token = {}
            for name, data in files.items():
                token, problem = check_file(data)
                self.assertIsNone(problem, "new/%s: %s" % (name, problem))
                by_token[token] = name
            for token, (mid, body) in sorted(acked.items()):
                path = srv.message_path(ALICE.login, mid)        # the id from the 250 reply
                with open(path, "rb") as f:
                    split_message(f.read(), body)                 # byte-exact after our headers
                self.assertIn(token, by_token)
                self.assertTrue(by_token[token].startswith(mid), (token, mid, by_token[token]))
            self.assertGreaterEqual(len(files), len(acked))
            self.assertLessEqual(len(files), len(acked) + len(threads),
                                 "more files than messages sent")
            # the restarted server works
            with connect(srv, "submission") as c:
                c.ehlo()
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
                assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
                assert_reply(c.cmd("RCPT TO:<after@remote.test>"), "250")
                body = make_body("after-restart", 1000)
                r = c.data(body)
                assert_reply(r, R_QUEUED)
                split_message(srv.read_message(ALICE.login, queued_id(r)), body)

    def test_sigterm_lets_data_finish(self):
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION}) as srv:
            idle = connect(srv, "submission")
            idle.ehlo()
            c = connect(srv, "submission")
            c.ehlo()
            assert_reply(c.auth_plain(BOB.login, BOB.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<bob@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<sink@remote.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            body = make_body("sigterm", 20000)
            wire = dot_stuff_bytes(body)
            half = len(wire) // 2
            c.send(wire[:half])
            time.sleep(0.2)
            proc = srv.proc
            proc.send_signal(signal.SIGTERM)
            # the idle session is told and closed; new connections are not served
            assert_reply(idle.read_reply(timeout=15), "421 4.3.2")
            self.assertTrue(idle.closed(10))
            idle.close()
            try:
                late = connect(srv, "submission", timeout=1)
                got = late.greeting
                late.close()
                self.assertNotEqual(got.code, 220, "a new session was greeted after SIGTERM")
            except (OSError, ConnectionError, AssertionError, socket.timeout) as e:
                if isinstance(e, AssertionError) and "greeted" in str(e):
                    raise
            time.sleep(1.0)
            self.assertIsNone(proc.poll(), "the server exited while a session was in DATA")
            c.send(wire[half:] + b".\r\n")
            r = c.read_reply(timeout=5)
            assert_reply(r, R_QUEUED, "the message in DATA at SIGTERM")
            c.close()
            try:
                rc = proc.wait(8)
            except Exception:
                self.fail("the server did not exit after the last session")
            self.assertEqual(rc, 0, "exit status after SIGTERM")
            split_message(srv.read_message(BOB.login, queued_id(r)), body)
            srv.proc = None
            srv._stopped_rc = rc
            from harness import ACTIVE
            if srv in ACTIVE:
                ACTIVE.remove(srv)

    def test_sigterm_does_not_wait_for_idle_sessions(self):
        """Only sessions in DATA may hold the shutdown up: idle ones, one in an AUTH exchange,
        one in its failure delay and connections that never finish their TLS handshake
        (implicit TLS, or after STARTTLS) are closed at once and the server exits 0."""
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION,
                                                "starttls": "submission",
                                                "submissions": "submissions"},
                    settings={"auth_fail_delay_ms": 6000, "throttle_max_delay_ms": 6000}) as srv:
            idle = connect(srv, "submission")
            idle.ehlo()
            in_auth = connect(srv, "submission")
            in_auth.ehlo()
            assert_reply(in_auth.cmd("AUTH LOGIN"), "334")
            delayed = connect(srv, "submission")
            delayed.ehlo()
            delayed.send(("AUTH PLAIN %s\r\n" % plain_b64("", ALICE.login, "wrong")).encode())
            no_hello = socket.create_connection((HOST, srv.ports["submissions"]), timeout=5)
            half_tls = connect(srv, "starttls")
            half_tls.ehlo()
            assert_reply(half_tls.cmd("STARTTLS"), "220")
            # the failed AUTH is in its 6 s delay (the server logged the failure)
            srv.wait_events(lambda s: s.events("auth", result="fail"), what="the failed AUTH")
            proc = srv.proc
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(30)
            except Exception:
                rc = None
            for c in (idle, in_auth, delayed, half_tls):
                c.close()
            no_hello.close()
            if rc is None:
                proc.kill()
                proc.wait(5)
            srv.proc = None
            srv._stopped_rc = proc.returncode
            from harness import ACTIVE
            if srv in ACTIVE:
                ACTIVE.remove(srv)
            self.assertIsNotNone(rc, "server still running 30 s after SIGTERM")
            self.assertEqual(rc, 0)
            # from the server's log: SIGTERM received (event=stop) to event=stopped; waiting for
            # the failure delay would take most of its 6 s, for a DATA session 10 s
            stop, stopped = srv.events("stop"), srv.events("stopped")
            self.assertTrue(stop and stopped, "no event=stop / event=stopped in the log")
            dt = stopped[-1].t - stop[-1].t
            self.assertLess(dt, 3.0, "SIGTERM with no session in DATA took %.1fs to exit" % dt)


if __name__ == "__main__":
    unittest.main()
