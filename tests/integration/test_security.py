"""Issue 5, attack tests: failed-AUTH throttling (by address, not locking the owner out from
elsewhere, counters that expire, the per-connection limit), brute force, user enumeration by
reply text and timing, STARTTLS command injection, SMTP smuggling, malformed paths and AUTH=
parameters, PLAIN/EXTERNAL with dozens of NUL-separated fields, NTLM messages with offsets out
of range, base64 of length 4n+1, and privileges/secrets (unprivileged uid, file modes, not
dumpable, no password in the log).

Loopback source addresses (127.0.0.2, ...) act as distinct clients (sec_util.connect)."""

import base64
import os
import shutil
import ssl
import struct
import tempfile
import time
import unittest

from harness import (ALICE, BOB, CAROL, R_AUTH_BAD, R_AUTH_OK, R_BAD_BASE64, R_QUEUED,
                     R_TEMP_AUTH, STD_USERS, Server, ServerTestCase, User, assert_reply, b64,
                     plain_b64, tls_context)
from sec_util import PLAIN_SUBMISSION, connect, make_client_pki, median, proc_status, timed

R_421_ERRORS = "421 4.7.0 %s Too many errors, closing connection"
WRONG = "Wr0ng-Passw0rd-xyz"
_guesses = iter(range(10 ** 9))


def guess():
    """A different wrong password each time: the same wrong password retried counts once
    (issue 16 item 2), a guessing attacker sends different ones."""
    return "%s-%d" % (WRONG, next(_guesses))


def authed(srv, name="submission", src="127.0.0.1", user=ALICE):
    c = connect(srv, name, src=src)
    c.ehlo()
    assert_reply(c.auth_plain(user.login, user.password), R_AUTH_OK, "AUTH as %s" % user.login)
    return c


def fail_delays(srv, sid, n=1, timeout=10.0):
    """The failure delays the server applied in session `sid`, from its own log (debug level):
    each event=auth result=fail to the 535 it then sent (seconds, millisecond resolution).
    Waits (bounded) until at least n are logged: the client may read a 535 a moment before
    the server's log line of it reaches the file."""
    deadline = time.monotonic() + timeout
    while True:
        out, start = [], None
        for e in srv.events():
            if e.fields.get("sid") != sid:
                continue
            if e.event == "auth" and e.fields.get("result") == "fail":
                start = e.t
            elif e.event == "reply" and e.fields.get("code") == "535" and start is not None:
                out.append(round(e.t - start, 3))
                start = None
        if len(out) >= n or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def throttle_settings(**kw):
    s = {"auth_fail_delay_ms": 100, "throttle_max_delay_ms": 100, "throttle_ip_threshold": 1000,
         "throttle_account_threshold": 1000, "throttle_window_ms": 60000,
         "throttle_cooloff_ms": 60000, "max_auth_attempts": 100}
    s.update({k: str(v) for k, v in kw.items()})
    return s


# -- throttling -------------------------------------------------------------------------

