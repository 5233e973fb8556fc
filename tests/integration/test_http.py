"""The sandbox HTTP API (issue 6) against the real binary: access control, paging, search,
message detail, raw, delete, the auth event log, the events stream, fault injection through the
API and the CLI as seen by a real smtplib client, and /metrics.

The server is started with `--http 127.0.0.1:<free port>`; the admin token is fixed by writing
its SHA-256 to <data-dir>/admin-token.sha256 before the first start (what `serve` does itself
with a random token otherwise). Python stdlib only.
"""

import base64
import hashlib
import http.client
import json
import os
import smtplib
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse

import harness
from harness import ALICE, BOB, DAVE, HOST, Server

ADMIN_TOKEN = "sgat_integration-test-token-0123456789"


def http_supported():
    try:
        out = subprocess.run([harness.binary(), "serve", "--help"], capture_output=True, text=True,
                             timeout=10).stdout
    except OSError:
        return False
    return "--http" in out


def start_http_server(users, extra_args=(), token=ADMIN_TOKEN, **kw):
    """A harness.Server with the HTTP server on a free loopback port (srv.http_port). Other test
    runs on the machine may take the port between the probe and the bind: the server is checked
    to be the one answering (its log names the port, GET / serves our page), else retried."""
    if not http_supported():
        raise unittest.SkipTest("this smtpgate serve has no --http option yet")
    last = None
    for _attempt in range(4):
        port = harness.free_port()
        srv = Server(users=users, start=False,
                     extra_args=["--http", "%s:%d" % (HOST, port)] + list(extra_args), **kw)
        if token:
            path = os.path.join(srv.data_dir, "admin-token.sha256")
            with open(path, "w") as f:
                f.write(hashlib.sha256(token.encode()).hexdigest() + "\n")
            os.chmod(path, 0o600)
        try:
            srv.start()
            deadline = time.monotonic() + 10
            while "port=%d " % port not in srv.log():
                if srv.proc is None or srv.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("HTTP server on port %d did not start" % port)
                time.sleep(0.05)
            r = request(port, "GET", "/", timeout=5)
            if r.status != 200 or b"smtpgate" not in r.body:
                raise AssertionError("port %d is answered by someone else" % port)
        except (AssertionError, OSError, http.client.HTTPException) as e:
            last = e
            srv.cleanup()
            continue
        except BaseException:
            srv.print_log_tail("HTTP server failed to start")
            srv.cleanup()
            raise
        srv.http_port = port
        return srv
    raise AssertionError("could not start the HTTP server: %s" % last)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Resp(%d, %r)" % (self.status, self.body[:300])


def basic(user):
    return "Basic " + base64.b64encode(("%s:%s" % (user.login, user.password)).encode()).decode()


def bearer(token=ADMIN_TOKEN):
    return "Bearer " + token


def request(port, method, path, auth=None, body=None, headers=None, timeout=15):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    h = dict(headers or {})
    if auth:
        h["Authorization"] = auth
    data = None
    if body is not None:
        data = json.dumps(body).encode() if not isinstance(body, (bytes, str)) else body
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    out = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    c.close()
    return out


def q(s):
    return urllib.parse.quote(s, safe="")


def login_once(s, login, password, mech="PLAIN"):
    """One AUTH attempt with one mechanism (smtplib's login() tries every mechanism in turn,
    which would count as several attempts). Raises SMTPAuthenticationError on failure."""
    s.user, s.password = login, password
    auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login, "CRAM-MD5": s.auth_cram_md5}[mech]
    return s.auth(mech, auth, initial_response_ok=(mech != "CRAM-MD5"))


def sender_of(user):
    return user.login if "@" in user.login else user.addresses[0]


def smtp_send(srv, user, rcpts, message, listener="submission"):
    """Log in as user on listener (STARTTLS, AUTH PLAIN) and send; returns the NOOP code. An
    authenticated submission is captured in the sender's own inbox."""
    s = srv.smtp(listener)
    try:
        login_once(s, user.login, user.password)
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        s.sendmail(sender_of(user), rcpts, message)
        code, text = s.noop()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass
    return code


