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

from harness import HOST, Server, User, free_port, queued_id
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


def dsn_parts(raw):
    """(the delivery-status blocks as dicts, the whole parsed message) of a DSN."""
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    blocks = []
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            for sub in (payload if isinstance(payload, list) else []):
                blocks.append({k.lower(): v for k, v in sub.items()})
    return blocks, msg


def inbox_dsns(srv, login):
    out = []
    for mid in srv.messages(login):
        raw = srv.read_message(login, mid)
        if b"report-type=delivery-status" in raw or b"report-type=\"delivery-status\"" in raw:
            out.append(raw)
    return out


def relay_times(srv, qid, result):
    return [line_time(ln) for ln in log_lines(srv.log(), "relay", qid, "result=" + result)]


class RelayFaults(unittest.TestCase):
    def test_421_and_451_retried_with_backoff(self):
        with FakeSmarthost() as sh, relay_server(sh, relay_retry_min="1s",
                                                 relay_retry_max="8s") as srv:
            sh.mail_reply = lambda n: "421 4.3.2 closing for maintenance" if sh.data_count == 0 \
                and len(sh.conns) == 1 else None
            sh.final_reply = lambda n: "451 4.3.0 try again later" if n == 1 else None
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1, timeout=30),
                            srv.log()[-3000:])
            deferred = relay_times(srv, qid, "deferred")
            delivered = relay_times(srv, qid, "delivered")
            self.assertEqual(len(deferred), 2, srv.log()[-3000:])
            self.assertEqual(len(delivered), 1)
            # backoff from the server's own clock: ~1 s, then ~2 s (doubling)
            g1, g2 = deferred[1] - deferred[0], delivered[0] - deferred[1]
            self.assertGreaterEqual(g1, 0.9)
            self.assertGreaterEqual(g2, 1.9)
            self.assertLess(g1, 6)
            self.assertIn("421 4.3.2", srv.log())
            self.assertEqual(split_after_our_headers(sh.delivered[0].data), BODY)
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))

    def test_one_of_two_refused_gets_a_dsn(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            sh.rcpt_reply = lambda a, n: "550 5.1.1 <%s>: no such user here" % a \
                if a.startswith("bad") else None
            qid = submit(srv, ["good@remote.test", "bad@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1))
            self.assertEqual(sh.delivered[0].rcpts, ["good@remote.test"])
            # the local sender gets the DSN in its inbox
            self.assertTrue(wait_for(lambda: inbox_dsns(srv, "alice")), srv.log()[-2000:])
            raw = inbox_dsns(srv, "alice")[0]
            blocks, msg = dsn_parts(raw.split(b"\r\n", 2)[2] if raw.startswith(b"Return-Path: <>") else raw)
            self.assertTrue(raw.startswith(b"Return-Path: <>"))
            rcpt_blocks = [b for b in blocks if "final-recipient" in b]
            self.assertEqual(len(rcpt_blocks), 1, blocks)
            b = rcpt_blocks[0]
            self.assertEqual(b["final-recipient"].replace(" ", ""), "rfc822;bad@remote.test")
            self.assertEqual(b["action"], "failed")
            self.assertEqual(b["status"], "5.1.1")
            self.assertIn("550 5.1.1", b["diagnostic-code"])
            self.assertIn("smtp;", b["diagnostic-code"].replace(" ", ""))
            self.assertIn(b"Subject: relay test", raw)          # the original comes back
            self.assertEqual(len(inbox_dsns(srv, "alice")), 1)
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))

    def test_remote_sender_dsn_null_sender_and_never_a_bounce_of_a_bounce(self):
        with FakeSmarthost() as sh, relay_server(sh, sender_policy="off") as srv:
            # the original is refused for good; the DSN to the remote sender is refused too
            sh.rcpt_reply = lambda a, n: "550 5.1.1 no" if a in ("bad@remote.test",
                                                                "ext@elsewhere.test") else None
            qid = submit(srv, ["bad@remote.test"], BODY, sender="ext@elsewhere.test")
            dsn = wait_for(lambda: log_lines(srv.log(), "relay_dsn", qid, "dsn_id="))
            self.assertTrue(dsn, srv.log()[-2000:])
            dsn_id = re.search(r"dsn_id=(\S+)", dsn[0]).group(1)
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", dsn_id)),
                            srv.log()[-2000:])
            # the DSN was offered with the null sender, and its own failure made no DSN
            mails = [c[1] for conn in sh.conns for c in conn.commands if c[1].startswith("MAIL")]
            self.assertIn("MAIL FROM:<>", " ".join(mails))
            self.assertEqual(log_lines(srv.log(), "relay_dsn", "event=relay_dsn id=%s " % dsn_id), [])
            self.assertTrue(log_lines(srv.log(), "relay", dsn_id, "result=failed"))
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "queue", "env")), [])

    def test_552_after_data_fails_both(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            sh.final_reply = lambda n: "552 5.3.4 message too big for the relay"
            qid = submit(srv, ["a@remote.test", "b@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: inbox_dsns(srv, "alice")), srv.log()[-2000:])
            blocks, _ = dsn_parts(inbox_dsns(srv, "alice")[0])
            st = sorted((b["final-recipient"].split(";")[1].strip(), b["status"], b["action"])
                        for b in blocks if "final-recipient" in b)
            self.assertEqual(st, [("a@remote.test", "5.3.4", "failed"),
                                  ("b@remote.test", "5.3.4", "failed")])
            self.assertEqual(len(relay_times(srv, qid, "failed")), 2)
            self.assertEqual(sh.delivered, [])

    def test_disconnect_mid_data_then_delivered_once(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            sh.mode = "disconnect_mid_data"
            big = BODY + b"x" * 70 + b"\r\n" + (b"filler line " * 6 + b"\r\n") * 50
            qid = submit(srv, ["carol@remote.test"], big)
            self.assertTrue(wait_for(lambda: relay_times(srv, qid, "deferred")), srv.log()[-2000:])
            sh.mode = None
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1, timeout=20))
            self.assertEqual(split_after_our_headers(sh.delivered[0].data), big)
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))
            time.sleep(0.5)
            self.assertEqual(len(sh.delivered), 1)

    def test_stalled_reply_times_out(self):
        with FakeSmarthost() as sh, relay_server(sh, relay_timeout_final="1s") as srv:
            sh.mode = "stall_after_data"
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: relay_times(srv, qid, "deferred")), srv.log()[-2000:])
            line = log_lines(srv.log(), "relay", qid, "result=deferred")[0]
            self.assertIn("timeout", line)
            self.assertIn("end of the message", line)
            end = [t for c in sh.conns for t, l in c.commands if l == "<end of data>"][0]
            # the attempt ended about 1 s after the data (server clock vs ours: generous)
            self.assertLess(line_time(line) - time.time() + (time.monotonic() - end), 8)
            sh.mode = None
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1, timeout=20))