class Throttling(unittest.TestCase):
    """Each test starts its own server: the thresholds are part of what is tested."""

    def server(self, **kw):
        return Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                      settings=throttle_settings(**kw))

    def test_delays_grow_then_454_while_owner_logs_in_elsewhere(self):
        # CRAM-MD5 failures: an HMAC, no slow password hash, so the time is the delay
        with self.server(auth_fail_delay_ms=150, throttle_max_delay_ms=2400,
                         throttle_ip_threshold=4, log_level="debug") as srv:
            c = connect(srv, "submission")
            c.ehlo()
            self.assertIn("CRAM-MD5", c.auth_mechs())
            for i in range(4):
                assert_reply(c.auth_cram_md5(ALICE.login, WRONG), R_AUTH_BAD,
                             "wrong password %d" % (i + 1))
            # the delays as the server applied them (its log): each at least the expected one
            # (so they grow), and well under the next step (so they do not start higher);
            # the upper margin absorbs a late timer on a loaded machine
            delays = fail_delays(srv, srv.sid_of(c), n=4)
            expected = [0.15, 0.3, 0.6, 1.2]
            self.assertEqual(len(delays), 4, delays)
            for i, (d, e) in enumerate(zip(delays, expected)):
                self.assertGreaterEqual(d, e - 0.01, "failure %d answered after %.3fs, expected "
                                        "the %.2fs delay (all: %r)" % (i + 1, d, e, delays))
                self.assertLess(d, e + 0.9, "failure %d: %.3fs (all: %r)" % (i + 1, d, delays))
            # threshold reached: the next AUTH from this address is refused at once, even with
            # the right password, on this connection and on a new one
            r, dt = timed(lambda: c.auth_plain(ALICE.login, ALICE.password))
            assert_reply(r, R_TEMP_AUTH, "AUTH after %d failures" % len(delays))
            c.close()
            with connect(srv, "submission") as c2:
                c2.ehlo()
                assert_reply(c2.auth_plain(ALICE.login, ALICE.password), R_TEMP_AUTH,
                             "new connection from the throttled address")
            # the real owner, from another address, gets in without delay
            with connect(srv, "submission", src="127.0.0.2") as o:
                o.ehlo()
                r, dt = timed(lambda: o.auth_plain(ALICE.login, ALICE.password))
                assert_reply(r, R_AUTH_OK, "owner from 127.0.0.2")
                # a delayed success would take the next delay (2.4 s) at least
                self.assertLess(dt, 2.0, "owner's AUTH took %.2fs" % dt)
                self.assertEqual(o.cmd("MAIL FROM:<alice@example.test>").code, 250)
            # and the other address has its own counter: a wrong password there is a 535
            with connect(srv, "submission", src="127.0.0.3") as o:
                o.ehlo()
                assert_reply(o.auth_plain(ALICE.login, guess()), R_AUTH_BAD, "127.0.0.3")
            self.assertIn("result=throttled", srv.log())

    def test_account_hammered_owner_not_locked_out(self):
        with self.server(auth_fail_delay_ms=50, throttle_max_delay_ms=400,
                         throttle_ip_threshold=3, throttle_account_threshold=3,
                         max_auth_attempts=3) as srv:
            for src in ("127.0.0.1", "127.0.0.4"):        # two attacking addresses
                with connect(srv, "submission", src=src) as c:
                    c.ehlo()
                    for _ in range(2):
                        assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD)
                    assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD)
                    assert_reply(c.read_reply(), R_421_ERRORS % srv.hostname)
                with connect(srv, "submission", src=src) as c:
                    c.ehlo()
                    assert_reply(c.auth_plain(ALICE.login, guess()), R_TEMP_AUTH, src)
            for src in ("127.0.0.2", "127.0.0.5"):
                with connect(srv, "submission", src=src) as o:
                    o.ehlo()
                    r, dt = timed(lambda: o.auth_plain(ALICE.login, ALICE.password))
                    assert_reply(r, R_AUTH_OK, "owner from %s after the account was hammered" % src)
                    self.assertLess(dt, 2.0)        # generous: only a hang would exceed it

    def test_failure_delay_is_a_timer_not_a_sleep(self):
        """16 clients waiting out a 4 s failure delay at once: a normal session from another
        address, started once the server has logged all 16 failures, is stored before any of
        those 535s is sent (a sleeping worker or loop would hold it up). Measured from the
        server's log timestamps, not the test's clock."""
        import threading
        delay = 4.0
        with self.server(auth_fail_delay_ms=int(delay * 1000),
                         throttle_max_delay_ms=int(delay * 1000), log_level="debug") as srv:
            out = []

            def waiter(k):
                try:
                    with connect(srv, "submission", src="127.0.2.%d" % (k + 1), timeout=30) as c:
                        c.ehlo()
                        out.append(c.auth_plain(ALICE.login, guess()).code)
                except Exception as e:
                    out.append(repr(e))
            threads = [threading.Thread(target=waiter, args=(k,)) for k in range(16)]
            for t in threads:
                t.start()
            fails = srv.wait_events(
                lambda s: (lambda ev: ev if len(ev) >= 16 else None)(
                    s.events("auth", result="fail", reason="wrong_password")),
                what="16 failed AUTHs in the log")
            with connect(srv, "submission", src="127.0.0.2", timeout=30) as o:
                o.ehlo()
                assert_reply(o.auth_plain(BOB.login, BOB.password), R_AUTH_OK)
                assert_reply(o.cmd("MAIL FROM:<bob@example.test>"), "250")
                assert_reply(o.cmd("RCPT TO:<x@remote.test>"), "250")
                assert_reply(o.data(b"Subject: t\r\n\r\nx\r\n"), R_QUEUED)
            for t in threads:
                t.join(30)
            self.assertEqual(sorted(map(str, out)), ["535"] * 16, out)
            stored = srv.events("stored", login=BOB.login)
            self.assertEqual(len(stored), 1, stored)
            replies = {e.fields["sid"]: e for e in srv.events("reply", code=535)}
            delays = []
            for f in fails:
                r = replies.get(f.fields["sid"])
                self.assertIsNotNone(r, "no 535 logged for %r" % f)
                delays.append(round(r.t - f.t, 3))
            # the 535s waited their delay (10 ms of slack: log timestamps are truncated to the
            # millisecond and libevent times from its cached clock) ...
            self.assertTrue(all(d >= delay - 0.01 for d in delays), delays)
            # ... all at once: 16 sleeps one after the other would take 64 s
            self.assertLess(max(r.t for r in replies.values()) - min(f.t for f in fails),
                            delay + 10, "the delays ran one after the other: %r" % delays)
            # and the normal session was served while they waited
            self.assertLess(stored[0].t, min(r.t for r in replies.values()),
                            "the normal session was stored only after the delayed 535s "
                            "(delays %r)" % delays)

    def test_account_threshold_from_many_addresses(self):
        """One failure each from many addresses (no address reaches its threshold): past the
        account threshold every further failure for that account waits the maximum delay,
        while the owner's successful AUTH is not delayed."""
        with self.server(auth_fail_delay_ms=50, throttle_max_delay_ms=2000,
                         throttle_ip_threshold=5, throttle_account_threshold=3,
                         log_level="debug") as srv:
            delays = []
            for k in range(5):
                with connect(srv, "submission", src="127.0.1.%d" % (k + 1)) as c:
                    c.ehlo()
                    assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD,
                                 "address %d" % (k + 1))
                    delays += fail_delays(srv, srv.sid_of(c))
            # server-side delays (its log): base delay, then the maximum past the threshold
            self.assertEqual(len(delays), 5, delays)
            self.assertTrue(all(d < 1.0 for d in delays[:2]), delays)
            self.assertTrue(all(d >= 2.0 - 0.01 for d in delays[2:]),
                            "failures past the account threshold not at the maximum delay: %r"
                            % (delays,))
            with connect(srv, "submission", src="127.0.1.100") as o:
                o.ehlo()
                r, dt = timed(lambda: o.auth_plain(ALICE.login, ALICE.password))
                assert_reply(r, R_AUTH_OK, "owner")
                self.assertLess(dt, 1.5, "owner's AUTH took %.2fs (the maximum delay is 2 s)" % dt)
            with connect(srv, "submission", src="127.0.1.101") as o:     # other accounts: base
                o.ehlo()
                assert_reply(o.auth_plain(BOB.login, guess()), R_AUTH_BAD)
                d = fail_delays(srv, srv.sid_of(o))
                self.assertEqual(len(d), 1, d)
                self.assertLess(d[0], 1.0, "bob's failure delayed by alice's account counter")

    def test_counters_and_cooloff_expire(self):
        # window and cool-off of 2.5 s: the failures inside one window (0.2 + 0.4 + 0.8 s of
        # delay plus the round trips) must stay inside it even on a loaded machine
        with self.server(auth_fail_delay_ms=200, throttle_max_delay_ms=1600,
                         throttle_ip_threshold=3, throttle_window_ms=2500,
                         throttle_cooloff_ms=2500, log_level="debug") as srv:
            c = connect(srv, "submission")
            c.ehlo()
            sid = srv.sid_of(c)

            nfail = [0]

            def fail(what):
                assert_reply(c.auth_cram_md5(ALICE.login, WRONG), R_AUTH_BAD, what)
                nfail[0] += 1
                return fail_delays(srv, sid, n=nfail[0])[-1]    # as the server applied it
            d1 = fail("first failure")
            d2 = fail("second failure")
            self.assertGreaterEqual(d1, 0.2 - 0.01)
            self.assertGreaterEqual(d2, 0.4 - 0.01, "second delay %.3f vs first %.3f" % (d2, d1))
            time.sleep(3.0)                                  # the 2.5 s window passes
            d3 = fail("third failure, after the window")
            # reset: 0.2 s again; not reset: the third failure's 0.8 s
            self.assertLess(d3, 0.8 - 0.01, "after the window the delay should start again at "
                            "0.2s, got %.3fs (d1=%.3f d2=%.3f)" % (d3, d1, d2))
            # two failures in the new window: under the threshold of 3, so no 454 yet
            assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD,
                         "fourth failure overall, second in the window")
            assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD, "third in the window")
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_TEMP_AUTH, "throttled")
            time.sleep(3.0)                                  # cooling-off period over
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK,
                         "after the cooling-off period")
            c.close()

    def test_per_connection_attempt_limit_and_brute_force(self):
        with self.server(auth_fail_delay_ms=20, throttle_max_delay_ms=20,
                         throttle_ip_threshold=10, max_auth_attempts=3) as srv:
            # the limit per connection: 3 attempts, the 3rd 535 is followed by 421 and close
            with connect(srv, "submission", src="127.0.0.3") as c:
                c.ehlo()
                assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD)
                assert_reply(c.auth_login(BOB.login, guess()), R_AUTH_BAD)
                assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD)
                assert_reply(c.read_reply(), R_421_ERRORS % srv.hostname)
                self.assertTrue(c.closed(3), "connection still open after the 421")
            # aborts and malformed exchanges count too
            with connect(srv, "submission", src="127.0.0.4") as c:
                c.ehlo()
                assert_reply(c.cmd("AUTH PLAIN *"), "501 5.7.0")
                assert_reply(c.cmd("AUTH PLAIN ####"), R_BAD_BASE64)
                assert_reply(c.auth_plain(ALICE.login, guess()), R_AUTH_BAD)
                assert_reply(c.read_reply(), R_421_ERRORS % srv.hostname)
                self.assertTrue(c.closed(3))
            # brute force across connections from one address: 454 once 10 failures are in
            attempts = 0
            got_454 = False
            for conn in range(8):
                with connect(srv, "submission") as c:
                    c.ehlo()
                    for _ in range(3):
                        attempts += 1
                        r = c.auth_plain(ALICE.login, "guess-%d" % attempts)
                        if r.code == 454:
                            assert_reply(r, R_TEMP_AUTH)
                            got_454 = True
                            break
                        assert_reply(r, R_AUTH_BAD, "guess %d" % attempts)
                    if got_454:
                        break
            self.assertTrue(got_454, "no 454 after %d wrong passwords" % attempts)
            self.assertEqual(attempts, 11, "454 expected at the 11th attempt (threshold 10)")
            with connect(srv, "submission") as c:
                c.ehlo()
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_TEMP_AUTH,
                             "right password from the throttled address")
            with connect(srv, "submission", src="127.0.0.2") as c:
                c.ehlo()
                assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)