def mime_message(sender, rcpt, subject, html=None, text=None, attachment=None):
    """A multipart message: text, html, and optionally (name, type, bytes)."""
    b1, b2 = "==outer-%d" % time.time_ns(), "==alt-%d" % time.time_ns()
    parts = ["From: App <%s>" % sender, "To: <%s>" % rcpt, "Subject: %s" % subject,
             "Message-ID: <%d@tests.example.test>" % time.time_ns(), "MIME-Version: 1.0",
             'Content-Type: multipart/mixed; boundary="%s"' % b1, "", "--" + b1,
             'Content-Type: multipart/alternative; boundary="%s"' % b2, "", "--" + b2,
             "Content-Type: text/plain; charset=utf-8", "", text or "plain body", "--" + b2,
             "Content-Type: text/html; charset=utf-8", "",
             html or "<p>html body</p>", "--" + b2 + "--"]
    if attachment:
        name, ctype, data = attachment
        parts += ["--" + b1, 'Content-Type: %s; name="%s"' % (ctype, name),
                  'Content-Disposition: attachment; filename="%s"' % name,
                  "Content-Transfer-Encoding: base64", "",
                  base64.encodebytes(data).decode().replace("\n", "\r\n").rstrip()]
    parts += ["--" + b1 + "--", ""]
    return "\r\n".join(parts).encode()


class SSEReader:
    """Reads an events stream in a thread; events are (type, data dict) tuples."""

    def __init__(self, port, path="/api/v1/events", auth=None):
        self.sock = socket.create_connection((HOST, port), timeout=30)
        req = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n" % (path, HOST, port)
        if auth:
            req += "Authorization: %s\r\n" % auth
        self.sock.sendall((req + "\r\n").encode())
        self.events = []
        self.comments = []
        self.status = None
        self.cv = threading.Condition()
        self.closed = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf = b""
        head_done = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if not head_done:
                    if b"\r\n\r\n" not in buf:
                        continue
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    with self.cv:
                        self.status = int(head.split(b" ")[1])
                        self.cv.notify_all()
                    head_done = True
                    if self.status != 200:
                        break
                # chunked transfer encoding: drop the chunk-size lines; the SSE frames end
                # with a blank line, so parse on the de-chunked text
                text = buf.decode("utf-8", "replace")
                lines = text.split("\r\n")
                payload = "".join(ln for i, ln in enumerate(lines) if i % 2 == 1)
                frames = payload.split("\n\n")
                with self.cv:
                    self.events = []
                    self.comments = []
                    for fr in frames[:-1]:
                        ev, data = "message", []
                        for ln in fr.split("\n"):
                            if ln.startswith(":"):
                                self.comments.append(ln[1:].strip())
                            elif ln.startswith("event:"):
                                ev = ln[6:].strip()
                            elif ln.startswith("data:"):
                                data.append(ln[5:].strip())
                        if data:
                            self.events.append((ev, json.loads("\n".join(data))))
                    self.cv.notify_all()
        except OSError:
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def wait_status(self, timeout=30):
        with self.cv:
            self.cv.wait_for(lambda: self.status is not None or self.closed, timeout)
            return self.status

    def wait_for(self, pred, timeout=30):
        with self.cv:
            ok = self.cv.wait_for(lambda: any(pred(t, d) for t, d in self.events), timeout)
            return ok

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class HttpTestCase(unittest.TestCase):
    USERS = (ALICE, BOB, DAVE)
    EXTRA_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.srv = start_http_server(cls.USERS, extra_args=cls.EXTRA_ARGS)
        cls.port = cls.srv.http_port

    @classmethod
    def tearDownClass(cls):
        srv = cls.srv
        srv.stop()
        probs = srv.problems()
        if probs:
            srv.print_log_tail("; ".join(probs))
        srv.cleanup()
        if probs:
            raise AssertionError("; ".join(probs))

    def setUp(self):
        if self.srv.proc is None or self.srv.proc.poll() is not None:
            self.fail("the server of this class is not running")

    def get(self, path, auth=bearer(), **kw):
        return request(self.port, "GET", path, auth=auth, **kw)

    def ok(self, method, path, auth=bearer(), body=None, status=200):
        r = request(self.port, method, path, auth=auth, body=body)
        self.assertEqual(r.status, status, r)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r

    def send(self, user, rcpt, subject, **kw):
        msg = kw.pop("message", None) or harness.make_message(sender_of(user), rcpt, subject)
        smtp_send(self.srv, user, rcpt, msg)
        return msg

    def inbox(self, login, auth=bearer(), query=""):
        return self.ok("GET", "/api/v1/inboxes/%s/messages%s" % (q(login), query), auth=auth)


