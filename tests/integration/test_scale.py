"""Several smtpgate nodes on one PostgreSQL behind HAProxy (issue 15), all real parts on loopback.

One private PostgreSQL cluster (initdb + pg_ctl, pg_cluster.py), schema created by two
`smtpgate db migrate` runs at once; two smtpgate nodes with store = postgresql, each with a
PROXY listener (STARTTLS and implicit TLS) and a plain one; one private HAProxy in TCP mode with
send-proxy-v2 and HTTP health checks on each node's GET /readyz. Accounts are created with the
CLI through node A's configuration; clients authenticate through HAProxy (round robin, so both
nodes serve them) and directly at node B, from distinct 127.0.0.x sources:

  - smtplib PLAIN, msmtp SCRAM-SHA-256 and XOAUTH2 (a token minted against the shared store),
    swaks PLAIN: every message stored, its Received: naming the client's own address;
  - an account disabled through node A is refused at once by node B (with B's auth cache warm);
  - kill -9 of node B while clients send through HAProxy: clients reconnect, HAProxy sends them
    to node A, and every message that got a 250 is on disk afterwards;
  - PostgreSQL stopped while clients authenticate: 454 4.7.0 only (never 535, never a crash),
    /readyz says 503 so HAProxy stops sending clients, and service returns within seconds.
"""

import os
import re
import secrets
import select
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import http.client
import json

import harness
import pg_cluster
import scale_util
from harness import HOST, User
from scale_util import HAProxy, http_get, http_json, wait_for

ALICE = User("alice@example.test", "alice-pw-1")
BOB = User("bob@example.test", "bob-pw-2")
CAROL = User("carol@example.test", "carol-pw-3")
THRESHOLD = 5          # throttle_ip_threshold of both nodes


def message(sender, subject):
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nscale test\r\n" % (sender, sender, subject)).encode()


