"""Issue 5, limits and resource exhaustion: command line length, a 1 MB line without CRLF,
recipients per message, message size (declared and actual), errors per session, unknown
commands, connections per address and in total, 1,000 idle connections, slowloris, and the
command / DATA / TLS handshake / session timeouts. A normal session from another loopback
address must keep completing promptly."""

import socket
import threading
import time
import unittest

from harness import (ALICE, HOST, R_AUTH_OK, R_QUEUED, R_TOO_BIG, R_TOO_MANY_RCPTS, STD_USERS,
                     Server, ServerTestCase, assert_reply, plain_b64)
from sec_util import PLAIN_SUBMISSION, connect, raise_nofile, wait_for

R_LINE_TOO_LONG = "500 5.5.2"
R_421_ERRORS = "421 4.7.0 %s Too many errors, closing connection"
R_421_CONNS = "421 4.7.0 %s Too many connections"
R_421_TIMEOUT = "421 4.4.2 %s Timeout"


# A normal session "completes promptly" when the server took less than this from accepting it
# to its end (its own event=disconnect duration_ms): a loop blocked by another client takes
# that client's whole stall; a busy two-core machine with a sanitizer build stays well under.
PROMPT = 5.0


def normal_session(srv, src="127.0.0.2", name="submission", with_sid=False):
    """Greeting, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT from `src`. Returns the seconds the
    server took from accepting the connection to closing it (its log), and the session id
    too when with_sid."""
    with connect(srv, name, src=src, timeout=30) as c:
        sid = srv.sid_of(c)
        c.ehlo()
        assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK, "normal session")
        assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
        assert_reply(c.cmd("RCPT TO:<friend@remote.test>"), "250")
        assert_reply(c.data(b"Subject: normal\r\n\r\nstill served\r\n"), R_QUEUED)
        assert_reply(c.cmd("QUIT"), "221")
    dt = int(srv.session_end(sid).fields["duration_ms"]) / 1000.0
    return (dt, sid) if with_sid else dt