class AccessControlTest(HttpTestCase):
    def test_no_credentials_401(self):
        for path in ("/api/v1/inboxes", "/api/v1/inboxes/%s/messages" % q(ALICE.login),
                     "/api/v1/auth-events", "/api/v1/faults", "/metrics"):
            r = self.get(path, auth=None)
            self.assertEqual(r.status, 401, path)
            self.assertIn("basic", r.headers.get("www-authenticate", "").lower())
        # the page asks itself: no browser dialog
        r = self.get("/api/v1/inboxes", auth=None, headers={"X-Requested-With": "smtpgate"})
        self.assertEqual(r.status, 401)
        self.assertNotIn("www-authenticate", r.headers)

    def test_bad_credentials_401(self):
        self.assertEqual(self.get("/api/v1/inboxes", auth="Basic " + base64.b64encode(
            b"alice@example.test:wrong").decode()).status, 401)
        self.assertEqual(self.get("/api/v1/inboxes", auth="Basic " + base64.b64encode(
            b"nobody@example.test:x").decode()).status, 401)
        self.assertEqual(self.get("/api/v1/inboxes", auth=bearer("sgat_wrong")).status, 401)
        self.assertEqual(self.get("/api/v1/inboxes", auth="Basic !!!").status, 401)

    def test_account_sees_only_its_inbox(self):
        # an authenticated submission lands in the sender's inbox
        self.send(ALICE, BOB.login, "sent by alice")
        self.send(BOB, ALICE.login, "sent by bob")
        bob_msgs = self.inbox(BOB.login)["messages"]
        alice_msgs = self.inbox(ALICE.login)["messages"]
        bob_id = [m for m in bob_msgs if m["subject"] == "sent by bob"][0]["id"]
        alice_id = [m for m in alice_msgs if m["subject"] == "sent by alice"][0]["id"]

        inboxes = self.ok("GET", "/api/v1/inboxes", auth=basic(ALICE))["inboxes"]
        self.assertEqual([i["login"] for i in inboxes], [ALICE.login])
        self.assertGreaterEqual(inboxes[0]["messages"], 1)
        self.inbox(ALICE.login, auth=basic(ALICE))
        self.assertEqual(self.get("/api/v1/inboxes/%s/messages" % q(BOB.login), auth=basic(ALICE)).status, 403)
        self.assertEqual(self.get("/api/v1/messages/%s" % bob_id, auth=basic(ALICE)).status, 404)
        self.assertEqual(self.get("/api/v1/messages/%s/raw" % bob_id, auth=basic(ALICE)).status, 404)
        self.assertEqual(request(self.port, "DELETE", "/api/v1/messages/%s" % bob_id,
                                 auth=basic(ALICE)).status, 404)
        self.assertEqual(request(self.port, "DELETE", "/api/v1/inboxes/%s/messages" % q(BOB.login),
                                 auth=basic(ALICE)).status, 403)
        self.assertEqual(self.get("/api/v1/auth-events?login=%s" % q(BOB.login), auth=basic(ALICE)).status, 403)
        self.assertIn(bob_id, [m["id"] for m in self.inbox(BOB.login, auth=basic(BOB))["messages"]])
        self.ok("GET", "/api/v1/messages/%s" % alice_id, auth=basic(ALICE))
        self.ok("GET", "/api/v1/messages/%s" % bob_id, auth=basic(BOB))

        # the admin token sees every inbox and message
        logins = [i["login"] for i in self.ok("GET", "/api/v1/inboxes")["inboxes"]]
        for u in self.USERS:
            self.assertIn(u.login, logins)
        self.ok("GET", "/api/v1/messages/%s" % bob_id)
        self.ok("GET", "/api/v1/messages/%s" % alice_id)
        me = self.ok("GET", "/api/v1/me")
        self.assertTrue(me["admin"])
        me = self.ok("GET", "/api/v1/me", auth=basic(BOB))
        self.assertEqual((me["admin"], me["login"], me["accept_any"]), (False, BOB.login, False))

    def test_dns_rebinding_and_cross_origin_refused(self):
        r = self.get("/api/v1/inboxes", headers={"Host": "attacker.example:%d" % self.port})
        self.assertEqual(r.status, 403)
        r = self.get("/api/v1/inboxes", headers={"Origin": "http://attacker.example"})
        self.assertEqual(r.status, 403)
        r = self.get("/api/v1/inboxes", headers={"Origin": "http://%s:%d" % (HOST, self.port)})
        self.assertEqual(r.status, 200)

    def test_page_and_csp(self):
        r = self.get("/", auth=None)
        self.assertEqual(r.status, 200)
        self.assertIn(b"smtpgate", r.body)
        csp = r.headers.get("content-security-policy", "")
        self.assertIn("default-src 'none'", csp)
        self.assertIn("img-src data:", csp)
        self.assertNotIn("http", csp)
        for asset, ctype in (("/app.js", "javascript"), ("/app.css", "text/css")):
            r = self.get(asset, auth=None)
            self.assertEqual(r.status, 200)
            self.assertIn(ctype, r.headers["content-type"])
        self.assertEqual(self.get("/nope", auth=None).status, 404)

    def test_stream_ticket_single_use(self):
        t = self.ok("POST", "/api/v1/events/ticket", auth=basic(ALICE))["ticket"]
        s = SSEReader(self.port, "/api/v1/events?ticket=" + t)
        try:
            self.assertEqual(s.wait_status(), 200)
        finally:
            s.close()
        s = SSEReader(self.port, "/api/v1/events?ticket=" + t)
        try:
            self.assertEqual(s.wait_status(), 401)
        finally:
            s.close()


