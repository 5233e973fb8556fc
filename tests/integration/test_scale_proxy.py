"""PROXY protocol v1/v2 on listeners (issue 15) behind a real HAProxy in TCP mode.

One smtpgate with three PROXY listeners (STARTTLS submission, implicit-TLS submissions, and a
second submission listener that trusts only an address HAProxy does not use) and one ordinary
listener; one private HAProxy with a send-proxy-v2 backend (health-checked with the PROXY
header), a send-proxy (v1) backend, an implicit-TLS send-proxy-v2 backend and one towards the
listener that does not trust it. Clients connect to HAProxy from a distinct 127.0.0.x source:
the auth event log (read over the HTTP API), Received: and the session log must show that
address, not HAProxy's. Refusals are sent by hand: untrusted peer, malformed and truncated
headers, a v2 UNIX-family header, no header before the deadline, a header after the greeting.
"""

import re
import smtplib
import socket
import ssl
import struct
import subprocess
import time
import unittest

import harness
import scale_util
from harness import HOST, User
from scale_util import HAProxy, http_json, wait_for

ALICE = User("alice@example.test", "alice-pw-1")
SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def pp2(vc, fam, body):
    return SIG + bytes([vc, fam]) + struct.pack(">H", len(body)) + body


def message(rcpt, subject):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (ALICE.login, rcpt, subject)).encode()


class ProxyProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        scale_util.require("haproxy", "haproxy")
        trusted = {"proxy_protocol": "yes", "proxy_trusted": "127.0.0.1/32"}
        cls.srv = scale_util.start_node(
            users=[ALICE],
            listeners={"sub": dict(role="submission", **trusted),
                       "subs": dict(role="submissions", **trusted),
                       "picky": dict(role="submission", proxy_protocol="yes",
                                     proxy_trusted="127.0.0.99/32, ::1"),
                       "plain": "submission"},
            settings={"timeout_proxy_ms": 1000})
        srv = cls.srv
        try:
            cls.hap = HAProxy([
                {"name": "v2", "servers": [(HOST, srv.port("sub"))], "send_proxy": "v2", "check": "smtp"},
                {"name": "v1", "servers": [(HOST, srv.port("sub"))], "send_proxy": "v1"},
                {"name": "tls", "servers": [(HOST, srv.port("subs"))], "send_proxy": "v2"},
                {"name": "picky", "servers": [(HOST, srv.port("picky"))], "send_proxy": "v2"},
            ])
        except BaseException:
            srv.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.hap.cleanup()
        cls.srv.stop()
        probs = cls.srv.problems()
        if probs:
            cls.srv.print_log_tail("; ".join(probs))
        cls.srv.cleanup()
        assert not probs, probs

    def events(self):
        return http_json(self.srv.http_port, "/api/v1/auth-events?limit=50")["events"]

    def send_through(self, frontend, source, subject, implicit=False):
        ctx = harness.tls_context()
        port = self.hap.port(frontend)
        if implicit:
            s = smtplib.SMTP_SSL(HOST, port, context=ctx, timeout=10, source_address=(source, 0),
                                 local_hostname="client.example.test")
        else:
            s = smtplib.SMTP(HOST, port, timeout=10, source_address=(source, 0),
                             local_hostname="client.example.test")
            s.ehlo()
            s.starttls(context=ctx)
        s.ehlo()
        s.login(ALICE.login, ALICE.password)
        s.sendmail(ALICE.login, [ALICE.login], message(ALICE.login, subject))
        s.quit()

    def stored_with(self, subject):
        for mid in self.srv.messages(ALICE.login):
            raw = self.srv.read_message(ALICE.login, mid)
            if ("Subject: %s\r\n" % subject).encode() in raw:
                return raw
        return None

    def check_client(self, source, subject):
        raw = wait_for(lambda: self.stored_with(subject), what="message " + subject)
        received = raw.split(b"\r\n\r\n", 1)[0]
        self.assertIn(("([%s])" % source).encode(), received)
        self.assertNotIn(b"([127.0.0.1])", received)
        ok = [e for e in self.events() if e["result"] == "ok" and e["client_ip"] == source]
        self.assertTrue(ok, "no successful AUTH from %s in the event log" % source)

    def test_v2_starttls_real_client_address(self):
        self.send_through("v2", "127.0.0.7", "via-v2")
        self.check_client("127.0.0.7", "via-v2")
        self.assertRegex(self.srv.log(), r"proxy listener=sub peer=127\.0\.0\.1 version=2 client=127\.0\.0\.7")

    def test_v1_starttls_real_client_address(self):
        self.send_through("v1", "127.0.0.8", "via-v1")
        self.check_client("127.0.0.8", "via-v1")
        self.assertRegex(self.srv.log(), r"proxy listener=sub peer=127\.0\.0\.1 version=1 client=127\.0\.0\.8")

    def test_v2_implicit_tls(self):
        """The header comes before the ClientHello: only its octets are taken from the socket."""
        self.send_through("tls", "127.0.0.9", "via-tls", implicit=True)
        self.check_client("127.0.0.9", "via-tls")

    def test_swaks_through_haproxy(self):
        harness.require_tool("swaks")
        r = subprocess.run(["swaks", "--server", HOST, "--port", str(self.hap.port("v2")),
                            "--local-interface", "127.0.0.10", "--tls", "--auth", "PLAIN",
                            "--auth-user", ALICE.login, "--auth-password", ALICE.password,
                            "--from", ALICE.login, "--to", ALICE.login,
                            "--header", "Subject: via-swaks", "--timeout", "10"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout[-800:] + r.stderr[-400:])
        self.check_client("127.0.0.10", "via-swaks")

    def test_health_check_local_header(self):
        """HAProxy's check-send-proxy checks send a v2 LOCAL header: the socket's address is used."""
        wait_for(lambda: "version=2 client=127.0.0.1" in self.srv.log() and "local=yes" in self.srv.log(),
                 what="a LOCAL health check")

    def test_untrusted_balancer_refused(self):
        with socket.create_connection((HOST, self.hap.port("picky")), timeout=5) as c:
            c.settimeout(5)
            self.assertEqual(c.recv(100), b"")      # closed, nothing sent
        wait_for(lambda: re.search(r"proxy_refused listener=picky peer=127\.0\.0\.1 port=\d+ reason=untrusted",
                                   self.srv.log()), what="untrusted log line")

    def direct(self, payload, source=HOST, listener="sub", then_wait=5):
        with socket.create_connection((HOST, self.srv.port(listener)), timeout=then_wait,
                                      source_address=(source, 0)) as c:
            if payload:
                c.sendall(payload)
            c.settimeout(then_wait)
            data = b""
            try:
                while True:
                    b = c.recv(1000)
                    if not b:
                        break
                    data += b
            except ConnectionResetError:
                pass
            return data

    def refused(self, payload, reason, source=HOST):
        t0 = time.monotonic()
        self.assertEqual(self.direct(payload, source=source), b"")
        wait_for(lambda: reason in self.srv.log(), what="log: " + reason)
        return time.monotonic() - t0

    def test_direct_untrusted_source(self):
        self.refused(b"PROXY TCP4 10.9.9.9 127.0.0.1 1000 25\r\nEHLO x\r\n", "peer=127.0.0.11 port=",
                     source="127.0.0.11")
        self.assertNotIn("10.9.9.9", self.srv.log())

    def test_malformed_v1(self):
        self.refused(b"PROXY TCP4 10.1.1.1 127.0.0.1 99999 25\r\n", 'reason="v1: bad port"')
        self.refused(b"PROXY TCP4 10.1.1.1 ::1 1 25\r\n", 'reason="v1: address does not match')
        self.refused(b"EHLO no.header\r\n", 'reason="no PROXY protocol header"')

    def test_v2_unsupported_family(self):
        self.refused(pp2(0x21, 0x31, bytes(216)), 'reason="v2: unsupported address family')

    def test_truncated_headers(self):
        # half a header, then silence: the deadline (timeout_proxy_ms = 1000) ends it
        took = self.refused(pp2(0x21, 0x11, bytes(12))[:20], 'reason="truncated header"')
        self.assertLess(took, 5)
        self.refused(pp2(0x21, 0x11, bytes([127, 0, 0, 1] * 2) + b"\x00\x01\x00\x02" + b"\x01\x00\x09ab"),
                     'reason="v2: TLV longer than the header"')

    def test_no_header_before_deadline(self):
        """A client that waits for a greeting gets none, and is closed at the deadline."""
        self.refused(b"", 'reason="no header before the deadline"')

    def test_header_after_greeting(self):
        """On an ordinary listener a PROXY line after the greeting is an unknown command: the
        address it claims is never used."""
        c = harness.RawClient(self.srv.port("plain"))
        code, _ = c.cmd("PROXY TCP4 10.7.7.7 127.0.0.1 1000 25")
        self.assertEqual(code, 500)
        c.ehlo()
        c.quit()
        self.assertNotIn("10.7.7.7", "\n".join(l for l in self.srv.log_lines() if "client=" in l))


if __name__ == "__main__":
    unittest.main()