def submit_dsn(srv, mail_opts, rcpts):
    """rcpts: [(address, [rcpt options])]"""
    s = smtplib.SMTP(HOST, srv.port("submission"), timeout=10)
    try:
        s.starttls()
        s.ehlo("client.test")
        assert s.has_extn("dsn")
        s.login(ALICE.login, ALICE.password)
        s.mail("alice@example.test", mail_opts)
        for r, opts in rcpts:
            code, text = s.rcpt(r, opts)
            assert code == 250, (code, text)
        code, text = s.data(BODY)
        assert code == 250, (code, text)
        return queued_id(text.decode())
    finally:
        s.quit()


class RelayDsnParameters(unittest.TestCase):
    def test_notify_never_success_ret_envid_without_smarthost_dsn(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            sh.rcpt_reply = lambda a, n: "550 5.1.1 no such user" if a.startswith("quiet") \
                or a.startswith("loud") else None
            qid = submit_dsn(srv, ["RET=HDRS", "ENVID=QQ314159+2Bx"],
                             [("quiet@remote.test", ["NOTIFY=NEVER"]),
                              ("loud@remote.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;Loud+40x"]),
                              ("happy@remote.test", ["NOTIFY=SUCCESS,FAILURE"])])
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)),
                            srv.log()[-2000:])
            # the smarthost does not offer DSN: nothing of it is passed on
            self.assertEqual(sh.delivered[0].mail_params.split(), ["SIZE=%d" % (
                int(sh.delivered[0].mail_params.split("=")[1]))])
            dsns = inbox_dsns(srv, "alice")
            self.assertEqual(len(dsns), 1, dsns)
            blocks, msg = dsn_parts(dsns[0])
            per = {b["final-recipient"].split(";")[1].strip(): b for b in blocks
                   if "final-recipient" in b}
            # NOTIFY=NEVER: not reported; FAILURE: failed; SUCCESS without DSN at the
            # smarthost: "relayed" (RFC 3461 5.2.2)
            self.assertEqual(sorted(per), ["happy@remote.test", "loud@remote.test"])
            self.assertEqual(per["loud@remote.test"]["action"], "failed")
            self.assertEqual(per["loud@remote.test"]["original-recipient"].replace(" ", ""),
                             "rfc822;Loud@x")
            self.assertEqual(per["happy@remote.test"]["action"], "relayed")
            envid = [b for b in blocks if "original-envelope-id" in b][0]["original-envelope-id"]
            self.assertEqual(envid.strip(), "QQ314159+x")
            # RET=HDRS: the header comes back, not the body
            types = [p.get_content_type() for p in msg.walk()]
            self.assertIn("text/rfc822-headers", types)
            self.assertNotIn(b".leading dot", dsns[0])

    def test_parameters_passed_to_a_smarthost_with_dsn(self):
        with FakeSmarthost(caps=("8BITMIME", "SIZE 100000000", "DSN")) as sh, \
                relay_server(sh) as srv:
            qid = submit_dsn(srv, ["RET=FULL", "ENVID=id+2B1"],
                             [("happy@remote.test", ["NOTIFY=SUCCESS", "ORCPT=rfc822;happy@remote.test"])])
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)),
                            srv.log()[-2000:])
            t = sh.delivered[0]
            self.assertIn("RET=FULL", t.mail_params)
            self.assertIn("ENVID=id+2B1", t.mail_params)
            self.assertEqual(t.rcpt_params[0].split(),
                             ["NOTIFY=SUCCESS", "ORCPT=rfc822;happy@remote.test"])
            time.sleep(0.3)
            self.assertEqual(inbox_dsns(srv, "alice"), [])   # the smarthost reports, not us

    def test_bad_dsn_parameters_refused(self):
        with FakeSmarthost() as sh, relay_server(sh) as srv:
            s = smtplib.SMTP(HOST, srv.port("submission"), timeout=10)
            s.starttls()
            s.login(ALICE.login, ALICE.password)
            self.assertEqual(s.mail("alice@example.test", ["RET=SOME"])[0], 501)
            self.assertEqual(s.mail("alice@example.test", ["ENVID=a+0Db"])[0], 501)
            self.assertEqual(s.mail("alice@example.test", ["RET=HDRS"])[0], 250)
            self.assertEqual(s.rcpt("x@remote.test", ["NOTIFY=NEVER,SUCCESS"])[0], 501)
            self.assertEqual(s.rcpt("x@remote.test", ["NOTIFY=SOMETIMES"])[0], 501)
            self.assertEqual(s.rcpt("x@remote.test", ["ORCPT=noaddrtype"])[0], 501)
            self.assertEqual(s.rcpt("x@remote.test", ["FOO=1"])[0], 555)
            self.assertEqual(s.rcpt("x@remote.test", ["NOTIFY=DELAY"])[0], 250)
            s.quit()


