"""Issue 10 (round two hardening, server core) and issue 16 item 2: the chown walk at start,
no shared service account, one throttle for SMTP and HTTP (per account, canonical logins,
IPv6 prefixes, a full table), repeated identical failures counted once, DATA streamed to disk,
descriptor exhaustion, per-command deadlines, many local owners, accounts disabled during a
session. Each test starts the server it needs (the settings are part of what is tested)."""

import os
import pwd
import re
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import base64
import smtplib

from harness import (ALICE, BOB, HOST, R_AUTH_BAD, R_AUTH_OK, R_QUEUED, R_TEMP_AUTH, STD_USERS,
                     Server, User, assert_reply, binary)
from sec_util import PLAIN_SUBMISSION, connect
import test_http

ROOT = os.geteuid() == 0


def uid_of(path):
    return os.lstat(path).st_uid


def wait_log(srv, text, timeout=30, count=1):
    deadline = time.monotonic() + timeout
    while srv.log().count(text) < count:
        if time.monotonic() > deadline:
            raise AssertionError("%r not in the server log after %ds" % (text, timeout))
        time.sleep(0.05)


@unittest.skipUnless(ROOT, "the privilege rules apply to a server started as root")
class Privileges(unittest.TestCase):
    """Item 2: root never follows or chowns through a tree the service user controls.
    Item 3: no fallback to a shared account."""

    def test_chown_walk_stays_inside_data_dir(self):
        srv = Server(users=(), listeners={"mx": "mx"}, start=False)
        try:
            outside = os.path.join(srv.tmp, "outside")
            os.makedirs(os.path.join(outside, "dir"))
            victims = [os.path.join(outside, n) for n in ("victim", "linked", "dir/file")]
            for v in victims:
                with open(v, "w") as f:
                    f.write("root's\n")
            d = srv.data_dir
            os.symlink(os.path.join(outside, "victim"), os.path.join(d, "link"))
            os.symlink(os.path.join(outside, "dir"), os.path.join(d, "dirlink"))
            # a hard link to a root-owned file elsewhere (what a service user could plant
            # where protected_hardlinks is off): chowning it by path gives the outside file away
            os.link(os.path.join(outside, "linked"), os.path.join(d, "hard"))
            os.makedirs(os.path.join(d, "sub", "deeper"))
            with open(os.path.join(d, "sub", "own"), "w") as f:
                f.write("x\n")
            os.symlink(os.path.join(outside, "dir"), os.path.join(d, "sub", "deeper", "l"))
            srv.start()
            wait_log(srv, "event=ready ")     # the listeners accept before the hand-over
            uid = pwd.getpwnam("smtpgate").pw_uid
            for v in victims + [os.path.join(outside, "dir")]:
                self.assertEqual(uid_of(v), 0, "%s outside the data dir was given away" % v)
            self.assertEqual(uid_of(os.path.join(d, "hard")), 0)
            # what is really inside is handed over
            for p in (d, os.path.join(d, "sub"), os.path.join(d, "sub", "own"),
                      os.path.join(d, "sub", "deeper")):
                self.assertEqual(uid_of(p), uid, "%s not handed to smtpgate" % p)
        finally:
            srv.cleanup()

    def test_chown_walk_race_with_symlink_swaps(self):
        """A directory swapped for a symlink (to a root-owned tree) while root walks: the walk
        descends by descriptors, so the outside tree is never touched, over several starts."""
        srv = Server(users=(), listeners={"mx": "mx"}, start=False)
        stop = threading.Event()
        try:
            outside = os.path.join(srv.tmp, "outside")
            os.makedirs(outside)
            n_files = 1500
            victims = []
            for i in range(n_files):
                v = os.path.join(outside, "f%d" % i)
                open(v, "w").close()
                victims.append(v)
            race = os.path.join(srv.data_dir, "race")
            parked = os.path.join(srv.data_dir, "race.parked")
            os.makedirs(race)
            for i in range(n_files):
                open(os.path.join(race, "f%d" % i), "w").close()

            def swapper():
                for _ in range(100000):
                    if stop.is_set():
                        return
                    try:
                        os.rename(race, parked)
                        os.symlink(outside, race)
                        time.sleep(0.0005)
                        os.unlink(race)
                        os.rename(parked, race)
                    except OSError:
                        pass

            t = threading.Thread(target=swapper, daemon=True)
            t.start()
            for i in range(4):
                try:    # a start may also fail on the moving tree: what counts is the outside
                    srv.start() if i == 0 else srv._spawn()
                    wait_log(srv, "event=ready ", timeout=10, count=i + 1)
                except AssertionError:
                    pass
                srv.stop()
            stop.set()
            t.join(10)
            for v in victims + [outside]:
                self.assertEqual(uid_of(v), 0, "%s outside the data dir was given away" % v)
        finally:
            stop.set()
            srv.cleanup()

    def _refused(self, user, expect):
        srv = Server(users=(), listeners={"mx": "mx"}, settings={"user": user}, start=False)
        try:
            with self.assertRaises(AssertionError):
                srv.start()
            log = srv.log()
            self.assertIn(expect, log)
            self.assertIn("useradd --system", log, "the message names the command to run")
        finally:
            srv.cleanup()

    def test_refuses_missing_user_without_fallback(self):
        self._refused("sg-no-such-user-%d" % os.getpid(), "does not exist")

    def test_refuses_shared_nobody(self):
        self._refused("nobody", "shared account")