class Limits(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {"submission": PLAIN_SUBMISSION, "mx": "mx"}
    SETTINGS = {"max_recipients": 5, "max_message_size": "64k"}

    def test_command_line_too_long_session_goes_on(self):
        with connect(self.srv, "mx") as c:
            c.ehlo()
            assert_reply(c.cmd("NOOP " + "x" * 4000), "250", "a 4005-octet line is allowed")
            assert_reply(c.cmd("NOOP " + "x" * 5000), R_LINE_TOO_LONG)
            assert_reply(c.cmd("MAIL FROM:<" + "a" * 5000 + "@example.test>"), R_LINE_TOO_LONG)
            assert_reply(c.cmd("NOOP"), "250")
            assert_reply(c.cmd("MAIL FROM:<someone@remote.test>"), "250",
                         "the long MAIL line must not have started a transaction")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            assert_reply(c.data(b"Subject: after long lines\r\n\r\nok\r\n"), R_QUEUED)

    def test_one_megabyte_line_without_crlf(self):
        c = connect(self.srv, "mx")
        with c:
            c.ehlo()
            c.send(b"A" * (1 << 20))             # no CRLF
            r = c.read_reply(timeout=5)
            assert_reply(r, R_LINE_TOO_LONG, "1 MB without CRLF")
            # others are served meanwhile
            self.assertLess(normal_session(self.srv), PROMPT)
            c.send(b"B" * (1 << 20))             # still the same line: discarded quietly
            dt = normal_session(self.srv)
            self.assertLess(dt, PROMPT)
            c.send(b"\r\n")                      # the end of the overlong line
            assert_reply(c.cmd("NOOP"), "250", "the first command after the overlong line")
            assert_reply(c.cmd("EHLO again.example.test"), "250")
        # the same inside an AUTH exchange: 500 5.5.6, then the session goes on
        with connect(self.srv, "submission") as c:
            c.ehlo()
            c.send(b"AUTH PLAIN " + b"Q" * (1 << 20))
            assert_reply(c.read_reply(timeout=5), "500 5.5.6")
            c.send(b"\r\n")
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)

    def test_recipients_limit(self):
        with connect(self.srv, "submission") as c:
            c.ehlo()
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            for i in range(5):
                assert_reply(c.cmd("RCPT TO:<r%d@remote.test>" % i), "250")
            assert_reply(c.cmd("RCPT TO:<r5@remote.test>"), R_TOO_MANY_RCPTS)
            assert_reply(c.cmd("RCPT TO:<r6@remote.test>"), R_TOO_MANY_RCPTS)
            r = c.data(b"Subject: five rcpts\r\n\r\nx\r\n")
            assert_reply(r, R_QUEUED)
            stored = self.srv.read_message(ALICE.login, r.first.split()[-1])
            self.assertEqual(stored.count(b"X-Smtpgate-Rcpt:"), 5)

    def test_message_size_declared_and_actual(self):
        srv = self.srv
        with connect(srv, "submission") as c:
            c.ehlo()
            self.assertEqual(c.esmtp.get("SIZE"), str(64 * 1024))
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> SIZE=70000"), R_TOO_BIG,
                         "declared SIZE over the limit")
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> SIZE=99999999999999999999"),
                         "5", "absurd SIZE")
            before = set(srv.messages(ALICE.login))
            assert_reply(c.cmd("MAIL FROM:<alice@example.test> SIZE=1000"), "250")
            assert_reply(c.cmd("RCPT TO:<big@remote.test>"), "250")
            body = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 70    # ~70 KB
            r = c.data(body)
            assert_reply(r, R_TOO_BIG, "actual size over the limit")
            self.assertEqual(set(srv.messages(ALICE.login)), before, "the big message was stored")
            assert_reply(c.cmd("NOOP"), "250")
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<small@remote.test>"), "250")
            assert_reply(c.data(b"Subject: small\r\n\r\nok\r\n"), R_QUEUED)

    def test_errors_per_session(self):
        with connect(self.srv, "mx") as c:
            c.ehlo()
            for i in range(9):
                assert_reply(c.cmd("BOGUS%d" % i), "500 5.5.2", "error %d" % (i + 1))
            r = c.cmd("BOGUS9")
            assert_reply(r, "500 5.5.2", "10th error")
            assert_reply(c.read_reply(), R_421_ERRORS % self.srv.hostname)
            self.assertTrue(c.closed(3), "still open after the 421")

    def test_unknown_commands(self):
        cmds = ["FOO", "EXPN root", "TURN", "ETRN example.test", "XCLIENT ADDR=10.0.0.1",
                "XFORWARD ADDR=10.0.0.1", "BDAT 10 LAST", "ATRN", "GET / HTTP/1.0",
                "POST /cgi-bin/x HTTP/1.1", "\x01\x02\x03", "MAI L FROM:<a@b.test>",
                "MAILFROM:<a@b.test>", "EHLO\x00x", "NOOP\x00"]
        for i in range(0, len(cmds), 5):
            with connect(self.srv, "mx") as c:
                c.ehlo()
                for cmd in cmds[i:i + 5]:
                    r = c.cmd(cmd.encode("latin-1"))
                    self.assertIn(r.code, (500, 502), "%r -> %r" % (cmd, r))
                    self.assertRegex(r.first, r"^50[02] 5\.5\.[12] ", "%r -> %r" % (cmd, r))
                assert_reply(c.cmd("NOOP"), "250")