class RelayStop(unittest.TestCase):
    def test_sigterm_during_a_stalled_delivery(self):
        with FakeSmarthost() as sh, relay_server(sh, relay_timeout_final="10m") as srv:
            sh.mode = "stall_after_data"
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: any(l == "<end of data>" for c in sh.conns
                                                 for _, l in c.commands)))
            t0 = time.monotonic()
            rc = srv.stop()                # SIGTERM; the harness kills after 5 s
            self.assertLess(time.monotonic() - t0, 4.5)
            self.assertIn(rc, (0, -15))
            self.assertIsNone(srv.died)
            self.assertIn(qid, os.listdir(os.path.join(srv.data_dir, "queue", "env")))
            sh.mode = None
            srv.restart()
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)),
                            srv.log()[-2000:])
            self.assertEqual(len(sh.delivered), 1)


class RelayTls(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sg-relay-pki-")
        os.chmod(self.tmp, 0o755)
        self.pki = make_pki(self.tmp)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def tls_settings(self, **kw):
        d = {"relay_tls": "starttls", "relay_ca_file": self.pki.ca, "relay_tls_name": "relay.test"}
        d.update(kw)
        return d

    def test_starttls_verified_auth_plain(self):
        with FakeSmarthost(tls=self.pki, auth=("relayuser", "relaypw"), require_tls=True) as sh:
            pw = os.path.join(self.tmp, "relay.pw")
            with open(pw, "w") as f:
                f.write("relaypw\n")
            os.chmod(pw, 0o644)
            with relay_server(sh, **self.tls_settings(relay_auth="PLAIN", relay_user="relayuser",
                                                      relay_password_file=pw)) as srv:
                qid = submit(srv, ["carol@remote.test"], BODY)
                self.assertTrue(wait_for(lambda: len(sh.delivered) == 1), srv.log()[-2000:])
                c = sh.conns[0]
                self.assertTrue(c.tls and c.authed)
                self.assertNotIn("relaypw", srv.log())
                self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))

    def test_handshake_failure_retried(self):
        with FakeSmarthost(tls=self.pki) as sh, relay_server(sh, **self.tls_settings()) as srv:
            sh.mode = "tls_fail"
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: relay_times(srv, qid, "deferred")), srv.log()[-2000:])
            self.assertIn("TLS", log_lines(srv.log(), "relay", qid, "result=deferred")[0])
            sh.mode = None
            self.assertTrue(wait_for(lambda: len(sh.delivered) == 1, timeout=20))
            self.assertTrue(sh.conns[-1].tls)
            for c in sh.conns:
                self.assertFalse([l for _, l in c.commands if l.startswith("MAIL")] and not c.tls)

    def test_wrong_name_never_in_clear_then_bounced(self):
        with FakeSmarthost(tls=self.pki) as sh, relay_server(
                sh, queue_lifetime="3s", **self.tls_settings(relay_tls_name="wrong.test")) as srv:
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: inbox_dsns(srv, "alice"), timeout=30),
                            srv.log()[-3000:])
            self.assertEqual(sh.delivered, [])
            self.assertGreaterEqual(len(relay_times(srv, qid, "deferred")), 2)
            line = log_lines(srv.log(), "relay", qid, "result=deferred")[0]
            self.assertIn("did not verify", line)
            # after STARTTLS nothing was said: no EHLO over the bad channel, no MAIL at all
            for c in sh.conns:
                verbs = [l.split(" ")[0] for _, l in c.commands]
                self.assertEqual(verbs, ["EHLO", "STARTTLS"], c.commands)
            blocks, _ = dsn_parts(inbox_dsns(srv, "alice")[0])
            b = [b for b in blocks if "final-recipient" in b][0]
            self.assertEqual(b["action"], "failed")
            self.assertEqual(b["status"], "4.4.7")
            self.assertIn("did not verify", b["diagnostic-code"])

    def test_no_starttls_offered_is_temporary(self):
        with FakeSmarthost() as sh, relay_server(sh, relay_tls="starttls") as srv:
            qid = submit(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: relay_times(srv, qid, "deferred")), srv.log()[-2000:])
            self.assertIn("does not offer STARTTLS", srv.log())
            for c in sh.conns:
                self.assertEqual([l.split(" ")[0] for _, l in c.commands][:1], ["EHLO"])
                self.assertNotIn("MAIL", " ".join(l for _, l in c.commands))

    def test_refused_auth_clear_log_and_deferred(self):
        with FakeSmarthost(tls=self.pki, auth=("relayuser", "relaypw")) as sh:
            pw = os.path.join(self.tmp, "wrong.pw")
            with open(pw, "w") as f:
                f.write("not-the-password\n")
            os.chmod(pw, 0o644)
            with relay_server(sh, **self.tls_settings(relay_auth="PLAIN", relay_user="relayuser",
                                                      relay_password_file=pw)) as srv:
                qid = submit(srv, ["carol@remote.test"], BODY)
                self.assertTrue(wait_for(lambda: len(relay_times(srv, qid, "deferred")) >= 2,
                                         timeout=20), srv.log()[-2000:])
                lines = log_lines(srv.log(), "relay_auth_failed", qid)
                self.assertTrue(lines)
                self.assertIn("refused our AUTH PLAIN as relayuser", lines[0])
                self.assertIn("535 5.7.8", lines[0])
                self.assertNotIn("not-the-password", srv.log())
                self.assertIsNone(srv.proc.poll())
                self.assertEqual(sh.delivered, [])


