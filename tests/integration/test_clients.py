"""Independent clients against the real binary: Python smtplib (PLAIN, LOGIN, CRAM-MD5 over
STARTTLS and implicit TLS), swaks and curl. Every accepted message is checked on disk."""

import os
import re
import smtplib
import subprocess
import tempfile
import time
import unittest

from harness import (ALICE, BOB, R_AUTH_BAD, STD_USERS, ServerTestCase, headers, make_message,
                     queued_id, require_tool, split_message)

MECHS = ("PLAIN", "LOGIN", "CRAM-MD5")
CLIENT_TIMEOUT = 60


def tag(label):
    return "%s-%d-%d" % (label, os.getpid(), time.time_ns())


class Clients(ServerTestCase):
    USERS = STD_USERS

    # -- helpers ----------------------------------------------------------------------
    def check_stored(self, login, mid, subject, client_message=None):
        self.assertIn(mid, self.srv.messages(login), "queued id not in %s's inbox" % login)
        stored = self.srv.read_message(login, mid)
        self.assertIn(subject.encode(), stored)
        rec = headers(stored, "Received")
        self.assertTrue(rec, "no Received header")
        self.assertIn("ESMTPSA", rec[0], rec[0])
        self.assertIn(login, rec[0], rec[0])
        if client_message is not None:
            split_message(stored, client_message)
        return stored

    def find_by_subject(self, login, subject):
        for mid in self.srv.messages(login):
            if subject.encode() in self.srv.read_message(login, mid):
                return mid
        self.fail("no message with subject %r in %s's inbox" % (subject, login))

    def run_client(self, argv, input_bytes=None):
        r = subprocess.run(argv, input=input_bytes,
                           stdin=None if input_bytes is not None else subprocess.DEVNULL,
                           capture_output=True, timeout=CLIENT_TIMEOUT)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        return r.returncode, out

    # -- smtplib --------------------------------------------------------------------
    def smtplib_send(self, listener, mech, user=ALICE, initial_response_ok=True):
        subject = tag("smtplib-%s-%s" % (listener, mech))
        msg = make_message(user.login, "friend@remote.test", subject)
        with self.srv.smtp(listener) as s:
            s.user, s.password = user.login, user.password
            auth_object = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login,
                           "CRAM-MD5": s.auth_cram_md5}[mech]
            code, resp = s.auth(mech, auth_object, initial_response_ok=initial_response_ok)
            self.assertEqual((code, resp), (235, b"2.7.0 Authentication successful"))
            self.assertEqual(s.mail(user.login)[0], 250)
            self.assertEqual(s.rcpt("friend@remote.test")[0], 250)
            code, resp = s.data(msg)
            self.assertEqual(code, 250, resp)
            mid = queued_id("250 " + resp.decode())
        self.check_stored(user.login, mid, subject, msg)

    def test_smtplib_login_autoselect(self):
        subject = tag("smtplib-login")
        with self.srv.smtp("submission") as s:
            s.login(BOB.login, BOB.password)
            refused = s.sendmail(BOB.login, ["a@remote.test", "b@remote.test"],
                                 make_message(BOB.login, "a@remote.test", subject))
            self.assertEqual(refused, {})
        self.check_stored(BOB.login, self.find_by_subject(BOB.login, subject), subject)

    def test_smtplib_login_no_initial_response(self):
        self.smtplib_send("submission", "LOGIN", initial_response_ok=False)
        self.smtplib_send("submissions", "PLAIN", initial_response_ok=False)

    def test_smtplib_wrong_password(self):
        for listener in ("submission", "submissions"):
            with self.srv.smtp(listener) as s:
                s.user, s.password = ALICE.login, "not-the-password"
                with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                    s.auth("PLAIN", s.auth_plain)
                self.assertEqual(cm.exception.smtp_code, 535)
                self.assertEqual(b"535 " + cm.exception.smtp_error, R_AUTH_BAD.encode())

    def test_smtplib_mx_local_delivery_no_tls(self):
        subject = tag("smtplib-mx")
        with self.srv.smtp("mx", starttls=False) as s:
            self.assertEqual(s.sendmail("stranger@remote.test", [ALICE.login],
                                        make_message("stranger@remote.test", ALICE.login, subject)), {})
        mid = self.find_by_subject(ALICE.login, subject)
        self.assertEqual(headers(self.srv.read_message(ALICE.login, mid), "Return-Path"),
                         ["<stranger@remote.test>"])

    def test_smtplib_verified_tls(self):
        # the certificate the server generated is the one it serves
        with self.srv.smtp("submissions", context=self.srv.verify_context()) as s:
            s.login(ALICE.login, ALICE.password)

    # -- swaks --------------------------------------------------------------------------
    def swaks(self, listener, mech, user=ALICE, password=None, implicit=False):
        require_tool("swaks")
        subject = tag("swaks-%s-%s" % (listener, mech))
        argv = ["swaks", "--server", self.srv.addr(listener),
                "--tlsc" if implicit else "--tls",
                "--auth", mech, "--auth-user", user.login,
                "--auth-password", password if password is not None else user.password,
                "--from", user.login, "--to", "friend@remote.test",
                "--ehlo", "client.example.test", "--header", "Subject: " + subject,
                "--body", "sent by swaks", "--timeout", "30"]
        rc, out = self.run_client(argv)
        return rc, out, subject

    def test_swaks_starttls(self):
        for mech in MECHS:
            with self.subTest(mech=mech):
                rc, out, subject = self.swaks("submission", mech)
                self.assertEqual(rc, 0, out)
                m = re.search(r"<~\s+250 2\.0\.0 Ok: queued as (\S+)", out)
                self.assertTrue(m, "no queued-as reply in swaks output:\n" + out)
                self.check_stored(ALICE.login, m.group(1), subject)

    def test_swaks_implicit_tls(self):
        rc, out, subject = self.swaks("submissions", "PLAIN", implicit=True)
        self.assertEqual(rc, 0, out)
        self.check_stored(ALICE.login, self.find_by_subject(ALICE.login, subject), subject)

    def test_swaks_wrong_password(self):
        rc, out, _ = self.swaks("submission", "PLAIN", password="wrong")
        self.assertNotEqual(rc, 0, out)
        self.assertIn(R_AUTH_BAD, out)

    # -- curl ---------------------------------------------------------------------------
    def curl(self, url, mech, user=ALICE, password=None):
        require_tool("curl")
        subject = tag("curl-%s" % mech)
        msg = make_message(user.login, "friend@remote.test", subject, "sent by curl\r\n")
        with tempfile.NamedTemporaryFile(suffix=".eml", delete=False) as f:
            f.write(msg)
            path = f.name
        try:
            argv = ["curl", "-sS", "-v", "--url", url, "--ssl-reqd", "-k",
                    "--user", "%s:%s" % (user.login, password if password is not None else user.password),
                    "--login-options", "AUTH=" + mech,
                    "--mail-from", user.login, "--mail-rcpt", "friend@remote.test",
                    "--upload-file", path, "--connect-timeout", "10", "--max-time", "30"]
            rc, out = self.run_client(argv)
        finally:
            os.unlink(path)
        return rc, out, subject, msg

    def test_curl_starttls(self):
        for mech in MECHS:
            with self.subTest(mech=mech):
                rc, out, subject, msg = self.curl("smtp://%s" % self.srv.addr("submission"), mech)
                self.assertEqual(rc, 0, out)
                m = re.search(r"< 250 2\.0\.0 Ok: queued as (\S+)", out)
                self.assertTrue(m, "no queued-as reply in curl output:\n" + out)
                self.check_stored(ALICE.login, m.group(1), subject, msg)

    def test_curl_implicit_tls(self):
        rc, out, subject, msg = self.curl("smtps://%s" % self.srv.addr("submissions"), "PLAIN")
        self.assertEqual(rc, 0, out)
        self.check_stored(ALICE.login, self.find_by_subject(ALICE.login, subject), subject, msg)

    def test_curl_wrong_password(self):
        rc, out, _, _ = self.curl("smtp://%s" % self.srv.addr("submission"), "PLAIN",
                                  password="wrong")
        self.assertEqual(rc, 67, out)          # CURLE_LOGIN_DENIED
        self.assertIn(R_AUTH_BAD, out)


def _add_smtplib_matrix():
    for listener in ("submission", "submissions"):
        for mech in MECHS:
            def t(self, listener=listener, mech=mech):
                self.smtplib_send(listener, mech)
            name = "test_smtplib_%s_%s" % (listener, mech.lower().replace("-", "_"))
            t.__name__ = name
            setattr(Clients, name, t)


_add_smtplib_matrix()

if __name__ == "__main__":
    unittest.main()