WRONG = "Wr0ng-Passw0rd-xyz"


def throttle_settings(**kw):
    s = {"auth_fail_delay_ms": 20, "throttle_max_delay_ms": 20, "throttle_ip_threshold": 1000,
         "throttle_account_threshold": 1000, "throttle_window_ms": 60000,
         "throttle_cooloff_ms": 60000, "max_auth_attempts": 100}
    s.update({k: str(v) for k, v in kw.items()})
    return s


def smtp_login_once(srv, login, password):
    """One PLAIN attempt on a fresh smtplib connection: (code, text)."""
    with smtplib.SMTP(HOST, srv.port("submission"), timeout=20) as s:
        s.ehlo()
        s.user, s.password = login, password
        try:
            code, text = s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as e:
            code, text = e.smtp_code, e.smtp_error
        return code, text.decode() if isinstance(text, bytes) else text


class SharedThrottle(unittest.TestCase):
    """Items 4, 5, 6 of issue 10 and item 2 of issue 16."""

    def via_proxy(self, srv, client_ip, sport):
        """A session whose client address comes from a PROXY v1 header (sent from a trusted
        loopback proxy): the way to have IPv6 clients other than ::1 on a loopback-only box."""
        c = connect(srv, "submission", greet=False)
        c.send(("PROXY TCP6 %s ::1 %d 587\r\n" % (client_ip, sport)).encode())
        c.greeting = c.read_reply()
        return c

    def test_ipv6_counted_per_prefix(self):
        """Item 7: a host owning a /64 is one client for the AUTH throttle and the per-address
        connection limit (default ipv6_prefix = 64); another /64 is another client."""
        listener = dict(PLAIN_SUBMISSION, proxy_protocol="yes", proxy_trusted="127.0.0.1/32")
        with Server(users=STD_USERS, listeners={"submission": listener},
                    settings=throttle_settings(throttle_ip_threshold=3,
                                               max_connections_per_ip=4)) as srv:
            codes = []
            for i in range(4):
                c = self.via_proxy(srv, "2001:db8:1:2::%x" % (i + 1), 1000 + i)
                c.ehlo()
                codes.append(c.auth_plain(ALICE.login, "guess-%d" % i).code)
                c.close()
            self.assertEqual(codes, [535, 535, 535, 454], "four addresses of one /64")
            c = self.via_proxy(srv, "2001:db8:1:3::1", 2000)
            c.ehlo()
            self.assertEqual(c.auth_plain(ALICE.login, ALICE.password).code, 235, "another /64")
            c.close()
            # connections: 4 per /64, the 5th from the same /64 is refused
            held = [self.via_proxy(srv, "2001:db8:7:7::%x" % (i + 1), 3000 + i) for i in range(4)]
            for h in held:
                self.assertEqual(h.greeting.code, 220)
            extra = self.via_proxy(srv, "2001:db8:7:7:ffff::9", 3999)
            self.assertEqual(extra.greeting.code, 421)
            other = self.via_proxy(srv, "2001:db8:7:8::1", 4000)
            self.assertEqual(other.greeting.code, 220)
            for h in held + [extra, other]:
                h.close()

    def server(self, **kw):
        return Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                      settings=throttle_settings(**kw))

    def test_success_of_own_account_does_not_reset_guesses_at_others(self):
        """An attacker holding bob's account alternates guesses at alice with bob's logins."""
        with self.server(throttle_ip_threshold=5) as srv:
            c = connect(srv, "submission")
            c.ehlo()
            replies = []
            for i in range(6):
                replies.append(c.auth_plain(ALICE.login, "guess-%d" % i))
                c2 = connect(srv, "submission")
                c2.ehlo()
                replies.append(c2.auth_plain(BOB.login, BOB.password))
                c2.close()
            c.close()
            guesses = [r for r in replies[0::2]]
            for r in guesses[:5]:
                assert_reply(r, R_AUTH_BAD)
            assert_reply(guesses[5], R_TEMP_AUTH, "the 6th guess is past the threshold")
            # bob's own mistakes are cleared by bob's success
        with self.server(throttle_ip_threshold=5) as srv:
            for r in range(4):
                for i in range(4):
                    self.assertEqual(smtp_login_once(srv, BOB.login, "typo-%d-%d" % (r, i))[0],
                                     535)
                self.assertEqual(smtp_login_once(srv, BOB.login, BOB.password)[0], 235)

    def test_canonical_account_key_and_event(self):
        """u11@MaNy.TeSt reaches u11@many.test: one key, one login in the log and events."""
        u = User("u11@many.test", "u11-Secret-x")
        with Server(users=[u], listeners={"submission": PLAIN_SUBMISSION},
                    settings=throttle_settings(throttle_ip_threshold=1000,
                                               throttle_account_threshold=3,
                                               auth_fail_delay_ms=10,
                                               throttle_max_delay_ms=1500)) as srv:
            for typed in ("u11@MaNy.TeSt", "u11@MANY.test", "u11@many.TEST"):
                self.assertEqual(smtp_login_once(srv, typed, WRONG)[0], 535)
            # the account's threshold is reached whatever the case: the next failure gets the
            # maximum delay (1.5 s instead of 10 ms)
            t0 = time.monotonic()
            self.assertEqual(smtp_login_once(srv, "u11@mAnY.tEsT", WRONG)[0], 535)
            self.assertGreater(time.monotonic() - t0, 1.2)
            log = srv.log()
            self.assertIn("login=u11@many.test result=fail", log)
            for typed in ("MaNy.TeSt", "MANY.test", "many.TEST"):
                self.assertNotIn("login=u11@" + typed, log)
            # an unknown login: one canonical form (domain lowercased)
            smtp_login_once(srv, "Ghost@ExAmPle.TEST", WRONG)
            self.assertIn("login=Ghost@example.test result=fail", srv.log())

    def test_same_wrong_password_retried_counts_once(self):
        with self.server(throttle_ip_threshold=10) as srv:
            for i in range(15):
                code, text = smtp_login_once(srv, ALICE.login, "mistyped-password")
                self.assertEqual(code, 535, "attempt %d: %s %s" % (i + 1, code, text))
            self.assertEqual(smtp_login_once(srv, ALICE.login, ALICE.password)[0], 235)
        with self.server(throttle_ip_threshold=10) as srv:
            codes = [smtp_login_once(srv, ALICE.login, "guess-%d" % i)[0] for i in range(15)]
            self.assertEqual(codes, [535] * 10 + [454] * 5)

    def test_http_basic_shares_the_smtp_throttle(self):
        srv = test_http.start_http_server(users=STD_USERS,
                                          listeners={"submission": PLAIN_SUBMISSION},
                                          settings=throttle_settings(throttle_ip_threshold=5))
        try:
            port = srv.http_port

            def http_try(password):
                auth = "Basic " + base64.b64encode(
                    ("%s:%s" % (ALICE.login, password)).encode()).decode()
                return test_http.request(port, "GET", "/api/v1/inboxes", auth=auth)

            bob = "Basic " + base64.b64encode(("%s:%s" % (BOB.login, BOB.password)).encode()).decode()
            self.assertEqual(test_http.request(port, "GET", "/api/v1/inboxes", auth=bob).status,
                             200)
            # HTTP alone: throttled after the same number of failures as SMTP
            for i in range(5):
                self.assertEqual(http_try("http-guess-%d" % i).status, 401)
            r = http_try("http-guess-x")
            self.assertEqual(r.status, 429)
            self.assertGreater(int(r.headers.get("retry-after", "0")), 0)
            # ... and SMTP from the same address is refused too (same counter)
            self.assertEqual(smtp_login_once(srv, BOB.login, "smtp-guess")[0], 454)
            # even the right password is refused over HTTP while cooling off
            self.assertEqual(http_try(ALICE.password).status, 429)
            # a login verified just before (bob's page, same address) is no guess: it goes on
            self.assertEqual(test_http.request(port, "GET", "/api/v1/inboxes", auth=bob).status,
                             200)
            log = srv.log()
            self.assertIn("http_auth", log)
            self.assertIn("login=alice@example.test result=fail", log)
        finally:
            srv.stop()
            srv.cleanup()
        # SMTP failures count against HTTP: 3 over SMTP + 2 over HTTP reach the threshold
        srv = test_http.start_http_server(users=STD_USERS,
                                          listeners={"submission": PLAIN_SUBMISSION},
                                          settings=throttle_settings(throttle_ip_threshold=5))
        try:
            for i in range(3):
                self.assertEqual(smtp_login_once(srv, ALICE.login, "s-%d" % i)[0], 535)
            auth = "Basic " + base64.b64encode(("%s:h-1" % ALICE.login).encode()).decode()
            self.assertEqual(test_http.request(srv.http_port, "GET", "/api/v1/messages",
                                               auth=auth).status, 401)
            auth = "Basic " + base64.b64encode(("%s:h-2" % ALICE.login).encode()).decode()
            self.assertEqual(test_http.request(srv.http_port, "GET", "/api/v1/messages",
                                               auth=auth).status, 401)
            self.assertEqual(smtp_login_once(srv, ALICE.login, ALICE.password)[0], 454)
            # every HTTP password check is in the auth event log, as SMTP's are
            r = test_http.request(srv.http_port, "GET", "/api/v1/auth-events?limit=100",
                                  auth=test_http.bearer())
            self.assertEqual(r.status, 200, r)
            events = r.json()
            events = events.get("events", events) if isinstance(events, dict) else events
            http_events = [e for e in events if e.get("listener") == "http"]
            self.assertGreaterEqual(len(http_events), 2, events)
        finally:
            srv.stop()
            srv.cleanup()


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def set_nofile(pid, soft, hard):
    """prlimit(2) on the running server: as its own (unprivileged) user when started as root,
    since root here may lack CAP_SYS_RESOURCE."""
    with open("/proc/%d/status" % pid) as f:
        st = f.read()
    uid = int(re.search(r"Uid:\s+(\d+)", st).group(1))
    gid = int(re.search(r"Gid:\s+(\d+)", st).group(1))
    argv = ["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (soft, hard)]
    if uid != os.geteuid():
        argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups"] + argv
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


class Resources(unittest.TestCase):
    """Items 9, 10, 11 of issue 10: memory, descriptors and time are bounded per client."""

    def test_data_bodies_are_streamed_not_held(self):
        """20 sessions in DATA at once, each with 4 MiB of body sent and the final dot not yet:
        the server's RSS grows by far less than the 80 MiB in flight (it held every body whole
        before), and every message is stored intact afterwards."""
        nsess, size = 20, 4 << 20
        line = b"x" * 998 + b"\r\n"
        body = b"Subject: big\r\n\r\n" + line * (size // len(line))
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"max_message_size": 16 << 20, "max_connections_per_ip": 100}) as srv:
            base = vm_rss_kb(srv.proc.pid)
            sent = threading.Barrier(nsess + 1, timeout=120)
            go = threading.Event()
            results = []

            def client(k):
                try:
                    c = connect(srv, "submission")
                    c.ehlo()
                    assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
                    assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
                    assert_reply(c.cmd("RCPT TO:<al@example.test>"), "250")
                    assert_reply(c.cmd("DATA"), "354")
                    for off in range(0, len(body), 256 * 1024):
                        c.send(body[off:off + 256 * 1024])
                        time.sleep(0.01)
                    sent.wait()
                    go.wait(120)
                    c.send(b".\r\n")
                    results.append(c.read_reply(timeout=120))
                    c.close()
                except Exception as e:          # reported below
                    results.append(e)
                    try:
                        sent.abort()
                    except threading.BrokenBarrierError:
                        pass

            threads = [threading.Thread(target=client, args=(k,)) for k in range(nsess)]
            for t in threads:
                t.start()
            sent.wait()
            # the last bytes may still be in the socket buffers: let the server read them
            peak = 0
            for _ in range(20):
                time.sleep(0.1)
                peak = max(peak, vm_rss_kb(srv.proc.pid))
            go.set()
            for t in threads:
                t.join(180)
            growth_mb = (peak - base) / 1024
            for r in results:
                if isinstance(r, Exception):
                    raise r
                assert_reply(r, R_QUEUED)
            self.assertEqual(len(results), nsess)
            print("RSS base %.1f MiB, peak %.1f MiB with %d x %d MiB in DATA"
                  % (base / 1024, peak / 1024, nsess, size >> 20))
            # under ASan the allocator's quarantine of freed buffers (256 MiB) is part of the
            # RSS: the bound is checked in the main phase, the rest of the test runs in both
            if not os.environ.get("SG_UNDER_ASAN"):
                self.assertLess(growth_mb, 24, "RSS grew by %.1f MiB with %d MiB of bodies in "
                                "flight" % (growth_mb, nsess * size >> 20))
            msgs = srv.messages(ALICE.login)
            self.assertEqual(len(msgs), nsess)
            data = srv.read_message(ALICE.login, msgs[0])
            self.assertTrue(data.endswith(body), "stored body differs (%d bytes)" % len(data))
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "spool")), [])

    # -- descriptors (item 10) ----------------------------------------------------------

    @staticmethod
    def cpu_seconds(pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def greet(sock, timeout=10):
        sock.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        return data

    def test_low_nofile_lowers_max_connections(self):
        """Started with RLIMIT_NOFILE 150 (hard too): the server says it lowers
        max_connections to fit, clients past it get 421 at once, later ones are served."""
        srv = Server(users=STD_USERS, listeners={"mx": "mx"},
                     settings={"loops": 1, "workers": 2, "max_connections_per_ip": 1000},
                     start=False)
        orig = srv.serve_argv
        srv.serve_argv = lambda: ["prlimit", "--nofile=150:150", "--"] + orig()
        try:
            srv.start()
            log = srv.log()
            self.assertRegex(log, r"max_connections=\d+ lowered from 10000")
            limit = int(re.search(r"max_connections=(\d+) lowered", log).group(1))
            self.assertGreater(limit, 5)
            socks = []
            replies = []
            for _ in range(limit + 20):
                c = socket.create_connection((HOST, srv.port("mx")), timeout=10)
                socks.append(c)
                replies.append(self.greet(c))
            self.assertEqual(sum(r.startswith(b"220") for r in replies), limit, replies)
            self.assertTrue(all(r.startswith(b"421") for r in replies[limit:]), replies[limit:])
            for c in socks:
                c.close()
            time.sleep(0.5)
            c = socket.create_connection((HOST, srv.port("mx")), timeout=10)
            self.assertTrue(self.greet(c).startswith(b"220"))
            c.close()
        finally:
            srv.stop()
            srv.cleanup()

    def test_emfile_pauses_accept_without_spinning(self):
        """Descriptors run out under the server (its limit lowered at run time): accept() fails
        with EMFILE; the listener pauses instead of spinning (low CPU, one log line), and the
        waiting clients are served once descriptors are back."""
        srv = Server(users=STD_USERS, listeners={"mx": "mx"},
                     settings={"loops": 1, "max_connections_per_ip": 1000})
        waiting = []
        try:
            pid = srv.proc.pid
            # one whole session first: what the server opens lazily (worker databases, the
            # event log writer, the inbox) is open before the descriptors run out
            c = connect(srv, "mx")
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<x@remote.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<al@example.test>"), "250")
            assert_reply(c.data(b"Subject: warm-up\r\n\r\nx\r\n"), R_QUEUED)
            c.quit()
            wait_log(srv, "event=stored ")
            time.sleep(0.5)
            with open("/proc/%d/limits" % pid) as f:
                soft, hard = [int(x) for x in re.search(r"Max open files\s+(\d+)\s+(\d+)",
                                                       f.read()).groups()]
            nfd = len(os.listdir("/proc/%d/fd" % pid))
            set_nofile(pid, nfd + 3, hard)
            held = []
            for _ in range(3):               # use up what is left
                c = socket.create_connection((HOST, srv.port("mx")), timeout=10)
                held.append(c)
            log_before = len(srv.log())
            for _ in range(30):              # these wait in the backlog
                waiting.append(socket.create_connection((HOST, srv.port("mx")), timeout=10))
            # however slowly this machine schedules the server: once it has paused ...
            wait_log(srv, "accept_paused", timeout=30)
            # ... it must stay quiet while the descriptors are gone
            log_mid = len(srv.log())
            cpu0 = self.cpu_seconds(pid)
            t0 = time.monotonic()
            time.sleep(2.0)
            cpu = self.cpu_seconds(pid) - cpu0
            wall = time.monotonic() - t0
            log_growth = srv.log()[log_mid:]
            self.assertLess(cpu, 0.5 * wall, "the server used %.2fs of CPU in %.2fs while out of "
                            "descriptors" % (cpu, wall))
            self.assertLess(len(log_growth), 4000, "log grew by %d bytes" % len(log_growth))
            self.assertLessEqual(log_growth.count("accept_paused"), 1)  # one per 10 s at most
            # descriptors come back: every waiting client is served
            set_nofile(pid, soft, hard)
            for c in held:
                c.close()
            for c in waiting:
                self.assertTrue(self.greet(c).startswith(b"220"))
        finally:
            for c in waiting:
                c.close()
            srv.stop()
            srv.cleanup()


def log_ms(line):
    """Milliseconds of a log line's ISO timestamp (2026-12-02T11:49:29.344Z ...)."""
    m = re.match(r"\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d)\.(\d{3})Z", line)
    h, mi, sec, ms = (int(x) for x in m.groups())
    return ((h * 60 + mi) * 60 + sec) * 1000 + ms


class Deadlines(unittest.TestCase):
    """Item 11: a line must be complete within its timeout after its first byte."""

    def trickle(self, c, data, interval, stop_after):
        """Send one byte every `interval` s; returns what the server sent meanwhile."""
        got = b""
        t0 = time.monotonic()
        c.sock.settimeout(interval)
        for i in range(len(data)):
            if time.monotonic() - t0 > stop_after:
                break
            try:
                c.sock.sendall(data[i:i + 1])
            except OSError:
                break
            try:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                got += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                # our next byte hit the closed socket before we read the 421: the reset
                # may discard it; the server's log says what it did
                break
        return got

    def session_lines(self, srv, event):
        return [l for l in srv.log_lines() if ("event=%s " % event) in l]

    def test_trickled_command_line_is_cut(self):
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"timeout_command_ms": 2000, "timeout_data_ms": 2000}) as srv:
            c = connect(srv, "submission")
            got = self.trickle(c, b"EHLO a-client-that-trickles.example.test\r\n", 0.3, 12)
            if got:
                self.assertIn(b"421 4.4.2", got, got)
            wait_log(srv, "reason=line_deadline")
            sid_line = [l for l in srv.log_lines() if "reason=line_deadline" in l]
            self.assertEqual(len(sid_line), 1, srv.log())
            sid = re.search(r"sid=(\S+)", sid_line[0]).group(1)
            start = [l for l in srv.log_lines() if "event=connect " in l and sid in l][0]
            dt = log_ms(sid_line[0]) - log_ms(start)
            # the first byte came right after the greeting: cut 2 s later, far before the
            # 12 s the line would take, though every byte came well within the idle timeout
            self.assertGreaterEqual(dt, 1900)
            self.assertLess(dt, 5000)
            c.close()

    def test_trickled_data_line_is_cut_but_slow_lines_are_not(self):
        with Server(users=STD_USERS, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"timeout_command_ms": 2000, "timeout_data_ms": 2000}) as srv:
            # whole lines with pauses of 1.2 s (under the 2 s timeout): never cut
            c = connect(srv, "submission")
            for cmd in ("EHLO x.example.test", "AUTH PLAIN " +
                        base64.b64encode(b"\0" + ALICE.login.encode() + b"\0" +
                                         ALICE.password.encode()).decode(),
                        "MAIL FROM:<alice@example.test>", "RCPT TO:<al@example.test>"):
                time.sleep(1.2)
                r = c.cmd(cmd)
                self.assertLess(r.code, 400, r)
            assert_reply(c.cmd("DATA"), "354")
            for i in range(3):
                time.sleep(1.2)
                c.send(b"line %d\r\n" % i)
            c.send(b".\r\n")
            assert_reply(c.read_reply(), R_QUEUED)
            c.close()
            # one byte every 0.3 s inside DATA: cut after the data timeout
            c = connect(srv, "submission")
            c.ehlo()
            assert_reply(c.auth_plain(ALICE.login, ALICE.password), R_AUTH_OK)
            assert_reply(c.cmd("MAIL FROM:<alice@example.test>"), "250")
            assert_reply(c.cmd("RCPT TO:<al@example.test>"), "250")
            assert_reply(c.cmd("DATA"), "354")
            got = self.trickle(c, b"Subject: a header that trickles in for a long time\r\n",
                               0.3, 12)
            self.assertIn(b"421 4.4.2", got, got)
            self.assertEqual(len([l for l in srv.log_lines() if "reason=line_deadline" in l]), 1)
            c.close()