class MessagesTest(HttpTestCase):
    def test_paging_newest_first(self):
        for i in range(5):
            self.send(DAVE, ALICE.login, "paging %d" % i)
            time.sleep(0.02)
        all_ = self.inbox(DAVE.login, query="?q=paging")["messages"]
        self.assertEqual([m["subject"] for m in all_], ["paging %d" % i for i in (4, 3, 2, 1, 0)])
        seen = []
        before = None
        pages = 0
        while True:
            qs = "?q=paging&limit=2" + ("&before=" + q(before) if before else "")
            page = self.inbox(DAVE.login, query=qs)
            seen += [m["subject"] for m in page["messages"]]
            pages += 1
            self.assertLessEqual(len(page["messages"]), 2)
            before = page["next_before"]
            if not before:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, ["paging %d" % i for i in (4, 3, 2, 1, 0)])
        m = all_[0]
        self.assertEqual(m["envelope_from"], DAVE.addresses[0])
        self.assertEqual(m["to"], [ALICE.login])
        self.assertEqual(m["auth"], {"mechanism": "PLAIN", "login": DAVE.login})
        self.assertTrue(m["tls"]["version"].startswith("TLS"))
        self.assertTrue(m["tls"]["cipher"])
        self.assertGreater(m["size"], 100)

    def test_search(self):
        self.send(DAVE, BOB.login, "invoice 4711 ready")
        self.send(DAVE, BOB.login, "password reset")
        r = self.inbox(DAVE.login, query="?q=" + q("INVOICE 4711"))
        self.assertEqual([m["subject"] for m in r["messages"]], ["invoice 4711 ready"])
        r = self.inbox(DAVE.login, query="?q=no-such-thing-anywhere")
        self.assertEqual(r["messages"], [])

    def test_detail_raw_attachment(self):
        html = '<h1>Welcome</h1><img src="http://tracker.example/pixel.gif">'
        att = bytes(range(256)) * 4
        msg = mime_message(BOB.login, ALICE.login, "=?UTF-8?B?V2lsbGtvbW1lbiDinJM=?=", html=html,
                           text="Welcome, plain", attachment=("report.pdf", "application/pdf", att))
        self.send(BOB, ALICE.login, None, message=msg)
        m = [m for m in self.inbox(BOB.login)["messages"] if m["subject"] == "Willkommen \u2713"][0]
        d = self.ok("GET", "/api/v1/messages/%s" % m["id"], auth=basic(BOB))
        self.assertEqual(d["subject"], "Willkommen \u2713")
        self.assertEqual(d["text"].strip(), "Welcome, plain")
        self.assertEqual(d["html"].strip(), html)
        self.assertEqual(len(d["attachments"]), 1)
        a = d["attachments"][0]
        self.assertEqual((a["name"], a["type"], a["size"]), ("report.pdf", "application/pdf", len(att)))
        names = [h["name"].lower() for h in d["headers"]]
        for n in ("return-path", "x-smtpgate-envelope", "received", "subject", "mime-version"):
            self.assertIn(n, names)
        r = self.get("/api/v1/messages/%s/attachments/0" % m["id"], auth=basic(BOB))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, att)
        self.assertEqual(r.headers["content-type"], "application/octet-stream")
        self.assertTrue(r.headers["content-disposition"].startswith("attachment"))
        self.assertEqual(self.get("/api/v1/messages/%s/attachments/1" % m["id"]).status, 404)
        raw = self.get("/api/v1/messages/%s/raw" % m["id"], auth=basic(BOB))
        self.assertEqual(raw.status, 200)
        self.assertTrue(raw.headers["content-type"].startswith("text/plain"))
        self.assertEqual(raw.body, self.srv.read_message(BOB.login, m["id"]))
        harness.split_message(raw.body, msg)
        for bad in ("../../etc/passwd", "1.zz", "x" * 80, "%2e%2e"):
            self.assertEqual(self.get("/api/v1/messages/%s" % q(bad)).status, 404, bad)

    def test_inline_cid_image_becomes_data_url(self):
        png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                               "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        msg = "\r\n".join([
            "From: <%s>" % BOB.login, "To: <%s>" % ALICE.login, "Subject: inline logo",
            "MIME-Version: 1.0", 'Content-Type: multipart/related; boundary="rel"', "",
            "--rel", "Content-Type: text/html; charset=utf-8", "",
            '<p>logo: <img src="cid:logo@tests.example"></p>', "--rel",
            "Content-Type: image/png", "Content-ID: <logo@tests.example>",
            "Content-Disposition: inline", "Content-Transfer-Encoding: base64", "",
            base64.b64encode(png).decode(), "--rel--", ""]).encode()
        self.send(BOB, ALICE.login, None, message=msg)
        m = [m for m in self.inbox(BOB.login)["messages"] if m["subject"] == "inline logo"][0]
        d = self.ok("GET", "/api/v1/messages/%s" % m["id"])
        self.assertIn('src="data:image/png;base64,%s"' % base64.b64encode(png).decode(), d["html"])
        self.assertNotIn("cid:", d["html"])
        self.assertEqual(d["attachments"][0]["content_id"], "logo@tests.example")
        self.assertTrue(d["attachments"][0]["inline"])

    def test_delete_one_and_all(self):
        for i in range(3):
            self.send(ALICE, BOB.login, "to delete %d" % i)
        msgs = self.inbox(ALICE.login, auth=basic(ALICE), query="?q=to+delete")["messages"]
        self.assertEqual(len(msgs), 3)
        victim = msgs[0]["id"]
        self.ok("DELETE", "/api/v1/messages/%s" % victim, auth=basic(ALICE))
        self.assertEqual(self.get("/api/v1/messages/%s" % victim).status, 404)
        self.assertEqual(request(self.port, "DELETE", "/api/v1/messages/%s" % victim).status, 401)
        self.assertEqual(request(self.port, "DELETE", "/api/v1/messages/%s" % victim,
                                 auth=bearer()).status, 404)
        self.assertNotIn(victim, self.srv.messages(ALICE.login))
        r = self.ok("DELETE", "/api/v1/inboxes/%s/messages" % q(ALICE.login), auth=basic(ALICE))
        self.assertGreaterEqual(r["deleted"], 2)
        self.assertEqual(self.inbox(ALICE.login)["messages"], [])
        self.assertEqual(self.srv.messages(ALICE.login), [])