def http_json(srv, method, path, body=None):
    import json
    import urllib.error
    import urllib.request
    req = urllib.request.Request("http://%s%s" % (srv.settings["http_listen"], path),
                                 data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return r.status, (json.loads(data) if data[:1] in (b"{", b"[") else data.decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class RelayControl(unittest.TestCase):
    def test_cli_and_api(self):
        import json
        with FakeSmarthost() as sh, relay_server(
                sh, relay_retry_min="60s", relay_retry_max="60s",
                http_listen="127.0.0.1:%d" % free_port(), http_open="yes") as srv:
            sh.final_reply = lambda n: "451 4.3.0 greylisted, come back later"
            q1 = submit(srv, ["one@remote.test"], BODY)
            q2 = submit(srv, ["two@remote.test", "three@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: relay_times(srv, q2, "deferred")), srv.log()[-2000:])
            self.assertTrue(wait_for(lambda: relay_times(srv, q1, "deferred")))
            cli = lambda *a, check=True: srv.cli("queue", "--data-dir", srv.data_dir, *a,
                                                 check=check)
            out = cli("list").stdout
            self.assertIn(q1, out)
            self.assertIn(q2, out)
            self.assertIn("451 4.3.0 greylisted", out)
            self.assertIn("2 messages in the queue", out)
            lst = json.loads(cli("list", "--json").stdout)
            self.assertEqual(lst["total"], 2)
            shown = json.loads(cli("show", q2).stdout)
            self.assertEqual([r["address"] for r in shown["recipients"]],
                             ["two@remote.test", "three@remote.test"])
            self.assertEqual({r["state"] for r in shown["recipients"]}, {"deferred"})
            self.assertEqual(shown["attempts"], 1)
            self.assertIn("451 4.3.0", shown["recipients"][0]["diagnostic"])
            # retry now (the next try was a minute away)
            self.assertIn("retry %s" % q1, cli("retry", q1).stdout)
            self.assertTrue(wait_for(lambda: len(relay_times(srv, q1, "deferred")) == 2),
                            srv.log()[-2000:])
            # the API sees the same queue; the metrics count it
            st, body = http_json(srv, "GET", "/api/v1/queue")
            self.assertEqual((st, body["total"]), (200, 2))
            st, body = http_json(srv, "GET", "/api/v1/queue/" + q1)
            self.assertEqual((st, body["attempts"]), (200, 2))
            st, body = http_json(srv, "POST", "/api/v1/queue/%s/retry" % q2)
            self.assertEqual(st, 200)
            self.assertTrue(wait_for(lambda: len(relay_times(srv, q2, "deferred")) == 4))
            st, metrics = http_json(srv, "GET", "/metrics")
            self.assertIn("smtpgate_queue_messages 2", metrics)
            self.assertRegex(metrics, r'smtpgate_relay_deliveries_total\{result="deferred"\} [1-9]')
            self.assertRegex(metrics, r"smtpgate_relay_retries_total [1-9]")
            self.assertRegex(metrics, r"smtpgate_queue_oldest_age_seconds \d+")
            # bounce: the sender hears about it; delete: nobody does
            self.assertIn("bounce %s: done" % q1, cli("bounce", q1).stdout)
            self.assertTrue(wait_for(lambda: inbox_dsns(srv, "alice")), srv.log()[-2000:])
            blocks, _ = dsn_parts(inbox_dsns(srv, "alice")[0])
            b = [b for b in blocks if "final-recipient" in b][0]
            self.assertEqual((b["action"], b["status"]), ("failed", "5.0.0"))
            self.assertIn("returned by the administrator", b["diagnostic-code"])
            self.assertIn("451 4.3.0", b["diagnostic-code"])
            st, body = http_json(srv, "DELETE", "/api/v1/queue/" + q2)
            self.assertEqual(st, 200)
            self.assertEqual(json.loads(cli("list", "--json").stdout)["total"], 0)
            self.assertEqual(len(inbox_dsns(srv, "alice")), 1)
            r = cli("show", q2, check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no such message", r.stderr)
            st, _ = http_json(srv, "GET", "/api/v1/queue/" + q2)
            self.assertEqual(st, 404)
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "queue", "env")), [])
            self.assertEqual(os.listdir(os.path.join(srv.data_dir, "queue", "msg")), [])
            # the page's queue view and release button ship as their own script
            st, page = http_json(srv, "GET", "/")
            self.assertIn('<script src="/queue.js"', page)
            self.assertIn('id="tab-queue"', page)
            st, js = http_json(srv, "GET", "/queue.js")
            self.assertEqual(st, 200)
            self.assertIn("/api/v1/queue", js)
            self.assertIn("/release", js)

    def test_release_disabled_without_smarthost(self):
        with Server(users=USERS, listeners={"submission": "submission"},
                    settings={"http_listen": "127.0.0.1:%d" % free_port(),
                              "http_open": "yes"}) as srv:
            mid = submit(srv, ["x@remote.test"], BODY)
            st, body = http_json(srv, "POST", "/api/v1/messages/%s/release" % mid,
                                 {"to": ["x@remote.test"]})
            self.assertEqual(st, 409)
            self.assertIn("relay_host", body["error"])
            st, body = http_json(srv, "GET", "/api/v1/queue")
            self.assertEqual(st, 404)
            r = srv.cli("queue", "--data-dir", srv.data_dir, "list", "--timeout", "1", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no relay queue here", r.stderr)


class RelayConfig(unittest.TestCase):
    def refused(self, text, *needles):
        tmp = tempfile.mkdtemp(prefix="sg-relay-cfg-")
        os.chmod(tmp, 0o755)
        try:
            conf = os.path.join(tmp, "smtpgate.conf")
            with open(conf, "w") as f:
                # the listener last: the line numbers above stay as written
                f.write(text.replace("@TMP@", tmp).replace("@CONF@", conf) +
                        "[listener submission]\nrole = submission\nlisten = 127.0.0.1:%d\n"
                        % free_port())
            os.makedirs(os.path.join(tmp, "data"))
            os.chmod(os.path.join(tmp, "data"), 0o777)
            import subprocess
            from harness import binary
            r = subprocess.run([binary(), "serve", "--config", conf, "--data-dir",
                                os.path.join(tmp, "data")], capture_output=True, text=True,
                               timeout=20, stdin=subprocess.DEVNULL)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            for n in needles:
                self.assertIn(n.replace("@CONF@", conf).replace("@TMP@", tmp), r.stderr)
            return r.stderr
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_bad_relay_configs(self):
        head = "http_listen = off\ndelivery = relay\n"
        self.refused(head + "relay_host = relay.test:99999\n",
                     "@CONF@:3: relay_host 'relay.test:99999' is not HOST:PORT")
        self.refused(head + "relay_host = relay.test\n", "@CONF@:3: relay_host")
        self.refused(head + "relay_host = relay.test:25\nrelay_auth = MAGIC\n",
                     "@CONF@:4: relay_auth: unknown mechanism 'MAGIC'")
        self.refused(head + "relay_host = relay.test:25\nrelay_auth = PLAIN\nrelay_user = u\n"
                     "relay_password_file = @TMP@/missing.pw\n",
                     "@CONF@:6: relay_password_file: cannot read @TMP@/missing.pw")
        self.refused(head + "relay_host = relay.test:25\nrelay_auth = PLAIN\nrelay_user = u\n",
                     "@CONF@:4: relay_auth = PLAIN needs relay_password_file")
        self.refused(head, "@CONF@:2: delivery = relay needs a smarthost")
        self.refused(head + "relay_host = relay.test:25\nrelay_tls = sometimes\n",
                     "@CONF@:4: relay_tls must be starttls, implicit or none")
        self.refused(head + "relay_host = relay.test:25\nrelay_retry_min = soon\n",
                     "@CONF@:4: bad value for 'relay_retry_min'")
        # a key file that exists but is no key: refused when the relay starts, with its line
        self.refused(head + "relay_host = relay.test:25\ndkim_key = example.test sel @CONF@\n",
                     "@CONF@:4: dkim_key: cannot use the key @CONF@")
        self.refused(head + "relay_host = relay.test:25\ndkim_key = example.test sel\n",
                     "@CONF@:4: dkim_key needs three values")


if __name__ == "__main__":
    unittest.main()