class ScaleOut(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        scale_util.require("haproxy", "haproxy")
        cls.pg = pg_cluster.PgCluster()
        cls.nodes = []
        cls.hap = None
        try:
            cls._setup()
        except BaseException:
            cls._teardown()
            raise

    @classmethod
    def _setup(cls):
        pg = cls.pg
        cls.tmp = tempfile.mkdtemp(prefix="sg-scale-", dir=pg.tmp)
        # the CLI's configuration: the password in a 0600 file (pg_conninfo_file)
        conninfo_file = os.path.join(cls.tmp, "pg.conninfo")
        with open(conninfo_file, "w") as f:
            f.write(pg.conninfo + "\n")
        os.chmod(conninfo_file, 0o600)
        cls.oauth_key = os.path.join(cls.tmp, "oauth.key")
        with open(cls.oauth_key, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(cls.oauth_key, 0o644)     # the nodes drop root: they must read it
        cls.cli_conf = os.path.join(cls.tmp, "cli.conf")
        with open(cls.cli_conf, "w") as f:
            f.write("store = postgresql\npg_conninfo_file = %s\noauth_secret_file = %s\n"
                    "data_dir = %s/cli-data\n" % (conninfo_file, cls.oauth_key, cls.tmp))
        # two nodes migrating at once: each step applied exactly once
        procs = [subprocess.Popen([harness.binary(), "db", "--config", cls.cli_conf, "migrate"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=60) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, (out, err)
        cls.migrate_outputs = sorted(o for o, _ in outs)
        for u in (ALICE, BOB, CAROL):
            cls.cli("user", "add", u.login, "--password-stdin", input=u.password + "\n")
        proxy = {"proxy_protocol": "yes", "proxy_trusted": "127.0.0.1/32"}
        settings = {"store": "postgresql", "pg_conninfo": pg.conninfo, "pg_pool_size": 4,
                    "oauth_secret_file": cls.oauth_key, "auth_cache_ttl_ms": 60000, "loops": 1,
                    "throttle_ip_threshold": THRESHOLD, "throttle_cooloff_ms": 600000,
                    "throttle_max_delay_ms": 200}
        for _ in range(2):
            cls.nodes.append(scale_util.start_node(
                settings=settings,
                listeners={"sub": dict(role="submission", **proxy),
                           "subs": dict(role="submissions", **proxy),
                           "direct": "submission", "mx": "mx"}))
        cls.a, cls.b = cls.nodes
        checks = "readyz:%d,%d" % (cls.a.http_port, cls.b.http_port)
        cls.hap = HAProxy([
            {"name": "sub", "send_proxy": "v2", "check": checks,
             "servers": [(HOST, n.port("sub")) for n in cls.nodes]},
            {"name": "subs", "send_proxy": "v2", "check": checks,
             "servers": [(HOST, n.port("subs")) for n in cls.nodes]},
        ])

    @classmethod
    def cli(cls, *args, input=None, check=True):
        r = subprocess.run([harness.binary(), args[0], "--config", cls.cli_conf] + list(args[1:]),
                           input=input, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("smtpgate %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r

    @classmethod
    def _teardown(cls):
        probs = []
        if cls.hap is not None:
            cls.hap.cleanup()
        for n in cls.nodes:
            n.stop()
            p = n.problems()
            if p:
                n.print_log_tail("; ".join(p))
                probs += p
            n.cleanup()
        cls.pg.cleanup()
        return probs

    @classmethod
    def tearDownClass(cls):
        probs = cls._teardown()
        assert not probs, probs

    # -- helpers -------------------------------------------------------------------------
    def smtp_via(self, source, implicit=False, port=None, proxy_from=None):
        ctx = harness.tls_context()
        if proxy_from is not None:
            # straight to a node's PROXY listener, the header written as HAProxy would
            sock = socket.create_connection((HOST, port), timeout=10)
            sport = sock.getsockname()[1]
            sock.sendall(("PROXY TCP4 %s 127.0.0.1 %d %d\r\n" % (proxy_from, sport, port)).encode())
            s = smtplib.SMTP(timeout=10, local_hostname="client.example.test")
            s.sock = sock
            s.file = None
            s._host = HOST
            code, msg = s.getreply()
            assert code == 220, (code, msg)
            s.ehlo()
            s.starttls(context=ctx)
            s.ehlo()
            return s
        if implicit:
            s = smtplib.SMTP_SSL(HOST, port or self.hap.port("subs"), context=ctx, timeout=10,
                                 source_address=(source, 0), local_hostname="client.example.test")
        else:
            s = smtplib.SMTP(HOST, port or self.hap.port("sub"), timeout=10,
                             source_address=(source, 0), local_hostname="client.example.test")
            s.ehlo()
            s.starttls(context=ctx)
        s.ehlo()
        return s

    def subjects(self, node, login):
        """{subject: id} of an inbox, read through the node's API (the messages live in
        PostgreSQL: every node lists every node's captures)."""
        out, before = {}, None
        for _page in range(100):
            path = "/api/v1/inboxes/%s/messages?limit=200" % urllib.parse.quote(login, safe="")
            if before:
                path += "&before=" + before
            d = http_json(node.http_port, path)
            for m in d["messages"]:
                out[m.get("subject")] = m["id"]
            before = d.get("next_before")
            if not before:
                break
        return out

    def raw(self, node, mid):
        status, body = http_get(node.http_port, "/api/v1/messages/%s/raw" % mid)
        return body if status == 200 else None

    def find_message(self, login, subject, nodes=None):
        for n in nodes or [x for x in self.nodes if x.proc is not None]:
            mid = self.subjects(n, login).get(subject)
            if mid is not None:
                raw = self.raw(n, mid)
                if raw is not None:
                    return n, raw
        return None

    def check_stored(self, login, subject, source):
        """The message is readable through both nodes' APIs, its Received: names the client's
        own address; returns the node that accepted it (its log shows the PROXY header)."""
        for n in self.nodes:
            found = wait_for(lambda: self.find_message(login, subject, [n]), what="message " + subject)
            received = found[1].split(b"\r\n\r\n", 1)[0]
            self.assertIn(("([%s])" % source).encode(), received)
        served = [n for n in self.nodes if re.search(r"event=proxy listener=subs? peer=127\.0\.0\.1 version=2 "
                                                     r"client=%s " % re.escape(source), n.log())]
        self.assertTrue(served, "no node logged the PROXY header for %s" % source)
        return served[-1]

    # -- tests -----------------------------------------------------------------------------
    def test_migrate_concurrent_and_idempotent(self):
        latest = int(self.pg.psql("SELECT max(version) FROM sg_schema_version", db="smtpgate"))
        self.assertGreaterEqual(latest, 2)
        self.assertEqual(self.migrate_outputs, ["schema already at version %d\n" % latest,
                                                "schema migrated from version 0 to %d\n" % latest])
        self.assertEqual(int(self.pg.psql("SELECT count(*) FROM sg_schema_version", db="smtpgate")), latest)
        r = self.cli("db", "status")
        self.assertIn("version %d, this smtpgate needs %d" % (latest, latest), r.stdout)

    def test_conninfo_file_must_be_private(self):
        path = os.path.join(self.tmp, "pg.conninfo")
        os.chmod(path, 0o644)
        try:
            r = self.cli("user", "list", check=False)
        finally:
            os.chmod(path, 0o600)
        self.assertEqual(r.returncode, 1)
        self.assertIn("chmod 600", r.stderr)

    def test_smtplib_plain_both_nodes_real_address(self):
        served = set()
        for i in range(4):
            source = "127.0.0.%d" % (31 + i)
            subject = "smtplib-plain-%d-%s" % (i, secrets.token_hex(4))
            s = self.smtp_via(source, implicit=(i % 2 == 1))
            s.login(ALICE.login, ALICE.password)
            s.sendmail(ALICE.login, [ALICE.login], message(ALICE.login, subject))
            s.quit()
            served.add(self.check_stored(ALICE.login, subject, source).http_port)
        self.assertEqual(len(served), 2, "round robin should have used both nodes")

    def test_msmtp_scram_and_xoauth2(self):
        scale_util.require("msmtp", "msmtp")
        token = self.cli("token", "issue", BOB.login).stdout.strip()
        for mech, secret, source in (("SCRAM-SHA-256", BOB.password, "127.0.0.41"),
                                     ("XOAUTH2", token, "127.0.0.42")):
            for _round in range(2):       # round robin: one message per node
                subject = "msmtp-%s-%s" % (mech, secrets.token_hex(4))
                d = tempfile.mkdtemp(dir=self.tmp)
                with open(os.path.join(d, "secret"), "w") as f:
                    f.write(secret)
                conf = os.path.join(d, "msmtprc")
                with open(conf, "w") as f:
                    f.write("\n".join([
                        "defaults", "logfile -", "timeout 20", "", "account test",
                        "host %s" % HOST, "port %d" % self.hap.port("sub"), "source_ip %s" % source,
                        "domain client.example.test", "from %s" % BOB.login,
                        "tls on", "tls_starttls on", "tls_certcheck off",
                        "auth %s" % mech.lower(), "user %s" % BOB.login,
                        'passwordeval "cat %s"' % os.path.join(d, "secret"),
                        "", "account default : test", ""]))
                os.chmod(conf, 0o600)
                r = subprocess.run(["msmtp", "-C", conf, BOB.login], input=message(BOB.login, subject),
                                   capture_output=True, timeout=60)
                self.assertEqual(r.returncode, 0, (mech, r.stdout[-1500:], r.stderr[-500:]))
                self.check_stored(BOB.login, subject, source)
        for n in self.nodes:
            mechs = {e.fields["mech"] for e in n.events("auth", login=BOB.login, result="ok")
                     if e.fields.get("client") in ("127.0.0.41", "127.0.0.42")}
            self.assertEqual(mechs, {"SCRAM-SHA-256", "XOAUTH2"}, "node %d" % n.http_port)

    def test_swaks_plain(self):
        harness.require_tool("swaks")
        subject = "swaks-" + secrets.token_hex(4)
        r = subprocess.run(["swaks", "--server", HOST, "--port", str(self.hap.port("sub")),
                            "--local-interface", "127.0.0.51", "--tls", "--auth", "PLAIN",
                            "--auth-user", CAROL.login, "--auth-password", CAROL.password,
                            "--from", CAROL.login, "--to", CAROL.login,
                            "--header", "Subject: " + subject, "--timeout", "20"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout[-1500:])
        self.check_stored(CAROL.login, subject, "127.0.0.51")

    def test_disable_on_a_refused_at_once_on_b(self):
        user = User("dora@example.test", "dora-pw-4")
        self.cli("user", "add", user.login, "--password-stdin", input=user.password + "\n")
        for _ in range(2):                   # the second success comes from B's auth cache
            s = self.smtp_via("127.0.0.61", port=self.b.port("direct"))
            s.login(user.login, user.password)
            s.quit()
        self.cli("user", "disable", user.login)
        s = self.smtp_via("127.0.0.61", port=self.b.port("direct"))
        with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
            s.login(user.login, user.password)
        self.assertEqual(cm.exception.smtp_code, 535)
        s.close()
        self.cli("user", "enable", user.login)
        s = self.smtp_via("127.0.0.61", port=self.b.port("direct"))
        s.login(user.login, user.password)
        s.quit()
        self.cli("user", "passwd", user.login, "--password-stdin", input="new-pw\n")
        s = self.smtp_via("127.0.0.61", port=self.b.port("direct"))
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            s.login(user.login, user.password)
        s.close()

    def test_auth_log_and_live_stream_across_nodes(self):
        """An AUTH on node A appears in node B's auth event log (API) with the client's own
        address, and in node B's live stream (SSE) within a moment (LISTEN/NOTIFY)."""
        c = http.client.HTTPConnection(HOST, self.b.http_port, timeout=10)
        c.request("GET", "/api/v1/events")
        stream = c.getresponse()
        self.assertEqual(stream.status, 200)
        try:
            s = self.smtp_via("127.0.0.91", port=self.a.port("sub"), proxy_from="127.0.0.91")
            s.user, s.password = CAROL.login, "wrong-password"
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                s.auth("PLAIN", s.auth_plain)          # one attempt, one mechanism
            s.close()
            got = None
            deadline = time.monotonic() + 10
            event = None
            while got is None and time.monotonic() < deadline:
                line = stream.fp.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "auth":
                    d = json.loads(line[6:])
                    if d.get("client_ip") == "127.0.0.91":
                        got = d
            self.assertIsNotNone(got, "node B's stream did not carry node A's event")
            self.assertEqual((got["login"], got["mechanism"], got["result"], got["reason"]),
                             (CAROL.login, "PLAIN", "fail", "wrong_password"))
        finally:
            c.close()
        for n in self.nodes:
            ev = http_json(n.http_port, "/api/v1/auth-events?login=%s&limit=5" % CAROL.login)["events"]
            mine = [e for e in ev if e["client_ip"] == "127.0.0.91"]
            self.assertEqual(len(mine), 1, (n.http_port, ev))
            self.assertEqual(mine[0]["result"], "fail")

    def test_brute_force_spread_over_both_nodes(self):
        """Guesses from one address alternating between the nodes are refused after
        throttle_ip_threshold failures in all, as on one node: the other node's failures are
        counted too (sg_throttle upserts + NOTIFY)."""
        codes = []
        for i in range(THRESHOLD + 3):
            node = self.nodes[i % 2]
            s = self.smtp_via("127.0.0.97", port=node.port("sub"), proxy_from="127.0.0.97")
            s.user, s.password = BOB.login, "guess-%d" % i      # a new secret each time
            try:
                s.auth("PLAIN", s.auth_plain)
                codes.append(235)
            except smtplib.SMTPAuthenticationError as e:
                codes.append(e.smtp_code)
            s.close()
        self.assertEqual(codes, [535] * THRESHOLD + [454] * 3)
        for n in self.nodes:
            self.assertTrue(n.events("auth", client="127.0.0.97", result="throttled"),
                            "node %d never refused the address" % n.http_port)
        rows = self.pg.psql("SELECT count(DISTINCT node), sum(failures) FROM sg_throttle"
                            " WHERE addr = '127.0.0.97'", db="smtpgate").strip()
        self.assertEqual(rows, "2|%d" % THRESHOLD)
        # another address is not affected
        s = self.smtp_via("127.0.0.98", port=self.a.port("sub"), proxy_from="127.0.0.98")
        s.login(BOB.login, BOB.password)
        s.quit()

    def test_fault_rule_on_every_node(self):
        """A fault rule added with the CLI (node A's configuration) applies on both nodes, and
        its deletion too (NOTIFY sg_faults)."""
        def mail_reply(node):
            s = self.smtp_via("127.0.0.99", port=node.port("direct"))
            s.login(CAROL.login, CAROL.password)
            code, text = s.mail(CAROL.login)
            s.close()
            return code, text

        r = self.cli("fault", "add", "--spec", "stage=mail reply=451 4.3.2 injected by the test login=%s"
                     % CAROL.login)
        rule = r.stdout.strip()
        for n in self.nodes:
            wait_for(lambda: mail_reply(n) == (451, b"4.3.2 injected by the test"), what="the rule on a node")
        listed = self.cli("fault", "list").stdout
        self.assertIn("injected by the test", listed)
        self.cli("fault", "clear", rule)
        for n in self.nodes:
            wait_for(lambda: mail_reply(n)[0] == 250, what="the rule gone on a node")

    def test_slow_lookup_never_stalls_the_loop(self):
        """Queries never run on the event loop: a RCPT whose lookup waits for the database (a lock
        another transaction holds on the addresses table) waits on the worker pool, and on the
        same loop (loops = 1) another client is greeted and served meanwhile. The held RCPT is
        answered once the lock goes. (With the lookup on the loop, the second client would get
        no greeting until the lock went: this test would time out.)"""
        node = self.a
        held = socket.create_connection((HOST, node.port("mx")), timeout=10)
        rf = held.makefile("rb")

        def reply():
            lines = []
            while True:
                line = rf.readline()
                if not line:
                    raise AssertionError("connection closed after %r" % lines)
                lines.append(line)
                if line[3:4] != b"-":
                    return int(line[:3]), b"".join(lines)

        self.assertEqual(reply()[0], 220)
        held.sendall(b"EHLO client.example.test\r\n")
        self.assertEqual(reply()[0], 250)
        held.sendall(b"MAIL FROM:<someone@elsewhere.test>\r\n")
        self.assertEqual(reply()[0], 250)
        ghost = "ghost-%s@example.test" % secrets.token_hex(6)    # never looked up: no cached answer
        lock = self.pg.session()
        try:
            lock.stdin.write("BEGIN;\nLOCK TABLE addresses IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
            lock.stdin.flush()
            self.assertEqual(lock.stdout.readline().strip(), "locked", lock.stderr)
            held.sendall(("RCPT TO:<%s>\r\n" % ghost).encode())
            # the lookup is in flight: its query waits for the lock
            wait_for(lambda: self.pg.psql("SELECT count(*) FROM pg_locks WHERE NOT granted",
                                          db="smtpgate").strip() not in ("", "0"),
                     what="the RCPT lookup waiting for the lock")
            other = smtplib.SMTP(HOST, node.port("mx"), timeout=10, local_hostname="other.example.test")
            self.assertEqual(other.ehlo()[0], 250)
            self.assertEqual(other.mail("someone@elsewhere.test")[0], 250)
            self.assertEqual(other.rset()[0], 250)
            self.assertEqual(other.noop()[0], 250)
            other.quit()
            # all that while the held RCPT is still unanswered
            self.assertEqual(select.select([held], [], [], 0)[0], [], "the held RCPT was answered early")
        finally:
            try:
                lock.stdin.write("COMMIT;\n")
                lock.stdin.close()
            except OSError:
                pass
            lock.wait(10)
        code, text = reply()
        self.assertEqual(code, 550, text)        # no such user, once the lookup could run
        held.sendall(b"QUIT\r\n")
        self.assertEqual(reply()[0], 221)
        held.close()

    def test_y_postgresql_outage(self):
        """Runs after the others (name): PostgreSQL stopped, then started again."""
        direct = [n.port("direct") for n in self.nodes]
        results = []
        stop = threading.Event()

        def client():
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    s = self.smtp_via("127.0.0.71", port=direct[i % 2])
                    try:
                        s.login(ALICE.login, ALICE.password)
                        results.append((time.monotonic(), 235))
                    except smtplib.SMTPAuthenticationError as e:
                        results.append((time.monotonic(), e.smtp_code))
                    s.close()
                except (OSError, smtplib.SMTPException) as e:
                    results.append((time.monotonic(), repr(e)))
                time.sleep(0.05)

        # a session authenticated before the outage, sending during it: 451 4.3.0
        held = self.smtp_via("127.0.0.73", port=direct[0])
        held.login(ALICE.login, ALICE.password)
        t = threading.Thread(target=client)
        t.start()
        try:
            time.sleep(0.5)
            self.pg.stop("fast")
            down = time.monotonic()
            # the sender check or the commit needs the database: a 451 4.3.0, never a 5xx
            code, text = held.mail(ALICE.login)
            if code == 250:
                code, text = held.rcpt(ALICE.login)
            if code == 250:
                code, text = held.data(message(ALICE.login, "during-outage"))
            self.assertEqual((code, text[:5]), (451, b"4.3.0"))
            held.quit()
            # an mx recipient the node has not looked up yet: 451 4.3.0 too (never a 550)
            mx = smtplib.SMTP(HOST, self.a.port("mx"), timeout=10, local_hostname="client.example.test")
            mx.ehlo()
            self.assertEqual(mx.mail("someone@elsewhere.test")[0], 250)
            code, text = mx.rcpt("ghost-%s@example.test" % secrets.token_hex(6))
            self.assertEqual((code, text[:5]), (451, b"4.3.0"))
            mx.quit()
            wait_for(lambda: any(r[0] > down and r[1] == 454 for r in results), what="a 454 during the outage")
            for n in self.nodes:
                self.assertEqual(http_get(n.http_port, "/readyz")[0], 503)
            self.pg.start()
            up = time.monotonic()
            wait_for(lambda: any(r[0] > up and r[1] == 235 for r in results), timeout=15,
                     what="service after PostgreSQL returned")
            back = min(r[0] for r in results if r[0] > up and r[1] == 235) - up
            self.assertLess(back, 10)
        finally:
            stop.set()
            t.join(30)
        codes = {r[1] for r in results}
        self.assertTrue(codes <= {235, 454}, codes)       # never a 535, never a dropped connection
        for n in self.nodes:
            self.assertIsNotNone(n.proc)
            self.assertIsNone(n.proc.poll())
            wait_for(lambda: http_get(n.http_port, "/readyz")[0] == 200, what="ready again")
        # through HAProxy again, once its health checks (inter 2s, rise 2) have seen the
        # nodes ready: until then it has no server for the client and closes the connection
        def through_haproxy():
            try:
                s = self.smtp_via("127.0.0.72")
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                return False
            s.login(ALICE.login, ALICE.password)
            s.quit()
            return True
        wait_for(through_haproxy, timeout=30, step=0.5, what="HAProxy sends clients to the nodes again")

    def test_z_kill9_failover(self):
        """Runs last (name): node B is killed with SIGKILL while clients send through HAProxy."""
        accepted = []          # (queue id, subject)
        errors = []
        stop = threading.Event()

        def client(k):
            i = 0
            while not stop.is_set() and i < 400:
                i += 1
                subject = "failover-%d-%d-%s" % (k, i, secrets.token_hex(3))
                try:
                    s = self.smtp_via("127.0.0.%d" % (81 + k))
                    s.login(ALICE.login, ALICE.password)
                    s.mail(ALICE.login)
                    s.rcpt(ALICE.login)
                    code, text = s.data(message(ALICE.login, subject))
                    if code == 250:
                        accepted.append((harness.queued_id(text.decode()), subject))
                    s.quit()
                except (OSError, smtplib.SMTPException) as e:
                    errors.append(repr(e))       # the client reconnects: next loop
                    time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(accepted) >= 10, what="traffic before the kill")
            os.kill(self.b.proc.pid, signal.SIGKILL)
            self.b.proc.wait(10)
            self.b.proc = None                  # expected death: not a problem of the node
            killed_at = len(accepted)
            wait_for(lambda: len(accepted) >= killed_at + 15, timeout=30, what="traffic after the kill")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        stored = self.subjects(self.a, ALICE.login)        # node B is dead: A lists everything
        missing = [s for _id, s in accepted if s not in stored]
        self.assertEqual(missing, [], "messages that got 250 but are not stored")
        self.assertGreater(len(accepted), killed_at)


if __name__ == "__main__":
    unittest.main()