class AuthEventsTest(HttpTestCase):
    def login(self, login, password, listener="submission"):
        s = self.srv.smtp(listener)
        try:
            login_once(s, login, password)
            return 235
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def events(self, query="", auth=bearer()):
        return self.ok("GET", "/api/v1/auth-events" + query, auth=auth)["events"]

    def test_good_and_bad_logins_with_reasons(self):
        self.assertEqual(self.login(ALICE.login, ALICE.password), 235)
        self.assertEqual(self.login(ALICE.login, "wrong-password"), 535)
        self.assertEqual(self.login("ghost@example.test", "whatever"), 535)
        ev = self.events("?login=" + q(ALICE.login))
        results = [(e["result"], e["reason"]) for e in ev[:2]]
        self.assertEqual(results[0][0], "fail")
        self.assertEqual(results[0][1], "wrong_password")
        self.assertEqual(results[1][0], "ok")
        e = ev[1]
        self.assertEqual(e["listener"], "submission")
        self.assertEqual(e["client_ip"], "127.0.0.1")
        self.assertTrue(e["tls"])
        self.assertTrue(e["mechanism"])
        self.assertFalse(e["injected"])
        self.assertTrue(e["time"].endswith("Z"))
        ghost = self.events("?login=" + q("ghost@example.test"))
        self.assertEqual(ghost[0]["reason"], "unknown_account")
        failed = self.events("?result=failed&limit=50")
        self.assertTrue(all(e["result"] != "ok" for e in failed))
        self.assertGreaterEqual(len(failed), 2)
        self.assertEqual(len(self.events("?limit=1")), 1)
        # an account sees only its own
        mine = self.events(auth=basic(ALICE))
        self.assertTrue(mine)
        self.assertTrue(all(e["login"] == ALICE.login for e in mine))

    def test_events_stream(self):
        s = SSEReader(self.port, auth=bearer())
        b = SSEReader(self.port, auth=basic(BOB))
        try:
            self.assertEqual(s.wait_status(), 200)
            self.assertEqual(b.wait_status(), 200)
            time.sleep(0.2)
            self.send(BOB, ALICE.login, "live one")
            self.send(ALICE, BOB.login, "not for bob's stream")
            self.assertTrue(s.wait_for(lambda t, d: t == "message" and d["login"] == BOB.login),
                            s.events)
            self.assertTrue(s.wait_for(lambda t, d: t == "auth" and d["login"] == ALICE.login
                                       and d["result"] == "ok"), s.events)
            self.assertTrue(b.wait_for(lambda t, d: t == "message"), b.events)
            ids = [d["id"] for t, d in s.events if t == "message" and d["login"] == BOB.login]
            self.assertIn(ids[-1], self.srv.messages(BOB.login))
            time.sleep(0.3)
            with b.cv:
                for t, d in b.events:
                    self.assertEqual(d["login"], BOB.login, (t, d))
            self.assertIn("connected", s.comments)
        finally:
            s.close()
            b.close()


