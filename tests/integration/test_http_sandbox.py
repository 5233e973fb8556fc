"""Sandbox features (issue 14) against the real binary: accept-any mode with real clients
(smtplib, swaks, curl) and made-up credentials, and retention. Python stdlib only."""

import os
import smtplib
import subprocess
import time
import unittest

import harness
from harness import ALICE, BOB, HOST
from test_http import basic, bearer, q, request, start_http_server


class AcceptAnyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = start_http_server((ALICE,), settings={"auth_accept_any": "yes"})
        cls.port = cls.srv.http_port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        probs = cls.srv.problems()
        cls.srv.cleanup()
        if probs:
            raise AssertionError("; ".join(probs))

    def inbox(self, login):
        r = request(self.port, "GET", "/api/v1/inboxes/%s/messages" % q(login), auth=bearer())
        self.assertEqual(r.status, 200, r)
        return r.json()["messages"]

    def send_smtplib(self, login, password, mech, sender="app@made-up.test"):
        s = smtplib.SMTP(HOST, self.srv.port("submission"), timeout=30)
        try:
            s.ehlo()
            s.starttls(context=harness.tls_context())
            s.ehlo()
            s.user, s.password = login, password
            auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login, "CRAM-MD5": s.auth_cram_md5}[mech]
            s.auth(mech, auth, initial_response_ok=mech != "CRAM-MD5")
            s.sendmail(sender, ["someone@example.net"],
                       harness.make_message(sender, "someone@example.net",
                                            "from %s via %s" % (login, mech)))
        finally:
            s.quit()

    def test_made_up_credentials_smtplib(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
            login = "app-%s@made-up.test" % mech.lower()
            self.send_smtplib(login, "anything-%s" % mech, mech)
            msgs = self.inbox(login)
            self.assertEqual([m["subject"] for m in msgs], ["from %s via %s" % (login, mech)])
        ev = request(self.port, "GET", "/api/v1/auth-events?result=accepted_any",
                     auth=bearer()).json()["events"]
        self.assertGreaterEqual(len(ev), 3)
        self.assertIn("result=accepted_any", self.srv.log())
        me = request(self.port, "GET", "/api/v1/me", auth=bearer()).json()
        self.assertTrue(me["accept_any"])

    def test_real_account_keeps_real_checks(self):
        with self.assertRaises(smtplib.SMTPAuthenticationError):
            self.send_smtplib(ALICE.login, "not-alices-password", "PLAIN")
        self.send_smtplib(ALICE.login, ALICE.password, "PLAIN", sender=ALICE.login)
        with self.assertRaises(smtplib.SMTPSenderRefused):   # sender ownership still applies
            self.send_smtplib(ALICE.login, ALICE.password, "PLAIN")
        # other mechanisms are not opened by accept-any
        c = self.srv.raw("submission")
        try:
            c.ehlo()
            c.starttls()
            c.ehlo()
            r = c.cmd("AUTH SCRAM-SHA-256 " + harness.b64(b"n,,n=ghost@made-up.test,r=abcdefghijkl"))
            self.assertNotEqual(r.code, 235)
        finally:
            c.close()

    def test_swaks_and_curl(self):
        swaks = harness.which("swaks")
        if swaks:
            p = subprocess.run([swaks, "--server", "%s:%d" % (HOST, self.srv.port("submission")),
                                "--tls", "--auth", "LOGIN",
                                "--auth-user", "swaks@made-up.test", "--auth-password", "x",
                                "--from", "swaks@made-up.test", "--to", "rcpt@example.net",
                                "--header", "Subject: via swaks"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual([m["subject"] for m in self.inbox("swaks@made-up.test")], ["via swaks"])
        curl = harness.which("curl")
        if curl:
            msg = os.path.join(self.srv.tmp, "curl.eml")
            with open(msg, "wb") as f:
                f.write(b"From: <c@made-up.test>\r\nTo: <r@example.net>\r\nSubject: via curl\r\n\r\nhi\r\n")
            p = subprocess.run([curl, "-sS", "--ssl-reqd", "-k", "--url",
                                "smtp://%s:%d" % (HOST, self.srv.port("submission")),
                                "--user", "curl@made-up.test:whatever", "--login-options", "AUTH=PLAIN",
                                "--mail-from", "c@made-up.test", "--mail-rcpt", "r@example.net",
                                "--upload-file", msg], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertEqual([m["subject"] for m in self.inbox("curl@made-up.test")], ["via curl"])
        if not swaks or not curl:
            self.skipTest("swaks or curl missing")


class AcceptAnyRefusedTest(unittest.TestCase):
    def test_refused_off_loopback(self):
        port = harness.free_port()
        srv = harness.Server(users=(ALICE,), start=False, settings={"auth_accept_any": "yes"},
                             extra_args=["--http", "0.0.0.0:%d" % port])
        try:
            srv.ports = {name: harness.free_port() for name in srv.listeners}
            srv.write_config()
            p = subprocess.run(srv.serve_argv(), capture_output=True, text=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("auth_accept_any", p.stdout + p.stderr)
            self.assertIn("loopback", p.stdout + p.stderr)
        finally:
            srv.cleanup()


class RetentionTest(unittest.TestCase):
    def test_thousand_messages_keep_newest(self):
        srv = start_http_server((BOB,), settings={"max_messages_per_inbox": 100,
                                                   "max_message_age": 4})
        try:
            s = smtplib.SMTP(HOST, srv.port("mx"), timeout=60)
            s.ehlo()
            t_old = None
            for i in range(1000):
                s.sendmail("x@elsewhere.test", [BOB.login],
                           ("From: <x@elsewhere.test>\r\nSubject: n%04d\r\n\r\nbody %d\r\n" % (i, i)).encode())
            s.quit()
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                msgs = request(srv.http_port, "GET", "/api/v1/inboxes/%s/messages?limit=500" % q(BOB.login),
                               auth=bearer()).json()
                if msgs["total"] == 100:
                    break
                time.sleep(0.2)
            self.assertEqual(msgs["total"], 100)
            self.assertEqual(sorted(m["subject"] for m in msgs["messages"]),
                             ["n%04d" % i for i in range(900, 1000)])
            self.assertIn("event=retention", srv.log())
            # age: after max_message_age seconds the next message's pass removes them all
            time.sleep(5)
            s = smtplib.SMTP(HOST, srv.port("mx"), timeout=60)
            s.sendmail("x@elsewhere.test", [BOB.login], b"Subject: fresh\r\n\r\nx\r\n")
            s.quit()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msgs = request(srv.http_port, "GET", "/api/v1/inboxes/%s/messages" % q(BOB.login),
                               auth=bearer()).json()
                if msgs["total"] == 1:
                    break
                time.sleep(0.2)
            self.assertEqual([m["subject"] for m in msgs["messages"]], ["fresh"])
            me = request(srv.http_port, "GET", "/api/v1/me", auth=bearer()).json()
            self.assertEqual(me["retention"], {"max_messages_per_inbox": 100, "max_message_age": 4})
        finally:
            srv.stop()
            probs = srv.problems()
            srv.cleanup()
            self.assertEqual(probs, [])


class WebhookTest(unittest.TestCase):
    """A receiver started by the test gets a signed JSON POST per captured message and per AUTH
    event; a failed delivery is retried with the same delivery id."""

    def test_deliveries_signed_and_retried(self):
        import hashlib
        import hmac
        import http.server
        import json
        import threading

        got = []
        fail_first = {"left": 1}
        cv = threading.Condition()

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with cv:
                    got.append((self.path, dict(self.headers), body))
                    fail = fail_first["left"] > 0
                    fail_first["left"] -= 1
                    cv.notify_all()
                self.send_response(500 if fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        rx = http.server.ThreadingHTTPServer((HOST, 0), H)
        t = threading.Thread(target=rx.serve_forever, daemon=True)
        t.start()
        srv = harness.Server(users=(ALICE,), settings={
            "webhook_url": "http://%s:%d/hook/smtp" % (HOST, rx.server_address[1])})
        try:
            s = smtplib.SMTP(HOST, srv.port("submission"), timeout=30)
            s.starttls(context=harness.tls_context())
            s.login(ALICE.login, ALICE.password)
            s.sendmail(ALICE.login, ["x@example.net"], b"Subject: hooked\r\n\r\nx\r\n")
            s.quit()

            def kinds():
                return [json.loads(b)["type"] for _, _, b in got]
            def retried():
                ids = [h["X-Smtpgate-Delivery"] for _, h, _ in got]
                return len(ids) > 0 and ids.count(ids[0]) >= 2
            with cv:
                ok = cv.wait_for(lambda: "message" in kinds() and "auth" in kinds() and retried(), 30)
            self.assertTrue(ok, kinds())
            secret = bytes.fromhex(open(os.path.join(srv.data_dir, "webhook-secret")).read().strip())
            for path, headers, body in got:
                self.assertEqual(path, "/hook/smtp")
                self.assertEqual(headers["Content-Type"], "application/json")
                mac = hmac.new(secret, headers["X-Smtpgate-Timestamp"].encode() + b"." + body,
                               hashlib.sha256).hexdigest()
                self.assertEqual(headers["X-Smtpgate-Signature"], "sha256=" + mac)
                d = json.loads(body)
                self.assertEqual(d["delivery"], headers["X-Smtpgate-Delivery"])
                self.assertEqual(d["type"], headers["X-Smtpgate-Event"])
            # the first delivery failed (500) and came again with the same id
            first = got[0][1]["X-Smtpgate-Delivery"]
            self.assertGreaterEqual([h["X-Smtpgate-Delivery"] for _, h, _ in got].count(first), 2)
            auth = [json.loads(b)["data"] for _, _, b in got if json.loads(b)["type"] == "auth"]
            self.assertIn(ALICE.login, [a["login"] for a in auth])
            msg = [json.loads(b)["data"] for _, _, b in got if json.loads(b)["type"] == "message"][0]
            self.assertEqual(msg["login"], ALICE.login)
        finally:
            srv.stop()
            probs = srv.problems()
            srv.cleanup()
            rx.shutdown()
            self.assertEqual(probs, [])

    def test_remote_and_https_refused(self):
        for url, why in (("http://192.0.2.1:80/x", "loopback"), ("https://127.0.0.1/x", "http://")):
            srv = harness.Server(users=(ALICE,), start=False, settings={"webhook_url": url})
            try:
                srv.ports = {name: harness.free_port() for name in srv.listeners}
                srv.write_config()
                p = subprocess.run(srv.serve_argv(), capture_output=True, text=True, timeout=30)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(why, p.stdout + p.stderr)
            finally:
                srv.cleanup()


class SpamdTest(unittest.TestCase):
    """The optional spam score, with Debian's spamd started by the test on a free port."""

    def test_score_from_spamd(self):
        spamd = "/usr/sbin/spamd"
        if not os.path.exists(spamd):
            self.skipTest("spamd (Debian package spamd) is not installed")
        port = harness.free_port()
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"), "sg-spamd-%d" % port)
        os.makedirs(tmp, exist_ok=True)
        proc = subprocess.Popen([spamd, "--listen=%s:%d" % (HOST, port), "--max-children=1",
                                 "--nouser-config", "-x", "--syslog=stderr",
                                 "--pidfile=%s/pid" % tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        srv = None
        try:
            import socket
            deadline = time.monotonic() + 90       # spamd loads its rules (about 10 s here)
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError("spamd did not start")
                    time.sleep(0.3)
            srv = start_http_server((BOB,), settings={"spamd_address": "%s:%d" % (HOST, port)})
            gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
            spam_id = None
            for body, name in ((gtube, "spam"), ("Hello Bob, lunch tomorrow?", "ham")):
                s = smtplib.SMTP(HOST, srv.port("mx"), timeout=60)
                r = s.sendmail("x@elsewhere.test", [BOB.login],
                               ("From: <x@elsewhere.test>\r\nTo: <%s>\r\nSubject: %s\r\n"
                                "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <%s@x.test>\r\n\r\n%s\r\n"
                                % (BOB.login, name, name, body)).encode())
                s.quit()
            msgs = request(srv.http_port, "GET", "/api/v1/inboxes/%s/messages" % q(BOB.login),
                           auth=bearer()).json()["messages"]
            ids = {m["subject"]: m["id"] for m in msgs}
            spam = request(srv.http_port, "GET", "/api/v1/messages/%s/spam" % ids["spam"],
                           auth=bearer(), timeout=60).json()
            self.assertTrue(spam["enabled"])
            self.assertTrue(spam["spam"], spam)
            self.assertGreaterEqual(spam["score"], spam["threshold"])
            ham = request(srv.http_port, "GET", "/api/v1/messages/%s/spam" % ids["ham"],
                          auth=bearer(), timeout=60).json()
            self.assertFalse(ham["spam"], ham)
            self.assertLess(ham["score"], ham["threshold"])
        finally:
            if srv is not None:
                srv.stop()
                probs = srv.problems()
                srv.cleanup()
                self.assertEqual(probs, [])
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":
    unittest.main()