class Connections(unittest.TestCase):

    def test_per_address_and_total_limits(self):
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"max_connections_per_ip": 5, "max_connections": 8}) as srv:
            held = [connect(srv, "submission") for _ in range(5)]
            for c in held:
                assert_reply(c.greeting, "220")
            extra = connect(srv, "submission")
            assert_reply(extra.greeting, R_421_CONNS % srv.hostname, "6th from 127.0.0.1")
            self.assertTrue(extra.closed(3))
            extra.close()
            # normal_session waits for the server's event=disconnect: that slot is free again
            self.assertLess(normal_session(srv, src="127.0.0.2"), PROMPT)
            # then fill the server up to 8
            held += [connect(srv, "submission", src=s) for s in ("127.0.0.2", "127.0.0.3",
                                                                   "127.0.0.4")]
            for c in held:
                assert_reply(c.greeting, "220")
            extra = connect(srv, "submission", src="127.0.0.5")
            assert_reply(extra.greeting, R_421_CONNS % srv.hostname, "9th connection in total")
            extra.close()
            # a slot freed is a slot usable again
            held.pop(0).quit()
            c = wait_for(lambda: self._greeted(srv, "127.0.0.1"), timeout=30)
            self.assertTrue(c, "no 220 from 127.0.0.1 after one of its connections closed")
            c.close()
            for c in held:
                c.close()
            self.assertIn("reason=max_connections_per_ip", srv.log())

    def test_connection_slots_released_however_sessions_end(self):
        """Per-address slots come back whatever way a session ends: QUIT, EOF mid-command,
        reset during DATA, during the AUTH failure delay, during a TLS handshake, after
        too many errors, after a timeout."""
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION,
                                                "submissions": "submissions"},
                    settings={"max_connections_per_ip": 3, "auth_fail_delay_ms": 300,
                              "throttle_max_delay_ms": 300, "timeout_command_ms": 1000,
                              "timeout_tls_ms": 1000, "max_errors": 2}) as srv:
            def rst(c):
                import struct
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()

            for _ in range(2):
                c = connect(srv, "submission")                 # QUIT
                c.quit()
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                c = connect(srv, "submission")                 # EOF in the middle of a line
                c.send(b"EHL")
                c.close()
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                c = connect(srv, "submission")                 # reset during DATA
                c.ehlo()
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
                c.cmd("MAIL FROM:<alice@example.test>")
                c.cmd("RCPT TO:<x@remote.test>")
                c.cmd("DATA")
                c.send(b"Subject: x\r\n\r\npartial")
                rst(c)
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                c = connect(srv, "submission")                 # reset during the failure delay
                c.ehlo()
                c.send(b"AUTH PLAIN " + plain_b64("", ALICE.login, "wrong").encode() + b"\r\n")
                time.sleep(0.05)
                rst(c)
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                s = socket.create_connection((HOST, srv.ports["submissions"]))
                s.send(b"\x16\x03\x01\x00\x05hello")          # half a ClientHello
                s.close()
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                c = connect(srv, "submission")                 # too many errors (max_errors 2)
                c.cmd("X")
                c.send(b"Y\r\n")
                c.close()
                srv.wait_sessions_ended(timeout=60)      # one step's sessions at a time
                c = connect(srv, "submission")                 # command timeout
                c.closed(5)
                c.close()
            # every session has ended on the server's side (its event=disconnect lines), however
            # long that took on this machine: now the 3 slots must be free
            srv.wait_sessions_ended(timeout=60)
            held = []
            for i in range(3):
                c = connect(srv, "submission")
                held.append(c)
                assert_reply(c.greeting, "220", "connection %d after the sessions ended" % (i + 1))
            for c in held:
                c.close()

    @staticmethod
    def _greeted(srv, src):
        c = connect(srv, "submission", src=src)
        if c.greeting.code == 220:
            return c
        c.close()
        return None

    def test_thousand_idle_connections(self):
        n = 1000
        raise_nofile(n + 500)
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"max_connections_per_ip": n + 50}) as srv:
            socks = []
            try:
                for _ in range(n):
                    socks.append(socket.create_connection((HOST, srv.ports["submission"]),
                                                          timeout=10,
                                                          source_address=("127.0.0.1", 0)))
                dt = normal_session(srv, src="127.0.0.2")
                self.assertLess(dt, PROMPT, "normal session took %.2fs with %d idle connections"
                                % (dt, n))
                greeted = 0
                for s in socks:
                    s.settimeout(5)
                    if s.recv(512).startswith(b"220 "):
                        greeted += 1
                self.assertEqual(greeted, n, "idle connections greeted")
                dt = normal_session(srv, src="127.0.0.3")
                self.assertLess(dt, PROMPT)
            finally:
                for s in socks:
                    s.close()

    def test_slowloris_does_not_block_others(self):
        # the slow clients dribble for 6 s: the normal sessions must end before them (a loop
        # they blocked would hold the normal sessions up until they stop)
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION}) as srv:
            stop = time.monotonic() + 6.0
            results = []
            slow_sids = []

            def slow(script):
                try:
                    c = connect(srv, "submission")
                    slow_sids.append(srv.sid_of(c))
                    replies = []
                    for line in script:
                        for b in line:
                            if time.monotonic() > stop:
                                break
                            c.send(bytes([b]))
                            time.sleep(0.2)
                        else:
                            replies.append(c.read_reply(timeout=3).code)
                            continue
                        break
                    results.append(replies)
                    c.close()
                except Exception as e:
                    results.append(repr(e))

            auth = ("AUTH PLAIN " + plain_b64("", ALICE.login, ALICE.password) + "\r\n").encode()
            # every script takes longer than the 6 s the slow clients run (0.2 s per octet)
            scripts = [[b"EHLO s\r\n"] + [b"NOOP\r\n"] * 6] * 3 + \
                      [[b"EHLO s\r\n", auth]]
            threads = [threading.Thread(target=slow, args=(s,)) for s in scripts]
            for t in threads:
                t.start()
            # the slow clients are connected (the server logged them) before the normal ones
            wait_for(lambda: len(slow_sids) + sum(isinstance(r, str) for r in results)
                     >= len(scripts), timeout=30)
            self.assertEqual(len(slow_sids), len(scripts), results)
            times, sids = [], []
            for i in range(3):
                dt, sid = normal_session(srv, src="127.0.0.2", with_sid=True)
                times.append(dt)
                sids.append(sid)
            for t in threads:
                t.join(30)
            self.assertLess(max(times), PROMPT, "normal sessions during slowloris: %r" % times)
            ends = srv.wait_sessions_ended()
            slow_end = min(ends[sid]["disconnect"].t for sid in slow_sids)
            self.assertLess(max(ends[sid]["disconnect"].t for sid in sids), slow_end,
                            "the normal sessions ended only after the slow clients")
            self.assertEqual(len(results), len(scripts), results)
            for r in results:
                self.assertIsInstance(r, list, r)
                self.assertTrue(r and r[0] == 250, "slow client not served: %r" % r)


    def test_pipelined_flood_without_reading_stays_bounded(self):
        """A client that pipelines commands and never reads the replies (HELP: 6 octets in,
        ~90 out) must not make the server buffer the replies without bound: it should stop
        reading that client (TCP back-pressure) or close it, not grow by the flood's size."""
        flood = 8 * 1024 * 1024
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION}) as srv:
            pid = srv.proc.pid
            rss0 = rss_kb(pid)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((HOST, srv.ports["submission"]))
            s.settimeout(2)
            chunk = b"HELP\r\n" * 10000
            sent = 0
            blocked = False
            try:
                while sent < flood:
                    s.sendall(chunk)
                    sent += len(chunk)
            except socket.timeout:
                blocked = True                 # the server stopped reading: back-pressure
            except (ConnectionError, OSError):
                blocked = True                 # or it closed us
            time.sleep(0.5)
            grown = rss_kb(pid) - rss0
            dt = normal_session(srv, src="127.0.0.2")
            s.close()
            self.assertLess(dt, PROMPT)
            self.assertLess(grown, 32 * 1024, "server RSS grew by %d MB while a client sent %.1f MB "
                            "of pipelined HELP without reading (%s)" % (grown // 1024, sent / 1e6,
                            "then blocked" if blocked else "never blocked"))