class FaultsTest(HttpTestCase):
    def setUp(self):
        super().setUp()
        self.ok("DELETE", "/api/v1/faults")

    def try_login(self, user, listener="submission"):
        s = self.srv.smtp(listener)
        try:
            login_once(s, user.login, user.password)
            return (235, "")
        except smtplib.SMTPAuthenticationError as e:
            return (e.smtp_code, e.smtp_error.decode())
        finally:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    def wait_rule_live(self):
        # The server polls the rule table every 200 ms, which a loaded machine may stretch;
        # GET /api/v1/faults reloads the table in the server at once (sg_faults_list), so
        # after it the rules another process added are live, whatever the load.
        self.ok("GET", "/api/v1/faults")

    def test_api_fault_times(self):
        r = self.ok("POST", "/api/v1/faults", body={
            "stage": "auth", "reply": "454 4.7.0 Temporary authentication failure", "times": 2,
            "listener": "submission"}, status=201)
        self.assertEqual(r["mode"], "times")
        self.assertEqual(r["remaining"], 2)
        self.wait_rule_live()
        self.assertEqual(self.try_login(BOB), (454, "4.7.0 Temporary authentication failure"))
        self.assertEqual(self.try_login(BOB)[0], 454)
        self.assertEqual(self.try_login(BOB)[0], 235)
        rules = self.ok("GET", "/api/v1/faults")["faults"]
        self.assertEqual(rules[0]["fired"], 2)
        self.assertEqual(rules[0]["remaining"], 0)
        # (an AUTH refused by a rule before the exchange has no login yet: no login filter)
        ev = self.ok("GET", "/api/v1/auth-events?limit=3")["events"]
        self.assertEqual([e["injected"] for e in ev], [False, True, True])
        self.assertEqual(ev[0]["result"], "ok")
        self.assertEqual(ev[1]["result"], "tempfail")

    def test_api_validation_and_delete(self):
        for bad in ({"stage": "nope", "reply": "535"}, {"stage": "auth"},
                    {"stage": "auth", "reply": "535 4.7.8 x"}, {"stage": "auth", "drop": True, "times": 0},
                    {"stage": "auth", "drop": True, "times": 1, "every": 2}):
            r = request(self.port, "POST", "/api/v1/faults", auth=bearer(), body=bad)
            self.assertEqual(r.status, 400, bad)
        r = request(self.port, "POST", "/api/v1/faults", auth=bearer(), body=b"not json")
        self.assertEqual(r.status, 400)
        a = self.ok("POST", "/api/v1/faults", body={"spec": "stage=mail drop every=3"}, status=201)
        b = self.ok("POST", "/api/v1/faults", body={"stage": "rcpt", "delay_ms": 10}, status=201)
        self.assertEqual(b["action"], "delay")
        self.ok("DELETE", "/api/v1/faults/%d" % a["id"])
        self.assertEqual(request(self.port, "DELETE", "/api/v1/faults/%d" % a["id"], auth=bearer()).status, 404)
        self.assertEqual([f["id"] for f in self.ok("GET", "/api/v1/faults")["faults"]], [b["id"]])
        # an account's rules are scoped to its own login
        c = self.ok("POST", "/api/v1/faults", auth=basic(ALICE), body={"stage": "mail", "drop": True},
                    status=201)
        self.assertEqual(c["login"], ALICE.login)
        r = request(self.port, "POST", "/api/v1/faults", auth=basic(ALICE),
                    body={"stage": "mail", "drop": True, "login": BOB.login})
        self.assertEqual(r.status, 403)
        self.assertEqual([f["id"] for f in self.ok("GET", "/api/v1/faults", auth=basic(ALICE))["faults"]],
                         [c["id"]])
        self.assertEqual(request(self.port, "DELETE", "/api/v1/faults/%d" % b["id"],
                                 auth=basic(ALICE)).status, 404)

    def test_cli_fault_auth(self):
        r = self.srv.cli("fault", "--data-dir", self.srv.data_dir, "add", "--stage", "auth",
                         "--reply", "535 5.7.8 Authentication credentials invalid", "--times", "1")
        rule_id = int(r.stdout.strip())
        listing = self.srv.cli("fault", "--data-dir", self.srv.data_dir, "list").stdout
        self.assertIn("535 5.7.8 Authentication credentials invalid", listing)
        self.wait_rule_live()
        self.assertEqual(self.try_login(ALICE), (535, "5.7.8 Authentication credentials invalid"))
        self.assertEqual(self.try_login(ALICE)[0], 235)
        ev = self.ok("GET", "/api/v1/auth-events?limit=2")["events"]
        self.assertEqual([e["injected"] for e in ev], [False, True])
        self.assertNotEqual(ev[1]["result"], "ok")
        self.srv.cli("fault", "--data-dir", self.srv.data_dir, "clear", str(rule_id))
        self.assertEqual(self.srv.cli("fault", "--data-dir", self.srv.data_dir, "list").stdout, "")

    def test_cli_fault_mail_and_connect(self):
        self.srv.cli("fault", "--data-dir", self.srv.data_dir, "add", "--stage", "mail",
                     "--reply", "550 5.7.1 Sending is disabled for this test", "--times", "1")
        self.wait_rule_live()
        with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
            smtp_send(self.srv, ALICE, BOB.login, harness.make_message(ALICE.login, BOB.login, "x"))
        self.assertEqual(cm.exception.smtp_code, 550)
        self.assertEqual(smtp_send(self.srv, ALICE, BOB.login,
                                   harness.make_message(ALICE.login, BOB.login, "y")), 250)
        self.srv.cli("fault", "--data-dir", self.srv.data_dir, "clear")
        self.srv.cli("fault", "--data-dir", self.srv.data_dir, "add", "--stage", "connect",
                     "--reply", "421 4.7.0 Try again later", "--close", "--times", "1",
                     "--listener", "submission")
        self.wait_rule_live()
        c = self.srv.raw("submission", greet=False)
        try:
            reply = c.read_reply()
            self.assertEqual(reply.first, "421 4.7.0 Try again later")
            self.assertTrue(c.closed(5))
        finally:
            c.close()
        c = self.srv.raw("submission")
        self.assertEqual(c.greeting.code, 220)
        c.quit()