class Transactions(unittest.TestCase):
    """Items 17 and 20 of issue 10."""

    def test_more_than_64_local_owners_all_delivered(self):
        n = 70
        users = [User("o%d@owners.test" % i, "owner-pw-%d" % i) for i in range(n)]
        # One account through the CLI (the schema), the others as rows like it: `user add`
        # derives every verifier with an fsync each, 70 of them would take half a minute, and
        # receiving mail needs only the account (its login is its address).
        with Server(users=users[:1], listeners={"mx": "mx"}, start=False) as srv:
            srv.start()
            import sqlite3
            db = sqlite3.connect(os.path.join(srv.data_dir, "smtpgate.db"), timeout=30)
            with db:
                row = db.execute("SELECT created, updated FROM accounts WHERE login = ?",
                                 (users[0].login,)).fetchone()
                db.executemany("INSERT INTO accounts(login, domain, disabled, created, updated) "
                               "VALUES (?, 'owners.test', 0, ?, ?)",
                               [(u.login, row[0], row[1]) for u in users[1:]])
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            db.close()
            c = srv.raw("mx")
            c.ehlo()
            assert_reply(c.cmd("MAIL FROM:<sender@remote.test>"), "250")
            for u in users:
                assert_reply(c.cmd("RCPT TO:<%s>" % u.login), "250", u.login)
            assert_reply(c.data(b"Subject: to many\r\n\r\nhello all\r\n"), R_QUEUED)
            c.close()
            missing = [u.login for u in users if len(srv.messages(u.login)) != 1]
            self.assertEqual(missing, [], "a 250 was given for these, nothing delivered")

    def test_disable_passwd_del_end_the_right_to_submit(self):
        users = [User("dis@example.test", "dis-Secret-1"), User("pw@example.test", "pw-Secret-2"),
                 User("del@example.test", "del-Secret-3"), User("keep@example.test", "keep-S-4")]
        with Server(users=users, listeners={"submission": PLAIN_SUBMISSION},
                    settings={"max_auth_attempts": 10}) as srv:   # smtplib tries 3 mechanisms
            sessions = {}
            for u in users:
                s = smtplib.SMTP(HOST, srv.port("submission"), timeout=20)
                s.ehlo()
                s.login(u.login, u.password)
                code, _ = s.mail(u.login)           # allowed before the change
                self.assertEqual(code, 250)
                s.rset()
                sessions[u.login] = s
            srv.user("disable", "dis@example.test")
            srv.user("passwd", "pw@example.test", "--password-stdin", input="new-Secret-9\n")
            srv.user("del", "del@example.test")
            for login in ("dis@example.test", "pw@example.test", "del@example.test"):
                code, text = sessions[login].mail(login)
                self.assertEqual(code, 530, "%s: %s %s" % (login, code, text))
                self.assertIn(b"5.7.0", text)
            # another account is unaffected by the changes
            self.assertEqual(sessions["keep@example.test"].mail("keep@example.test")[0], 250)
            # the changed password works on the same connection, the old one does not
            s = sessions["pw@example.test"]
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.login("pw@example.test", "pw-Secret-2")
            s.login("pw@example.test", "new-Secret-9")
            self.assertEqual(s.mail("pw@example.test")[0], 250)
            for s in sessions.values():
                s.close()
            self.assertIn("reason=account_changed", srv.log())


if __name__ == "__main__":
    unittest.main()