def rss_kb(pid):
    from sec_util import proc_status
    return int(proc_status(pid)["VmRSS"].split()[0])


class Timeouts(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {"submission": PLAIN_SUBMISSION, "starttls": "submission",
                 "submissions": "submissions"}
    SETTINGS = {"timeout_command_ms": 500, "timeout_data_ms": 900, "timeout_tls_ms": 500,
                "timeout_session_ms": 2500}

    # The client's clock starts before the action that starts the server's timer (connect,
    # or sending the last bytes), so the 421 can never come sooner than the timeout after it,
    # however loaded the machine (10 ms of slack for libevent's cached clock). The upper
    # bound only has to tell "fired" from "never fired": the timeout plus LATE.
    LATE = 4.0

    def expect_timeout(self, c, t0, timeout, what):
        r = c.read_reply(timeout=timeout + self.LATE + 5)
        dt = time.monotonic() - t0
        assert_reply(r, R_421_TIMEOUT % self.srv.hostname, what)
        self.assertGreaterEqual(dt, timeout - 0.01, "%s: 421 after %.2fs" % (what, dt))
        self.assertLess(dt, timeout + self.LATE, "%s: 421 after %.2fs" % (what, dt))
        self.assertTrue(c.closed(5), "%s: connection open after the 421" % what)

    def test_command_timeout(self):
        t0 = time.monotonic()
        with connect(self.srv, "submission") as c:
            self.expect_timeout(c, t0, 0.5, "idle after the greeting")
        with connect(self.srv, "submission") as c:
            c.ehlo()
            t0 = time.monotonic()
            c.send(b"NOO")                       # half a command
            self.expect_timeout(c, t0, 0.5, "half a command line")

    def test_auth_exchange_timeout(self):
        with connect(self.srv, "submission") as c:
            c.ehlo()
            t0 = time.monotonic()
            assert_reply(c.cmd("AUTH PLAIN"), "334")
            self.expect_timeout(c, t0, 0.5, "no answer to the 334")
        with connect(self.srv, "submission") as c:
            c.ehlo()
            assert_reply(c.cmd("AUTH LOGIN"), "334")
            t0 = time.monotonic()
            c.send(b"YWxp")                      # half a response line
            self.expect_timeout(c, t0, 0.5, "half an AUTH response")

    def test_data_timeout(self):
        before = set(self.srv.messages(ALICE.login))
        with connect(self.srv, "submission") as c:
            c.ehlo()
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            t0 = time.monotonic()
            c.send(b"Subject: never finished\r\n\r\npartial")
            self.expect_timeout(c, t0, 0.9, "stalled DATA (timeout_data_ms=900)")
        self.assertEqual(set(self.srv.messages(ALICE.login)), before)

    def test_tls_handshake_timeout(self):
        t0 = time.monotonic()
        s = socket.create_connection((HOST, self.srv.ports["submissions"]), timeout=5)
        s.settimeout(0.5 + self.LATE + 5)
        timed_out = False
        try:
            while s.recv(4096):
                pass
        except ConnectionError:
            pass
        except socket.timeout:
            timed_out = True
        dt = time.monotonic() - t0
        s.close()
        self.assertFalse(timed_out, "implicit TLS without a ClientHello still open after %.1fs" % dt)
        self.assertGreaterEqual(dt, 0.5 - 0.01)
        self.assertLess(dt, 0.5 + self.LATE, "implicit TLS without a ClientHello kept open %.2fs" % dt)
        with connect(self.srv, "starttls") as c:
            c.ehlo()
            t0 = time.monotonic()
            assert_reply(c.cmd("STARTTLS"), "220")
            self.assertTrue(c.closed(0.5 + self.LATE + 5), "STARTTLS without a handshake: still open")
            dt = time.monotonic() - t0
            self.assertGreaterEqual(dt, 0.5 - 0.01)
            self.assertLess(dt, 0.5 + self.LATE)

    def test_session_timeout(self):
        t0 = time.monotonic()
        with connect(self.srv, "submission") as c:
            c.ehlo()
            while True:
                r = c.cmd("NOOP", timeout=10)
                if r.code != 250:
                    break
                if time.monotonic() - t0 > 2.5 + self.LATE + 5:
                    self.fail("session still open after %.1f s (timeout_session_ms=2500)"
                              % (time.monotonic() - t0))
                time.sleep(0.3)
            dt = time.monotonic() - t0
            assert_reply(r, R_421_TIMEOUT % self.srv.hostname, "session limit")
            self.assertGreaterEqual(dt, 2.5 - 0.01)
            self.assertLess(dt, 2.5 + self.LATE)
            self.assertTrue(c.closed(5))


if __name__ == "__main__":
    unittest.main()