class MetricsTest(HttpTestCase):
    @staticmethod
    def sample(text, name, labels=""):
        key = name + labels
        for ln in text.splitlines():
            if ln.startswith(key + " "):
                return float(ln.split()[-1])
        return 0.0

    def test_counters_change(self):
        m0 = self.get("/metrics")
        self.assertEqual(m0.status, 200)
        self.assertTrue(m0.headers["content-type"].startswith("text/plain"))
        t0 = m0.body.decode()
        for fam in ("smtpgate_connections_total", "smtpgate_auth_attempts_total",
                    "smtpgate_messages_accepted_total", "smtpgate_session_duration_seconds"):
            self.assertIn("# TYPE " + fam, t0)
            self.assertIn("# HELP " + fam, t0)
        self.send(ALICE, BOB.login, "metrics")
        s = self.srv.smtp("submission")
        try:
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                login_once(s, ALICE.login, "wrong")
        finally:
            s.quit()
        # some counters move when the server ends a session: wait for its event=disconnect
        self.srv.wait_sessions_ended()
        t1 = self.get("/metrics").body.decode()
        self.assertEqual(self.sample(t1, "smtpgate_messages_accepted_total"),
                         self.sample(t0, "smtpgate_messages_accepted_total") + 1)
        conns0 = self.sample(t0, "smtpgate_connections_total", '{listener="submission"}')
        self.assertGreaterEqual(self.sample(t1, "smtpgate_connections_total", '{listener="submission"}'),
                                conns0 + 2)

        def total(text, result):
            return sum(float(ln.split()[-1]) for ln in text.splitlines()
                       if ln.startswith("smtpgate_auth_attempts_total{") and 'result="%s"' % result in ln)
        self.assertEqual(total(t1, "ok"), total(t0, "ok") + 1)
        self.assertEqual(total(t1, "fail"), total(t0, "fail") + 1)
        self.assertGreater(self.sample(t1, "smtpgate_stored_bytes_total"),
                           self.sample(t0, "smtpgate_stored_bytes_total"))
        self.assertGreater(self.sample(t1, "smtpgate_session_duration_seconds_count"),
                           self.sample(t0, "smtpgate_session_duration_seconds_count"))
        self.assertEqual(self.get("/metrics", auth=None).status, 401)


class OpenModeTest(unittest.TestCase):
    def test_open_on_loopback_needs_no_credentials(self):
        srv = start_http_server((ALICE,), extra_args=["--http-open"], token=None)
        try:
            r = request(srv.http_port, "GET", "/api/v1/inboxes")
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.json()["inboxes"])
        finally:
            srv.cleanup()

    def test_open_refused_off_loopback(self):
        if not http_supported():
            raise unittest.SkipTest("this smtpgate serve has no --http option yet")
        srv = Server(users=(), start=False,
                     extra_args=["--http", "0.0.0.0:%d" % harness.free_port(), "--http-open"])
        try:
            srv.ports = {name: harness.free_port() for name in srv.listeners}
            srv.write_config()
            p = subprocess.run(srv.serve_argv(), capture_output=True, text=True, timeout=10)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("loopback", p.stdout + p.stderr)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    unittest.main()