# -- user enumeration -------------------------------------------------------------------

class Enumeration(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {"submission": PLAIN_SUBMISSION}
    # No failure delay: what is timed is the credential check itself, so a lookup that skips
    # the password hash for an unknown login shows (a fixed delay would only dilute it).
    SETTINGS = throttle_settings(auth_fail_delay_ms=0, throttle_max_delay_ms=0)

    def test_same_text_for_existing_unknown_and_disabled(self):
        with connect(self.srv, "submission") as c:
            c.ehlo()
            replies = {
                "existing": c.auth_plain(ALICE.login, WRONG),
                "unknown": c.auth_plain("nosuchuser@example.test", WRONG),
                "disabled": c.auth_plain(CAROL.login, CAROL.password),
                "existing LOGIN": c.auth_login(ALICE.login, WRONG),
                "unknown LOGIN": c.auth_login("nosuchuser@example.test", WRONG),
            }
        for what, r in replies.items():
            self.assertEqual(r.raw, b"535 5.7.8 Authentication credentials invalid\r\n", what)

    def test_timing_existing_vs_unknown(self):
        times = {"existing": [], "unknown": []}
        with connect(self.srv, "submission") as c:
            c.ehlo()
            for i in range(20):
                for what, login in (("existing", ALICE.login),
                                    ("unknown", "nosuchuser%d@example.test" % i)):
                    r, dt = timed(lambda: c.auth_plain(login, WRONG + str(i)))
                    assert_reply(r, R_AUTH_BAD)
                    times[what].append(dt)
        me, mu = median(times["existing"]), median(times["unknown"])
        self.assertLess(abs(me - mu), max(0.3 * max(me, mu), 0.008),
                        "median AUTH failure time: existing login %.3fs, unknown login %.3fs"
                        % (me, mu))


    def test_timing_existing_vs_unknown_login_mechanism(self):
        times = {"existing": [], "unknown": []}
        with connect(self.srv, "submission") as c:
            c.ehlo()
            for i in range(16):
                for what, login in (("existing", ALICE.login),
                                    ("unknown", "nosuchuser%d@example.test" % i)):
                    r, dt = timed(lambda: c.auth_login(login, WRONG + str(i)))
                    assert_reply(r, R_AUTH_BAD)
                    times[what].append(dt)
        me, mu = median(times["existing"]), median(times["unknown"])
        self.assertLess(abs(me - mu), max(0.3 * max(me, mu), 0.008),
                        "AUTH LOGIN median failure time: existing %.3fs, unknown %.3fs" % (me, mu))

    def test_scram_server_first_same_for_unknown_login(self):
        """SCRAM answers the client-first message before any password is checked: an unknown
        login must get a salt and iteration count like a real one, and the same salt every
        time (a fresh random salt per attempt would tell it apart)."""
        seen = {}
        for attempt in range(2):
            for login in (ALICE.login, "nosuchuser@example.test"):
                with connect(self.srv, "submission") as c:
                    c.ehlo()
                    if "SCRAM-SHA-256" not in c.auth_mechs():
                        self.skipTest("SCRAM-SHA-256 not offered: %r" % c.auth_mechs())
                    cfirst = "n,,n=%s,r=fyko+d2lbbFgONRv9qkxdawL%d" % (login, attempt)
                    r = c.cmd("AUTH SCRAM-SHA-256 " + b64(cfirst))
                    self.assertEqual(r.code, 334, "%s: %r" % (login, r))
                    sfirst = base64.b64decode(r.lines[0].strip()).decode()
                    attrs = dict(kv.split("=", 1) for kv in sfirst.split(","))
                    self.assertIn("s", attrs, sfirst)
                    self.assertIn("i", attrs, sfirst)
                    seen.setdefault(login, []).append((attrs["s"], attrs["i"]))
                    assert_reply(c.cmd("*"), "501 5.7.0")
        real, fake = seen[ALICE.login], seen["nosuchuser@example.test"]
        self.assertEqual(real[0], real[1])
        self.assertEqual(fake[0][1], real[0][1], "iteration counts differ: %r %r" % (real, fake))
        self.assertEqual(len(base64.b64decode(fake[0][0])), len(base64.b64decode(real[0][0])),
                         "salt lengths differ: %r %r" % (real, fake))
        self.assertEqual(fake[0], fake[1], "an unknown login gets a different salt each time: "
                         "%r" % fake)


# -- protocol attacks -----------------------------------------------------------------------

SMUGGLE_ENDINGS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r",
                   b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n\x00.\x00\r\n"]


def ntlm_negotiate():
    flags = 0x00000001 | 0x00000002 | 0x00000004 | 0x00000200   # UNICODE OEM REQ_TARGET NTLM
    return b"NTLMSSP\0" + struct.pack("<II", 1, flags) + b"\0" * 16


def ntlm_authenticate(fields, flags=0x00000201, payload=b"", total=None):
    """fields: {index: (len, offset)} for LM, NT, domain, user, workstation, session key
    (0..5); other fields empty at offset 64."""
    hdr = b"NTLMSSP\0" + struct.pack("<I", 3)
    for i in range(6):
        ln, off = fields.get(i, (0, 64))
        hdr += struct.pack("<HHI", ln, ln, off)
    hdr += struct.pack("<I", flags)
    msg = hdr + payload
    if total is not None:
        msg = msg[:total]
    return msg


class Attacks(ServerTestCase):
    USERS = STD_USERS + (User("inject@example.test", "inject-Secret-9"),)
    LISTENERS = {
        "submission": PLAIN_SUBMISSION,
        "starttls": "submission",
        "mx": "mx",
        "mx_norm": {"role": "mx", "bare_lf": "normalize"},
        "sub_norm": dict(PLAIN_SUBMISSION, bare_lf="normalize"),
    }
    SETTINGS = {"max_auth_attempts": 1000, "auth_fail_delay_ms": 10,
                "throttle_max_delay_ms": 10}

    def alive(self):
        with connect(self.srv, "mx") as c:
            assert_reply(c.cmd("NOOP"), "250")

    # -- STARTTLS injection (CVE-2011-0411 family) -----------------------------------
    def test_starttls_injection(self):
        inj = "inject@example.test"
        injected = ("AUTH PLAIN %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<x@remote.test>\r\nNOOP\r\n"
                    % (plain_b64("", inj, "inject-Secret-9"), inj)).encode()
        for split in (False, True):
            c = connect(self.srv, "starttls")
            c.ehlo()
            if split:                       # a second segment, before the 220 was read
                c.send(b"STARTTLS\r\n")
                time.sleep(0.05)
                c.send(injected)
            else:                           # one segment
                c.send(b"STARTTLS\r\n" + injected)
            r = c.read_reply()
            assert_reply(r, "220 2.0.0")
            try:
                extra = c.buf + c.pending(0.3)
            except ConnectionError as e:
                # the plain text that arrived after the 220 was taken as TLS data and the
                # server dropped the connection: fine as long as nothing was executed
                self.assertTrue(split, "connection reset after a one-segment injection: %r" % e)
                c.close()
                continue
            self.assertEqual(extra, b"", "server answered commands pipelined behind STARTTLS "
                             "in clear text: %r" % extra)
            c.buf = b""
            try:
                c.sock = c.context.wrap_socket(c.sock, server_hostname="mail.example.test")
            except (OSError, ssl.SSLError) as e:
                # the plain text that arrived after the 220 was taken as TLS data: the
                # handshake fails, which is fine as long as nothing was executed (checked below)
                self.assertTrue(split, "handshake failed after a one-segment injection: %r" % e)
                c.close()
                continue
            r = c.cmd("EHLO client.example.test")
            self.assertEqual(r.code, 250, "first reply after the handshake: %r" % r)
            self.assertTrue(r.first.startswith("250-" + self.srv.hostname) or
                            r.first.startswith("250 " + self.srv.hostname),
                            "first reply after the handshake is not the EHLO reply: %r" % r)
            self.assertTrue(any(ln.upper().startswith("AUTH") for ln in r.lines),
                            "EHLO after TLS lists no AUTH: %r" % r)
            self.assertEqual(c.pending(0.3), b"", "replies to injected commands after TLS")
            assert_reply(c.cmd("MAIL FROM:<%s>" % inj), "530 5.7.0 Authentication required",
                         "injected AUTH must not have authenticated the session")
            c.quit()
        log = self.srv.log()
        self.assertNotIn("login=" + inj, log, "the injected AUTH was executed")
        self.assertNotIn("from=" + inj, log, "the injected MAIL was executed")

    # -- SMTP smuggling ------------------------------------------------------------------
    def smuggle(self, name, ending, auth):
        srv = self.srv
        before = {l: set(srv.messages(l)) for l in (ALICE.login, BOB.login)}
        c = authed(srv, name) if auth else connect(srv, name)
        with c:
            if not auth:
                c.ehlo()
            sender = ALICE.login if auth else "someone@remote.test"
            assert_reply(c.cmd("MAIL FROM:<%s>" % sender), "250")
            assert_reply(c.cmd("RCPT TO:<alice@example.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            c.send(b"Subject: smuggle\r\n\r\nfirst part" + ending +
                   b"MAIL FROM:<" + sender.encode() + b">\r\nRCPT TO:<bob@example.test>\r\n"
                   b"DATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
            r = c.read_reply()
            self.assertTrue(r.first.startswith(R_QUEUED) or r.code in (550, 554, 500, 501),
                            "%r on %s: %r" % (ending, name, r))
            # replies come in order: the next one must be RSET's, not one to a smuggled command
            nxt = c.cmd("RSET")
            self.assertEqual(nxt.raw, b"250 2.0.0 Ok\r\n", "%r on %s: first reply %r, then %r "
                             "(the smuggled transaction ran)" % (ending, name, r.first, nxt.raw))
            self.assertEqual(c.pending(0.05), b"")
        added = {l: set(srv.messages(l)) - before[l] for l in before}
        self.assertEqual(added[BOB.login], set(), "%r on %s: bob got the smuggled message"
                         % (ending, name))
        n = len(added[ALICE.login])
        if r.code == 250:
            self.assertEqual(n, 1, "%r on %s: %d messages stored" % (ending, name, n))
            stored = srv.read_message(ALICE.login, list(added[ALICE.login])[0])
            self.assertIn(b"smuggled body", stored, "%r: the smuggled part is not inside the one "
                          "message" % ending)
        else:
            self.assertEqual(n, 0, "%r on %s: rejected but %d stored" % (ending, name, n))
        return r

    def test_smuggling_default_listeners(self):
        for ending in SMUGGLE_ENDINGS:
            self.smuggle("mx", ending, auth=False)
            self.smuggle("submission", ending, auth=True)

    def test_smuggling_bare_lf_normalize(self):
        for ending in SMUGGLE_ENDINGS:
            self.smuggle("mx_norm", ending, auth=False)
            self.smuggle("sub_norm", ending, auth=True)

    def test_smuggling_then_second_transaction(self):
        """After an attempt, a real second transaction on the same connection stores exactly
        one more message."""
        srv = self.srv
        with authed(srv, "submission") as c:
            before = set(srv.messages(ALICE.login))
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<a@remote.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            c.send(b"Subject: one\r\n\r\nx\n.\nMAIL FROM:<alice@example.test>\r\n.\r\n")
            r1 = c.read_reply()
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<b@remote.test>"), "250")
            r2 = c.data(b"Subject: two\r\n\r\nsecond\r\n")
            assert_reply(r2, R_QUEUED)
            added = set(srv.messages(ALICE.login)) - before
            self.assertEqual(len(added), 2 if r1.code == 250 else 1, (r1, added))

    # -- malformed paths and AUTH= --------------------------------------------------------
    def test_malformed_mail_paths(self):
        paths = ["<;sleep 66;>", "<;sleep 66;@example.test>", "<$(reboot)@example.test>",
                 "<a@b@example.test>", "<alice@example.test", "<alice@>", "<@example.test>",
                 "<a b@example.test>", "<alice@example..test>", "<\"unterminated@example.test>",
                 "<alice@exa|mple.test>", "<alice@example.test>>",
                 "<<alice@example.test>>"]
        for i in range(0, len(paths), 4):
            with connect(self.srv, "mx") as c:
                c.ehlo()
                for p in paths[i:i + 4]:
                    r = c.cmd("MAIL FROM:" + p)
                    self.assertEqual(r.code, 501, "MAIL FROM:%s -> %r" % (p, r))
                assert_reply(c.cmd("NOOP"), "250")
        with authed(self.srv) as c:
            r = c.cmd("MAIL FROM:<;sleep 66;>")
            self.assertEqual(r.code, 501, "submission: %r" % r)
            assert_reply(c.cmd("RCPT TO:<;sleep 66;@remote.test>"), "503")
        self.alive()

    def test_auth_param_with_encoded_crlf(self):
        with authed(self.srv) as c:
            for v in ("<>", "alice+40example.test"):
                assert_reply(c.cmd("MAIL FROM:<alice@example.test> AUTH=" + v), "250",
                             "AUTH=" + v)
                assert_reply(c.cmd("RSET"), "250")
            for v in ("foo+0D+0Abar", "+0D+0A", "a+0Ab", "a+0Db", "a+00b", "a+0d+0ab"):
                r = c.cmd("MAIL FROM:<alice@example.test> AUTH=" + v)
                self.assertEqual(r.code, 501, "AUTH=%s -> %r" % (v, r))
        self.assertNotIn("\nbar", self.srv.log())

    # -- AUTH payload attacks ---------------------------------------------------------------
    def test_plain_with_dozens_of_nul_fields(self):
        a, p = ALICE.login.encode(), ALICE.password.encode()
        payloads = [b"\0" * 40,
                    b"\0".join([a, p] * 20),
                    b"\0" + a + b"\0" + p + b"\0" * 30,
                    b"\0" * 30 + a + b"\0" + p,
                    a + b"\0" + a + b"\0" + p + b"\0x" * 30,
                    b"\0" + a + b"\0" + p + b"\0" + a + b"\0" + p,
                    b"\0".join([b""] + [a] * 40 + [p])]
        with connect(self.srv, "submission") as c:
            c.ehlo()
            for pl in payloads:
                for style in ("ir", "continuation"):
                    if style == "ir":
                        r = c.cmd("AUTH PLAIN " + b64(pl))
                    else:
                        assert_reply(c.cmd("AUTH PLAIN"), "334")
                        r = c.cmd(b64(pl))
                    self.assertIn(r.code, (501, 535), "%s %r -> %r" % (style, pl[:60], r))
            assert_reply(c.cmd("NOOP"), "250")

    def ntlm_start(self):
        c = connect(self.srv, "submission")
        c.ehlo()
        self.assertIn("NTLM", c.auth_mechs())
        assert_reply(c.cmd("AUTH NTLM"), "334 ntlm supported")
        r = c.cmd(b64(ntlm_negotiate()))
        self.assertEqual(r.code, 334, "NEGOTIATE -> %r" % r)
        chal = base64.b64decode(r.lines[0].strip())
        self.assertEqual(chal[:12], b"NTLMSSP\0\x02\0\0\0")
        return c

    def test_ntlm_authenticate_offsets_out_of_range(self):
        user = "alice@example.test".encode("utf-16-le")
        payload = b"\x11" * 24 + user
        n = 64 + len(payload)
        cases = {
            "nt offset 0xfffffff0": ntlm_authenticate({1: (24, 0xFFFFFFF0), 3: (len(user), 88)},
                                                      payload=payload),
            "user offset just past the end": ntlm_authenticate({1: (24, 64), 3: (len(user), n)},
                                                               payload=payload),
            "user straddles the end": ntlm_authenticate({1: (24, 64), 3: (len(user), n - 4)},
                                                        payload=payload),
            "offset+len wraps 32 bits": ntlm_authenticate(
                {1: (0xFFFF, 0xFFFFFFFF), 3: (0xFFFF, 0xFFFFFF00)}, payload=payload),
            "all fields 0xffff at 0xffffffff": ntlm_authenticate(
                {i: (0xFFFF, 0xFFFFFFFF) for i in range(6)}, payload=payload),
            "offsets inside the header": ntlm_authenticate({1: (24, 0), 3: (40, 8)},
                                                           payload=payload),
            "session key past the end": ntlm_authenticate(
                {1: (24, 64), 3: (len(user), 88), 5: (16, n + 100)}, payload=payload),
            "truncated header": ntlm_authenticate({1: (24, 64)}, payload=payload, total=40),
            "huge NT length": ntlm_authenticate({1: (0xFFFF, 64), 3: (len(user), 88)},
                                                payload=payload),
        }
        for what, msg in cases.items():
            c = self.ntlm_start()
            with c:
                r = c.cmd(b64(msg))
                self.assertTrue(r.code == 501 or r.first.startswith("535 5.7.3"),
                                "%s -> %r" % (what, r))
                assert_reply(c.cmd("NOOP"), "250", what + ": session after the reply")
        self.alive()

    def test_base64_length_4n_plus_1(self):
        raw = b"\0alice@example.test\0alice-Secret-1xx"       # 36 octets: no padding
        good = b64(raw)
        self.assertEqual(len(good) % 4, 0)
        bad = [good + "A", "A", "QUJDR", good[:-3] + "=" + "AA" + "A", good + "=" * 5]
        with connect(self.srv, "submission") as c:
            c.ehlo()
            for v in bad:
                assert_reply(c.cmd("AUTH PLAIN " + v), R_BAD_BASE64, "initial response %r" % v)
                assert_reply(c.cmd("AUTH PLAIN"), "334")
                assert_reply(c.cmd(v), R_BAD_BASE64, "continuation %r" % v)
            assert_reply(c.cmd("AUTH LOGIN"), "334")
            assert_reply(c.cmd(b64(ALICE.login) + "A"), R_BAD_BASE64, "LOGIN user")
            assert_reply(c.cmd("NOOP"), "250")


class ExternalFields(unittest.TestCase):
    """EXTERNAL with a verified client certificate: an authzid made of dozens of
    NUL-separated fields is never accepted."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl not installed")
        cls.pki = tempfile.mkdtemp(prefix="sg-sec-pki-")
        cls.ca, cls.cert, cls.key = make_client_pki(cls.pki, "alice@example.test",
                                                    "email:alice@example.test")
        try:
            cls.srv = Server(users=STD_USERS, listeners={"submissions": "submissions"},
                             settings={"tls_client_ca": cls.ca, "max_auth_attempts": 1000})
        except BaseException:
            shutil.rmtree(cls.pki, ignore_errors=True)
            raise

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

    def client(self, cert=True):
        from harness import RawClient
        ctx = tls_context(client_cert=self.cert, client_key=self.key) if cert else tls_context()
        c = RawClient(self.srv.ports["submissions"], implicit_tls=True, context=ctx)
        c.ehlo()
        return c

    def test_external_nul_fields(self):
        a, b = ALICE.login.encode(), BOB.login.encode()
        payloads = [b"\0" * 40, b"\0".join([a] * 40), a + b"\0" * 40, b"\0" * 40 + a,
                    b"\0".join([a, b] * 20), b"\0" + a]
        with self.client() as c:
            self.assertIn("EXTERNAL", c.auth_mechs())
            for pl in payloads:
                r = c.cmd("AUTH EXTERNAL " + b64(pl))
                self.assertIn(r.code, (501, 535), "%r -> %r" % (pl[:50], r))
                assert_reply(c.cmd("AUTH EXTERNAL"), "334")
                r = c.cmd(b64(pl))
                self.assertIn(r.code, (501, 535), "continuation %r -> %r" % (pl[:50], r))
            # the certificate does work: the test above was not refused for another reason
            assert_reply(c.cmd("AUTH EXTERNAL ="), R_AUTH_OK)
        with self.client(cert=False) as c:
            r = c.cmd("AUTH EXTERNAL " + b64(b"\0" * 40))
            self.assertNotEqual(r.code, 235, r)
            self.assertIn(r.code, (501, 504, 535), r)


# -- privileges and secrets -------------------------------------------------------------

class Privileges(ServerTestCase):
    USERS = STD_USERS
    LISTENERS = {"submission": PLAIN_SUBMISSION, "submissions": "submissions"}
    SETTINGS = {"log_level": "debug"}

    def test_runs_unprivileged_and_not_dumpable(self):
        if os.geteuid() != 0:
            self.skipTest("the tests do not run as root: no privilege drop to check")
        pid = self.srv.proc.pid
        st = proc_status(pid)
        uids = [int(x) for x in st["Uid"].split()]
        gids = [int(x) for x in st["Gid"].split()]
        self.assertTrue(all(u != 0 for u in uids), "Uid line: %s" % st["Uid"])
        self.assertTrue(all(g != 0 for g in gids), "Gid line: %s" % st["Gid"])
        groups = st.get("Groups", "").split()
        self.assertNotIn("0", groups, "supplementary groups: %r" % groups)
        # a non-dumpable process's /proc entries belong to root; core limit 0
        self.assertEqual(os.stat("/proc/%d/status" % pid).st_uid, 0,
                         "/proc/PID is owned by the process user: the process is dumpable")
        with open("/proc/%d/limits" % pid) as f:
            core = [ln for ln in f if ln.startswith("Max core file size")]
        self.assertTrue(core and core[0].split()[4] == "0", "core limit: %r" % core)
        for tid in os.listdir("/proc/%d/task" % pid):          # every thread (workers)
            t = proc_status(int(tid))
            self.assertTrue(all(int(u) != 0 for u in t["Uid"].split()), "thread %s: %s"
                            % (tid, t["Uid"]))
        self.assertRegex(self.srv.log(), r"event=privileges user=\S+ uid=%d" % uids[0])

    def test_file_modes(self):
        """A data dir the server creates itself (the harness pre-creates one for the other
        tests): 0700, smtpgate.db and the TLS key 0600, all owned by the server's user."""
        if os.geteuid() != 0:
            self.skipTest("not root")
        srv = Server(users=(), listeners={"submission": PLAIN_SUBMISSION}, start=False)
        try:
            os.rmdir(srv.data_dir)
            srv._share_with_server = lambda lines: os.chmod(srv.tmp, 0o711)
            srv.start()
            uid = int(proc_status(srv.proc.pid)["Uid"].split()[1])
            srv.add_user(ALICE)
            d = srv.data_dir
            with authed(srv) as c:
                assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
                assert_reply(c.cmd("RCPT TO:<x@remote.test>"), "250")
                assert_reply(c.data(b"Subject: modes\r\n\r\nx\r\n"), R_QUEUED)
            for path, mode in ((d, 0o700), (os.path.join(d, "smtpgate.db"), 0o600),
                               (os.path.join(d, "tls"), 0o700),
                               (os.path.join(d, "tls", "key.pem"), 0o600)):
                st = os.stat(path)
                self.assertEqual(st.st_mode & 0o777, mode, "%s is %o" % (path, st.st_mode & 0o777))
                self.assertEqual(st.st_uid, uid, "%s owned by uid %d, server runs as %d"
                                 % (path, st.st_uid, uid))
            for name in srv.messages(ALICE.login):
                p = srv.message_path(ALICE.login, name)
                self.assertEqual(os.stat(p).st_mode & 0o077, 0, "%s is %o" % (p, os.stat(p).st_mode))
            for root, dirs, files in os.walk(d):
                for f in files + dirs:
                    p = os.path.join(root, f)
                    self.assertEqual(os.lstat(p).st_mode & 0o007, 0, "%s is readable by others (%o)"
                                     % (p, os.lstat(p).st_mode & 0o777))
        finally:
            srv.stop()
            probs = srv.problems()
            srv.cleanup()
        self.assertEqual(probs, [])

    def test_refuses_to_run_as_root(self):
        srv = Server(users=(), listeners={"mx": "mx"}, settings={"user": "root"}, start=False)
        try:
            with self.assertRaises(AssertionError):
                srv.start()
            self.assertIn("root", srv.log().lower())
        finally:
            srv.cleanup()

    def test_no_password_in_log(self):
        pw = "Log-Leak-Pa55word-%d" % os.getpid()
        wrong = "Wrong-Leak-Pa55-%d" % os.getpid()
        u = User("leak@example.test", pw)
        self.srv.add_user(u)
        secrets = []
        for p in (pw, wrong):
            secrets += [p, b64(p), plain_b64("", u.login, p), b64("\0" + u.login + "\0" + p)[:-4],
                        p.encode().hex()]
        for name in ("submission", "submissions"):
            with connect(self.srv, name) as c:
                c.ehlo()
                assert_reply(c.auth_plain(u.login, wrong), R_AUTH_BAD)
                assert_reply(c.auth_login(u.login, wrong), R_AUTH_BAD)
                assert_reply(c.auth_plain(u.login, pw), R_AUTH_OK)
            with connect(self.srv, name) as c:
                c.ehlo()
                assert_reply(c.auth_login(u.login, pw), R_AUTH_OK)
            with connect(self.srv, name) as c:
                c.ehlo()
                c.cmd("AUTH PLAIN " + plain_b64("", u.login, wrong) + "!")   # malformed
                c.cmd("AUTH PLAIN " + "x" * 13000 + b64(pw))                 # too long
        log = self.srv.log()
        self.assertIn("leak@example.test", log, "AUTH not logged at all?")
        self.assertIn("event=reply", log, "log_level=debug had no effect")
        for s in secrets:
            self.assertNotIn(s, log, "the log holds a secret: %r" % s)


if __name__ == "__main__":
    unittest.main()
