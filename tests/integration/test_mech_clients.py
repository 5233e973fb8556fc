"""The real-client matrix of issue 3: every SASL mechanism against clients that share no code
with smtpgate (msmtp + GNU SASL + libntlm, curl, swaks + Authen::NTLM, gsasl), run against the
real binary started by the harness.

    client   mechanisms
    msmtp    PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 (SCRAM-SHA-256-PLUS: see below)
             XOAUTH2 OAUTHBEARER NTLM EXTERNAL
    curl     NTLM XOAUTH2 (on a listener offering only XOAUTH2) OAUTHBEARER
    swaks    NTLM
    gsasl    SCRAM-SHA-1 SCRAM-SHA-256 SCRAM-SHA-256-PLUS (tls-exporter, TLS 1.3)
             SCRAM-SHA-1-PLUS (tls-unique, TLS 1.2)

Each cell: success with the right secret and, when the client sends mail, the message on disk
in the account's inbox with `auth=<MECH>` in X-Smtpgate-Envelope; failure with a wrong
password / expired token / wrong identity gives the documented reply (535 5.7.8; 535 5.7.3 for
NTLM; a wrong SCRAM proof is a 535 5.7.8 too; the `334 e=...` server-final only for a
channel-binding mismatch, seen through a TLS-terminating proxy).

GSSAPI is tests/integration/test_gssapi_clients.py. msmtp 1.8.23 (Debian 12) has no -PLUS
mechanism (`auth scram-sha-256-plus` is an invalid argument): that cell is skipped with the
reason until `msmtp --version` lists it; gsasl covers -PLUS.

Tokens: the server's HS256 key is a file this test writes (oauth_secret_file); valid tokens
come from `smtpgate token issue` (and one from `--ttl 1`, used after it expired), expired and
wrong-subject tokens are minted here with hmac/hashlib so that they do not depend on our code.
Client certificates for EXTERNAL are made with the openssl command line in a temp dir.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import harness
from starttls_proxy import StartTlsProxy
from harness import (ALICE, BOB, DAVE, R_AUTH_BAD, R_AUTH_OK, ServerTestCase, headers,
                     make_message, queued_id, require_tool, unb64)

CLIENT_TIMEOUT = 60
R_AUTH_BAD_NTLM = "535 5.7.3 Authentication unsuccessful"
RCPT = "friend@remote.test"
USERS = (ALICE, BOB, DAVE)
OAUTH_SECRET = "mech-clients-test-secret-0123456789abcdef"   # >= 16 octets, no newline

QUEUED_IN_OUTPUT = re.compile(r"^(?:<--|<~?)\s*250 2\.0\.0 Ok: queued as (\S+)", re.M)


def tag(label):
    return "%s-%d-%d" % (label, os.getpid(), time.time_ns())


def run(argv, input_bytes=None, env=None, timeout=CLIENT_TIMEOUT):
    """Run a client; returns (exit status, stdout + stderr as text)."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(argv, input=input_bytes,
                       stdin=None if input_bytes is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=e)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def need(tool):
    """The path of an installed client. scripts/deps installs every one of them; a missing one
    is reported as a SKIP line naming it (harness.require_tool), never passed over silently."""
    return require_tool(tool)


def transcript(out):
    """The protocol lines of a client's debug output (msmtp '<--'/'-->', curl '<'/'>', swaks
    '<-'/'->', gsasl bare lines) and its error messages, without TLS details."""
    keep = [ln for ln in out.splitlines()
            if re.match(r"^(<--|-->|< |> |<~? |\s*~?-> |[0-9]{3}[ -]|msmtp:|curl:|gsasl:|\*\*\*)", ln)]
    return "\n".join(keep[-60:]) or transcript(out)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(claims, secret=OAUTH_SECRET):
    """An HS256 JWT (RFC 7519) made with the standard library only."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def challenges(out):
    """Decoded 334 challenges in a client transcript (msmtp '<-- 334 X', gsasl '334 X', curl
    '< 334 X'), skipping NTLM's literal 'ntlm supported'."""
    res = []
    for m in re.finditer(r"^(?:<--|<~?)?\s*334 ?(\S*)\s*$", out, re.M):
        try:
            res.append(unb64(m.group(1)))
        except ValueError:
            res.append(m.group(1).encode())
    return res


def gsasl_client_first(out):
    """The client-first message in gsasl's transcript: the line after the first '334 '."""
    m = re.search(r"^334 \s*\n([A-Za-z0-9+/=]+)\s*$", out, re.M)
    return unb64(m.group(1)) if m else b""


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode()[-500:]))


class MechClientBase(ServerTestCase):
    """A server per class, plus a private temp dir (cls.tmp) for client configs and files;
    subclasses fill it in prepare() before the server starts."""

    USERS = USERS

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sg-mech-")
        try:
            cls.prepare()
            super().setUpClass()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- checks ---------------------------------------------------------------------------
    def assert_in_output(self, needle, out, what=""):
        """needle occurs in a client's output (the failure shows the transcript, not all of it)."""
        if needle not in out:
            self.fail("%s%r not in the client output:\n%s" % (what, needle, transcript(out)))

    def assert_not_in_output(self, needle, out, what=""):
        if needle in out:
            self.fail("%s%r in the client output:\n%s" % (what, needle, transcript(out)))

    def auth_log(self, mech, result=None):
        """The server's event=auth lines for mech (optionally with result=...)."""
        pat = re.compile(r"event=auth .*\bmech=%s( |$)" % re.escape(mech))
        return [ln for ln in self.srv.log_lines() if pat.search(ln)
                and (result is None or (" result=%s " % result) in ln + " ")]

    def assert_stored(self, login, out, mech, subject):
        """The client's 'queued as' id names a message in login's inbox, authenticated by mech."""
        m = QUEUED_IN_OUTPUT.search(out)
        self.assertTrue(m, "no '250 2.0.0 Ok: queued as' in the client output:\n" + transcript(out))
        mid = queued_id("250 2.0.0 Ok: queued as " + m.group(1))
        self.assertIn(mid, self.srv.messages(login), "queued id not in %s's inbox" % login)
        stored = self.srv.read_message(login, mid)
        self.assertIn(subject.encode(), stored)
        env = headers(stored, "X-Smtpgate-Envelope")
        self.assertEqual(len(env), 1, stored[:800])
        fields = dict(p.strip().split("=", 1) for p in env[0].split(";") if "=" in p)
        self.assertEqual(fields.get("auth"), mech, env[0])
        self.assertEqual(fields.get("login"), login, env[0])
        rec = headers(stored, "Received")
        self.assertTrue(rec and "ESMTPSA" in rec[0] and "with %s)" % mech in rec[0], rec)
        return stored

    def assert_refused(self, rc, out, reply, login=None, before=None):
        """The client failed with `reply` and nothing was stored for login."""
        self.assertNotEqual(rc, 0, transcript(out))
        self.assert_in_output(reply, out)
        self.assert_not_in_output(R_AUTH_OK, out)
        if login is not None and before is not None:
            self.assertEqual(self.srv.messages(login), before, "a message was stored after a failure")

    def assert_scram_error(self, rc, out):
        """SCRAM channel-binding failure: the server-final message is '334 base64(e=...)'
        (RFC 5802 7), never 235. Returns the e= value."""
        self.assertNotEqual(rc, 0, transcript(out))
        self.assert_not_in_output(R_AUTH_OK, out)
        errs = [c for c in challenges(out) if c.startswith(b"e=")]
        self.assertTrue(errs, "no 334 e=... server-final in:\n" + transcript(out))
        return errs[-1].decode()

    def assert_scram_refused(self, rc, out):
        """A wrong SCRAM proof (or an unknown login) is answered with 535 5.7.8 at once
        (issue 10 item 25): the client shows the 535 instead of GNU SASL's "could not parse
        input" after a 334 e=invalid-proof it cannot read."""
        self.assertNotEqual(rc, 0, transcript(out))
        self.assert_not_in_output(R_AUTH_OK, out)
        self.assert_in_output(R_AUTH_BAD, out)
        self.assertFalse([c for c in challenges(out) if c.startswith(b"e=")], transcript(out))
        self.assert_not_in_output("could not parse", out)

    def oauth_error(self, out):
        """The JSON of the OAuth error challenge (RFC 7628 3.2.2 / Google's XOAUTH2)."""
        for c in challenges(out):
            if c.startswith(b"{"):
                return json.loads(c.decode())
        self.fail("no 334 base64(JSON) error challenge in:\n" + transcript(out))

    # -- tokens ----------------------------------------------------------------------------
    def issue_token(self, login, *extra):
        r = self.srv.cli("token", "issue", login, "--config", self.srv.config_path,
                         "--data-dir", self.srv.data_dir, *extra)
        tok = r.stdout.strip()
        self.assertEqual(tok.count("."), 2, r.stdout)
        return tok

    # -- msmtp -----------------------------------------------------------------------------
    def msmtp(self, mech, login, secret, listener="submission", host="127.0.0.1", sender=None,
              extra=(), subject=None):
        """Send one message with msmtp (-C generated config). Returns (rc, output, subject)."""
        need("msmtp")
        subject = subject or tag("msmtp-%s" % mech)
        d = tempfile.mkdtemp(prefix="msmtp-", dir=self.tmp)
        secret_file = os.path.join(d, "secret")
        with open(secret_file, "w") as f:
            f.write(secret)
        implicit = self.srv.is_implicit_tls(listener)
        sender = sender or (login if login and "@" in login else DAVE.addresses[0])
        lines = ["defaults", "logfile -", "timeout 30", "",
                 "account test",
                 "host %s" % host,
                 "port %d" % self.srv.port(listener),
                 "domain client.example.test",
                 "from %s" % sender,
                 "tls on",
                 "tls_starttls %s" % ("off" if implicit else "on"),
                 "tls_trust_file %s" % self.srv.cert_path(),
                 "auth %s" % mech.lower()]
        if login is not None:
            lines.append("user %s" % login)
        if secret:
            lines.append('passwordeval "cat %s"' % secret_file)
        lines += list(extra) + ["", "account default : test", ""]
        conf = os.path.join(d, "msmtprc")
        with open(conf, "w") as f:
            f.write("\n".join(lines))
        os.chmod(conf, 0o600)
        msg = ("From: <%s>\nTo: <%s>\nSubject: %s\n\nsent by msmtp with %s\n"
               % (sender, RCPT, subject, mech)).encode()
        rc, out = run(["msmtp", "-C", conf, "--debug", RCPT], input_bytes=msg)
        return rc, out, subject

    # -- curl ------------------------------------------------------------------------------
    def curl(self, mech, login, password=None, token=None, listener="submission",
             host="127.0.0.1"):
        need("curl")
        subject = tag("curl-%s" % mech)
        sender = login if "@" in login else DAVE.addresses[0]
        msg = make_message(sender, RCPT, subject, "sent by curl with %s\r\n" % mech)
        path = os.path.join(self.tmp, subject + ".eml")
        with open(path, "wb") as f:             # CRLF line ends: curl uploads the file as-is
            f.write(msg)
        argv = ["curl", "-sS", "-v", "--url",
                "smtp://%s:%d/client.example.test" % (host, self.srv.port(listener)),
                "--ssl-reqd", "--cacert", self.srv.cert_path(),
                "--login-options", "AUTH=" + mech,
                "--mail-from", sender, "--mail-rcpt", RCPT, "--upload-file", path,
                "--connect-timeout", "10", "--max-time", "30"]
        if token is not None:
            argv += ["--user", login, "--oauth2-bearer", token]
        else:
            argv += ["--user", "%s:%s" % (login, password)]
        rc, out = run(argv)
        return rc, out, subject

    # -- swaks -----------------------------------------------------------------------------
    def swaks(self, mech, login, password, listener="submission"):
        need("swaks")
        subject = tag("swaks-%s" % mech)
        argv = ["swaks", "--server", self.srv.addr(listener), "--tls",
                "--auth", mech, "--auth-user", login, "--auth-password", password,
                "--from", login if "@" in login else DAVE.addresses[0], "--to", RCPT,
                "--ehlo", "client.example.test", "--header", "Subject: " + subject,
                "--body", "sent by swaks with %s" % mech, "--timeout", "30"]
        rc, out = run(argv)
        return rc, out, subject

    # -- gsasl -----------------------------------------------------------------------------
    def gsasl(self, mech, login, password, no_cb=False, tls12=False, listener="submission",
              connect=None):
        """gsasl --smtp authenticates only (no message). Returns (rc, output)."""
        need("gsasl")
        argv = ["gsasl", "--smtp", "--connect", connect or self.srv.addr(listener),
                "--x509-ca-file", self.srv.cert_path(), "-m", mech,
                "-a", login, "-p", password, "--verbose"]
        if no_cb:
            argv.append("--no-cb")
        if tls12:
            argv += ["--priority", "NORMAL:-VERS-TLS1.3"]
        return run(argv)


class MechClients(MechClientBase):
    """One server: STARTTLS submission, implicit-TLS submissions, and a listener offering only
    XOAUTH2 (curl 7.88 prefers OAUTHBEARER when both are offered). NTLMv1 is enabled because
    msmtp (libntlm) and swaks (Authen::NTLM) send NTLMv1-style responses."""

    LISTENERS = {"submission": "submission", "submissions": "submissions",
                 "xoauth2only": {"role": "submission", "mechanisms": "XOAUTH2"}}

    @classmethod
    def prepare(cls):
        secret = os.path.join(cls.tmp, "oauth.secret")
        with open(secret, "w") as f:
            f.write(OAUTH_SECRET)
        os.chmod(secret, 0o600)
        # -PLUS is opt-in (issue 16): this class tests it, so it enables it
        cls.SETTINGS = {"ntlm_allow_v1": "yes", "oauth_secret_file": secret,
                        "channel_binding": "yes"}

    def expired_token(self, login):
        now = int(time.time())
        return mint_jwt({"sub": login, "email": login, "iat": now - 7200, "exp": now - 3600})

    # == EHLO ===============================================================================
    def test_ehlo_order_and_tls(self):
        c = self.srv.raw("submission")
        try:
            c.ehlo()
            before = c.auth_mechs()
            c.starttls()
            c.ehlo()
            after = c.auth_mechs()
        finally:
            c.quit()
        c = self.srv.raw("submissions")
        try:
            c.ehlo()
            implicit = c.auth_mechs()
        finally:
            c.quit()
        # plaintext mechanisms (and bearer tokens, RFC 7628 5) only over TLS; no -PLUS without TLS
        for m in ("PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"):
            self.assertNotIn(m, before, before)
        self.assertFalse([m for m in before if m.endswith("-PLUS")], before)
        self.assertEqual(before[0], "SCRAM-SHA-256", before)
        for mechs in (after, implicit):
            for m in ("PLAIN", "LOGIN", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                      "SCRAM-SHA-1", "CRAM-MD5", "NTLM", "OAUTHBEARER", "XOAUTH2"):
                self.assertIn(m, mechs, mechs)
            self.assertEqual(mechs[0], "SCRAM-SHA-256-PLUS", mechs)
            self.assertNotIn("EXTERNAL", mechs, "EXTERNAL offered without a client certificate")
            self.assertEqual(len(set(mechs)), len(mechs), mechs)
        # strongest first: a partial order the list must respect
        stronger = [("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"), ("SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"),
                    ("SCRAM-SHA-256", "SCRAM-SHA-1"), ("SCRAM-SHA-1", "OAUTHBEARER"),
                    ("SCRAM-SHA-1", "NTLM"), ("SCRAM-SHA-1", "CRAM-MD5"), ("CRAM-MD5", "PLAIN"),
                    ("NTLM", "PLAIN"), ("OAUTHBEARER", "PLAIN"), ("XOAUTH2", "PLAIN"),
                    ("PLAIN", "LOGIN")]
        for mechs in (before, after, implicit):
            for a, b in stronger:
                if a in mechs and b in mechs:
                    self.assertLess(mechs.index(a), mechs.index(b), "%s after %s in %s" % (a, b, mechs))
        # plaintext AUTH before TLS: 538 5.7.11 (the mechanism is not offered there)
        c = self.srv.raw("submission")
        try:
            c.ehlo()
            r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0x").decode())
            self.assertTrue(r.first.startswith("538 5.7.11"), r.first)
        finally:
            c.quit()

    def test_ehlo_listener_mechanisms(self):
        c = self.srv.raw("xoauth2only")
        try:
            c.ehlo()
            self.assertNotIn("PLAIN", c.auth_mechs())
            c.starttls()
            c.ehlo()
            self.assertEqual(c.auth_mechs(), ["XOAUTH2"])
        finally:
            c.quit()

    def test_msmtp_sees_order(self):
        # msmtp's own view of the offer (its debug transcript) before and after STARTTLS
        rc, out, _ = self.msmtp("PLAIN", ALICE.login, ALICE.password)
        self.assertEqual(rc, 0, transcript(out))
        offers = re.findall(r"^<-- 250-AUTH (.*)$", out, re.M)
        self.assertEqual(len(offers), 2, transcript(out))
        self.assertNotIn("PLAIN", offers[0].split())
        self.assertEqual(offers[1].split()[0], "SCRAM-SHA-256-PLUS")
        self.assertEqual(offers[1].split()[-2:], ["PLAIN", "LOGIN"])

    # == msmtp ==============================================================================
    def msmtp_ok(self, mech, user=ALICE, secret=None, **kw):
        rc, out, subject = self.msmtp(mech, user.login, secret if secret is not None else user.password,
                                      **kw)
        self.assertEqual(rc, 0, "msmtp auth %s as %s failed:\n%s\nserver: %s"
                         % (mech.lower(), user.login, transcript(out),
                            "\n".join(self.auth_log(mech)[-2:])))
        self.assert_in_output("--> AUTH %s" % mech, out)
        self.assert_stored(user.login, out, mech, subject)
        self.assertTrue(self.auth_log(mech, "ok"), "no event=auth mech=%s result=ok" % mech)
        return out

    def test_msmtp_plain(self):
        self.msmtp_ok("PLAIN")
        self.msmtp_ok("PLAIN", listener="submissions")

    def test_msmtp_login(self):
        self.msmtp_ok("LOGIN")

    def test_msmtp_cram_md5(self):
        self.msmtp_ok("CRAM-MD5")

    def test_msmtp_scram_sha_1(self):
        out = self.msmtp_ok("SCRAM-SHA-1")
        # RFC 5802: the server signature comes in a 334, the client answers an empty line
        self.assertTrue([c for c in challenges(out) if c.startswith(b"v=")], transcript(out))

    def test_msmtp_scram_sha_256(self):
        self.msmtp_ok("SCRAM-SHA-256")
        self.msmtp_ok("SCRAM-SHA-256", user=DAVE, listener="submissions")

    def test_msmtp_scram_sha_256_plus(self):
        rc, ver = run([need("msmtp"), "--version"])
        supported = ver.split("Supported authentication methods:", 1)[-1].split("\n")[1].split()
        if "scram-sha-256-plus" not in supported:
            self.skipTest("this msmtp (%s) offers no SCRAM-SHA-256-PLUS (supported: %s); "
                          "gsasl covers -PLUS" % (ver.split("\n")[0], " ".join(supported)))
        self.msmtp_ok("SCRAM-SHA-256-PLUS")

    def test_msmtp_xoauth2(self):
        self.msmtp_ok("XOAUTH2", secret=self.issue_token(ALICE.login))

    def test_msmtp_oauthbearer(self):
        self.msmtp_ok("OAUTHBEARER", secret=self.issue_token(ALICE.login))
        # by name: msmtp sends host=localhost (RFC 7628 3.1), which the server must accept
        out = self.msmtp_ok("OAUTHBEARER", secret=self.issue_token(ALICE.login), host="localhost")
        ir = re.search(r"^--> AUTH OAUTHBEARER (\S+)", out, re.M)
        self.assertTrue(ir, transcript(out))
        self.assertIn(b"\x01host=localhost\x01", unb64(ir.group(1)))

    def test_msmtp_ntlm_plain_login(self):
        # a login without '@': libntlm sends it as the NTLM UserName as-is (NTLMv1)
        self.msmtp_ok("NTLM", user=DAVE)

    def test_msmtp_ntlm_address_login(self):
        # libntlm splits "alice@example.test" into UserName "alice" + DomainName "example.test";
        # the issue promises that the "user@domain" login form maps to the account.
        self.msmtp_ok("NTLM", user=ALICE)

    # -- msmtp failures ---------------------------------------------------------------------
    def test_msmtp_wrong_password(self):
        before = self.srv.messages(ALICE.login)
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
            rc, out, _ = self.msmtp(mech, ALICE.login, "not-the-password")
            self.assert_refused(rc, out, R_AUTH_BAD, ALICE.login, before)
        before = self.srv.messages(DAVE.login)
        rc, out, _ = self.msmtp("NTLM", DAVE.login, "not-the-password")
        self.assert_refused(rc, out, R_AUTH_BAD_NTLM, DAVE.login, before)

    def test_msmtp_unknown_login(self):
        rc, out, _ = self.msmtp("PLAIN", "nobody@example.test", ALICE.password)
        self.assert_refused(rc, out, R_AUTH_BAD)
        rc, out, _ = self.msmtp("NTLM", "nobody", ALICE.password)
        self.assert_refused(rc, out, R_AUTH_BAD_NTLM)

    def test_msmtp_scram_wrong_password(self):
        before = self.srv.messages(ALICE.login)
        for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            rc, out, _ = self.msmtp(mech, ALICE.login, "not-the-password")
            self.assert_scram_refused(rc, out)
            # msmtp names the server's reply (exit status EX_NOPERM, 77)
            self.assertEqual(rc, 77, transcript(out))
            self.assertEqual(self.srv.messages(ALICE.login), before)

    def test_scram_failure_is_logged(self):
        # The PROTOCOL reply table: "the log says which" for bad credentials; the wrong proof
        # is one failure in the log (and the throttle), answered by 535 at once.
        n = len(self.auth_log("SCRAM-SHA-256", "fail"))
        rc, out, _ = self.msmtp("SCRAM-SHA-256", ALICE.login, "not-the-password")
        self.assert_scram_refused(rc, out)
        harness.wait_until(lambda: len(self.auth_log("SCRAM-SHA-256", "fail")) > n)
        self.assertEqual(len(self.auth_log("SCRAM-SHA-256", "fail")), n + 1,
                         "no event=auth mech=SCRAM-SHA-256 result=fail after msmtp got e=; log:\n"
                         + "\n".join(self.srv.log_lines()[-8:]))

    def test_msmtp_oauth_expired_token(self):
        before = self.srv.messages(ALICE.login)
        tok = self.expired_token(ALICE.login)
        for mech in ("XOAUTH2", "OAUTHBEARER"):
            rc, out, _ = self.msmtp(mech, ALICE.login, tok)
            self.assert_refused(rc, out, R_AUTH_BAD, ALICE.login, before)
            err = self.oauth_error(out)
            self.assertIn("status", err)
            self.assertIn(err["status"], ("401", "invalid_token"), err)

    def test_msmtp_oauth_wrong_identity(self):
        # a valid token for bob presented as alice
        tok = self.issue_token(BOB.login)
        for mech in ("XOAUTH2", "OAUTHBEARER"):
            rc, out, _ = self.msmtp(mech, ALICE.login, tok)
            self.assert_refused(rc, out, R_AUTH_BAD)
            self.oauth_error(out)

    def test_msmtp_oauth_bad_signature(self):
        now = int(time.time())
        tok = mint_jwt({"sub": ALICE.login, "iat": now, "exp": now + 600}, secret="another-secret-0123456789")
        rc, out, _ = self.msmtp("OAUTHBEARER", ALICE.login, tok)
        self.assert_refused(rc, out, R_AUTH_BAD)

    def test_oauth_minted_token_accepted(self):
        # our hand-minted HS256 token (no smtpgate code involved) is accepted: the JWT format
        # the server checks is the standard one
        now = int(time.time())
        tok = mint_jwt({"sub": ALICE.login, "iat": now, "exp": now + 600})
        self.msmtp_ok("OAUTHBEARER", secret=tok)

    def test_oauth_ttl_token(self):
        # `smtpgate token issue --ttl 1` sets exp = iat + 1. The server allows SG_JWT_LEEWAY
        # (60 s, src/sasl/jwt.h) of clock skew, so such a token still works a few seconds
        # later; expiry proper is tested with tokens minted an hour in the past.
        tok = self.issue_token(ALICE.login, "--ttl", "1")
        claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
        self.assertEqual(claims["exp"] - claims["iat"], 1, claims)
        self.assertEqual(claims["sub"], ALICE.login, claims)
        self.msmtp_ok("XOAUTH2", secret=tok)

    def test_oauth_expired_beyond_leeway(self):
        now = int(time.time())
        tok = mint_jwt({"sub": ALICE.login, "iat": now - 200, "exp": now - 90})
        rc, out, _ = self.msmtp("XOAUTH2", ALICE.login, tok)
        self.assert_refused(rc, out, R_AUTH_BAD)
        rc, out, _ = self.curl("OAUTHBEARER", ALICE.login, token=tok)
        self.assert_refused(rc, out, R_AUTH_BAD)

    # == curl ===============================================================================
    def curl_ok(self, mech, user=ALICE, login=None, **kw):
        rc, out, subject = self.curl(mech, login or user.login, **kw)
        self.assertEqual(rc, 0, transcript(out))
        self.assertTrue(re.search(r"^> AUTH %s\b" % re.escape(mech), out, re.M), transcript(out))
        self.assert_stored(user.login, out, mech, subject)
        return out

    def test_curl_ntlm(self):
        out = self.curl_ok("NTLM", password=ALICE.password)
        if re.search(r"^> AUTH NTLM\s*$", out, re.M):     # no initial response: MS-SMTPNTLM
            self.assert_in_output("< 334 ntlm supported", out)
        # "DOMAIN\user" login form
        self.curl_ok("NTLM", user=DAVE, login="EXAMPLE\\dave", password=DAVE.password)

    def test_curl_ntlm_wrong_password(self):
        rc, out, _ = self.curl("NTLM", ALICE.login, password="not-the-password")
        self.assertEqual(rc, 67, transcript(out))          # CURLE_LOGIN_DENIED
        self.assert_refused(rc, out, R_AUTH_BAD_NTLM)

    def test_curl_oauthbearer(self):
        out = self.curl_ok("OAUTHBEARER", token=self.issue_token(ALICE.login), host="localhost")
        self.assert_in_output("> AUTH OAUTHBEARER", out)

    def test_curl_xoauth2(self):
        # on a listener offering only XOAUTH2: curl 7.88 sends OAUTHBEARER if both are offered
        self.curl_ok("XOAUTH2", token=self.issue_token(ALICE.login), listener="xoauth2only")

    def test_curl_oauth_expired_token(self):
        tok = self.expired_token(ALICE.login)
        # OAUTHBEARER: curl answers the error challenge with AQ== (RFC 7628 3.2.3), then 535
        rc, out, _ = self.curl("OAUTHBEARER", ALICE.login, token=tok)
        self.assertEqual(rc, 67, transcript(out))              # CURLE_LOGIN_DENIED
        self.assert_refused(rc, out, R_AUTH_BAD)
        self.assertEqual(self.oauth_error(out)["status"], "invalid_token")
        # XOAUTH2: curl hangs up on the 334 {"status":"401",...} challenge: no 535 to see
        rc, out, _ = self.curl("XOAUTH2", ALICE.login, token=tok, listener="xoauth2only")
        self.assertEqual(rc, 67, transcript(out))
        self.assert_not_in_output(R_AUTH_OK, out)
        err = self.oauth_error(out)
        self.assertEqual((err.get("status"), err.get("schemes")), ("401", "bearer"), err)

    def test_oauth_failure_is_logged(self):
        # Like SCRAM's e=: curl drops the connection after XOAUTH2's error challenge; the
        # failed attempt must still reach the log (and the throttle).
        n = len(self.auth_log("XOAUTH2", "fail"))
        rc, out, _ = self.curl("XOAUTH2", ALICE.login, token=self.expired_token(ALICE.login),
                               listener="xoauth2only")
        self.assertEqual(rc, 67, transcript(out))
        harness.wait_until(lambda: len(self.auth_log("XOAUTH2", "fail")) > n)
        self.assertEqual(len(self.auth_log("XOAUTH2", "fail")), n + 1,
                         "no event=auth mech=XOAUTH2 result=fail after curl got the error "
                         "challenge; log:\n" + "\n".join(self.srv.log_lines()[-6:]))

    def test_curl_oauth_wrong_identity(self):
        tok = self.issue_token(BOB.login)
        rc, out, _ = self.curl("OAUTHBEARER", ALICE.login, token=tok)
        self.assert_refused(rc, out, R_AUTH_BAD)

    # == swaks ==============================================================================
    def test_swaks_ntlm(self):
        for user in (ALICE, DAVE):
            rc, out, subject = self.swaks("NTLM", user.login, user.password)
            self.assertEqual(rc, 0, transcript(out))
            self.assert_in_output("<~  334 ntlm supported", out)
            self.assert_stored(user.login, out, "NTLM", subject)

    def test_swaks_ntlm_wrong_password(self):
        rc, out, _ = self.swaks("NTLM", ALICE.login, "not-the-password")
        self.assert_refused(rc, out, R_AUTH_BAD_NTLM)

    # == gsasl ==============================================================================
    def gsasl_ok(self, mech, user=ALICE, tls=None, **kw):
        n = len(self.auth_log(mech, "ok"))
        rc, out = self.gsasl(mech, user.login, user.password, **kw)
        self.assertEqual(rc, 0, transcript(out))
        self.assert_in_output(R_AUTH_OK, out)
        self.assertTrue([c for c in challenges(out) if c.startswith(b"v=")], transcript(out))
        lines = harness.wait_until(lambda: (lambda l: l if len(l) > n else None)(
            self.auth_log(mech, "ok"))) or self.auth_log(mech, "ok")
        self.assertEqual(len(lines), n + 1, "server log: no new event=auth mech=%s result=ok" % mech)
        self.assertIn("login=%s " % user.login, lines[-1])
        if tls:
            self.assertIn("tls=%s " % tls, lines[-1])
        return out

    def test_gsasl_scram_sha_1(self):
        self.gsasl_ok("SCRAM-SHA-1", no_cb=True)

    def test_gsasl_scram_sha_256(self):
        self.gsasl_ok("SCRAM-SHA-256", no_cb=True)
        self.gsasl_ok("SCRAM-SHA-256", user=DAVE, no_cb=True)

    def test_gsasl_scram_sha_256_plus_tls13(self):
        out = self.gsasl_ok("SCRAM-SHA-256-PLUS", tls="TLSv1.3")
        self.assertTrue(gsasl_client_first(out).startswith(b"p=tls-exporter,"), transcript(out))

    def test_gsasl_scram_plus_tls12(self):
        for mech in ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"):
            out = self.gsasl_ok(mech, tls12=True, tls="TLSv1.2")
            self.assertTrue(gsasl_client_first(out).startswith(b"p=tls-unique,"), transcript(out))

    def test_gsasl_scram_wrong_password(self):
        for mech, no_cb in (("SCRAM-SHA-1", True), ("SCRAM-SHA-256", True), ("SCRAM-SHA-256-PLUS", False)):
            rc, out = self.gsasl(mech, ALICE.login, "not-the-password", no_cb=no_cb)
            self.assert_scram_refused(rc, out)
            wrong = [ln for ln in self.auth_log(mech, "fail") if "login=%s " % ALICE.login in ln]
            self.assertTrue(wrong and "reason=wrong_password" in wrong[-1], wrong[-1:])

    def test_gsasl_scram_plus_through_tls_proxy(self):
        # A TLS-terminating proxy between gsasl and the server (starttls_proxy.py): the channel
        # binding gsasl computes is that of its TLS session with the proxy. The server tells the
        # client why (334 e=channel-bindings-dont-match, RFC 5802 7; the one e= it still sends)
        # and counts the failure; the same proxy passes non-PLUS SCRAM, which cannot notice it.
        # GNU SASL 2.2 shows the e= line with --verbose but then reports "could not parse
        # input" (it parses no e= at all), so the server log's reason=cb_mismatch is what
        # tells an administrator about the proxy.
        key = os.path.join(self.srv.data_dir, "tls", "key.pem")
        for mech, tls12 in (("SCRAM-SHA-256-PLUS", False), ("SCRAM-SHA-1-PLUS", True)):
            with StartTlsProxy(self.srv.port("submission"), self.srv.cert_path(), key,
                               upstream_tls12=tls12) as proxy:
                rc, out = self.gsasl("SCRAM-SHA-256", ALICE.login, ALICE.password, no_cb=True,
                                     connect=proxy.addr(), tls12=tls12)
                self.assertEqual(rc, 0, transcript(out))
                self.assert_in_output(R_AUTH_OK, out)
                n = len(self.auth_log(mech, "fail"))
                rc, out = self.gsasl(mech, ALICE.login, ALICE.password, tls12=tls12,
                                     connect=proxy.addr())
                self.assertEqual(self.assert_scram_error(rc, out), "e=channel-bindings-dont-match",
                                 out)
                time.sleep(0.2)
                lines = self.auth_log(mech, "fail")
                self.assertEqual(len(lines), n + 1, lines[-2:])
                self.assertIn("reason=cb_mismatch", lines[-1])
                self.assertEqual(proxy.starttls_seen, 2)

    def test_gsasl_scram_unknown_user(self):
        rc, out = self.gsasl("SCRAM-SHA-256", "nobody@example.test", "whatever", no_cb=True)
        # the same 535 as a wrong password: an unknown login must not be told apart
        self.assert_scram_refused(rc, out)


class ScramThrottle(MechClientBase):
    """Failed SCRAM attempts count like any other failure. The per-IP throttle here cools off
    after 3 failures; each wrong proof is answered by 535 5.7.8."""

    SETTINGS = {"throttle_ip_threshold": 3, "throttle_account_threshold": 3,
                "throttle_cooloff_ms": 60000, "throttle_max_delay_ms": 200}

    def test_scram_guessing_is_throttled(self):
        for _ in range(3):
            rc, out = self.gsasl("SCRAM-SHA-256", ALICE.login, "guess-%d" % time.time_ns(), no_cb=True)
            self.assert_scram_refused(rc, out)
        # after 3 failures from this address (the threshold), AUTH is refused for the cool-off
        # period, whatever the mechanism and even with the right password (as after 3 wrong PLAIN)
        rc, out = self.gsasl("SCRAM-SHA-256", ALICE.login, ALICE.password, no_cb=True)
        self.assert_not_in_output(R_AUTH_OK, out, "3 failed SCRAM attempts were not throttled "
                                  "(server auth log: %s): " % [ln.split(" info ")[-1] for ln in
                                                               self.srv.log_lines() if "event=auth" in ln])
        self.assert_in_output("454 4.7.0", out)


class ExternalClients(MechClientBase):
    """EXTERNAL with TLS client certificates made by the openssl CLI: a CA the server trusts
    (tls_client_ca), a certificate for alice (SAN email = her login), one for an address alice
    owns, one for an unknown account, and one for alice from a CA the server does not trust."""

    @classmethod
    def prepare(cls):
        need("openssl")
        cls.pki = os.path.join(cls.tmp, "pki")
        os.makedirs(cls.pki)
        cls.make_ca("ca")
        cls.make_ca("rogue")
        cls.make_client("ca", "alice", "alice@example.test")
        cls.make_client("ca", "alias", "al@example.test")
        cls.make_client("ca", "nobody", "nobody@example.test")
        cls.make_client("rogue", "forged", "alice@example.test")
        # issue 10 items 8 and 26: purpose and catch-all
        cls.make_client("ca", "serveronly", "alice@example.test", eku="serverAuth")
        cls.make_client("ca", "noeku", "alice@example.test", eku=None)
        cls.make_client("ca", "catchall", "boss@alice-corp.test")   # alice owns @alice-corp.test
        cls.SETTINGS = {"tls_client_ca": os.path.join(cls.pki, "ca.pem")}

    @classmethod
    def make_ca(cls, name):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
                "-subj", "/CN=smtpgate test %s" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cls.pki)

    @classmethod
    def make_client(cls, ca, name, email, eku="clientAuth"):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=%s client" % name,
                cwd=cls.pki)
        ext = os.path.join(cls.pki, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=email:%s\n%s"
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    % (email, "extendedKeyUsage=%s\n" % eku if eku else ""))
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-out", name + ".pem",
                "-days", "2", "-extfile", ext, cwd=cls.pki)

    def cert(self, name):
        return ["tls_cert_file %s" % os.path.join(self.pki, name + ".pem"),
                "tls_key_file %s" % os.path.join(self.pki, name + ".key")]

    def external(self, cert, authzid, listener="submission", sender=None):
        # msmtp sends `user` as the authorization identity (334 then base64(authzid))
        return self.msmtp("EXTERNAL", authzid, "", listener=listener, extra=self.cert(cert),
                          sender=sender)

    def test_msmtp_external(self):
        rc, out, subject = self.external("alice", ALICE.login)
        self.assertEqual(rc, 0, transcript(out))
        self.assertIn("EXTERNAL", re.findall(r"^<-- 250-AUTH (.*)$", out, re.M)[-1].split())
        self.assert_stored(ALICE.login, out, "EXTERNAL", subject)
        self.assertTrue(self.auth_log("EXTERNAL", "ok"))

    def test_msmtp_external_implicit_tls(self):
        rc, out, subject = self.external("alice", ALICE.login, listener="submissions")
        self.assertEqual(rc, 0, transcript(out))
        self.assert_stored(ALICE.login, out, "EXTERNAL", subject)

    def test_msmtp_external_owned_address(self):
        # SAN email al@example.test is an address of alice's account: it maps to her login
        rc, out, subject = self.external("alias", ALICE.login, sender=ALICE.login)
        self.assertEqual(rc, 0, transcript(out))
        self.assert_stored(ALICE.login, out, "EXTERNAL", subject)

    def test_msmtp_external_wrong_authzid(self):
        # alice's certificate, asking to act as bob: no proxy authorization
        rc, out, _ = self.external("alice", BOB.login)
        self.assert_refused(rc, out, R_AUTH_BAD, BOB.login, [])

    def test_msmtp_external_unknown_account(self):
        rc, out, _ = self.external("nobody", "nobody@example.test")
        self.assert_refused(rc, out, R_AUTH_BAD)

    def test_msmtp_external_untrusted_ca(self):
        # a certificate from another CA is not verified: EXTERNAL is not offered at all
        rc, out, _ = self.external("forged", ALICE.login)
        self.assertNotEqual(rc, 0, transcript(out))
        self.assert_not_in_output(R_AUTH_OK, out)
        offers = re.findall(r"^<-- 250-AUTH (.*)$", out, re.M)
        self.assertTrue(offers, transcript(out))
        self.assertNotIn("EXTERNAL", offers[-1].split())

    def test_msmtp_external_catchall_is_no_identity(self):
        # issue 10 item 8: alice owns @alice-corp.test to receive the domain's mail; a verified
        # certificate for boss@alice-corp.test must not make its holder alice
        before = self.srv.messages(ALICE.login)
        rc, out, _ = self.external("catchall", ALICE.login, sender=ALICE.login)
        self.assert_refused(rc, out, R_AUTH_BAD, ALICE.login, before)
        fails = self.auth_log("EXTERNAL", "fail")
        self.assertIn("reason=no_account_for_certificate", fails[-1])
        self.assertIn("login=boss@alice-corp.test ", fails[-1])

    def test_msmtp_external_extended_key_usage(self):
        # issue 10 items 8/26: a certificate whose extended key usage leaves out clientAuth
        # (here: a server certificate) is no client identity: EXTERNAL is not offered
        rc, out, _ = self.external("serveronly", ALICE.login)
        self.assertNotEqual(rc, 0, transcript(out))
        self.assert_not_in_output(R_AUTH_OK, out)
        offers = re.findall(r"^<-- 250-AUTH (.*)$", out, re.M)
        self.assertTrue(offers, transcript(out))
        self.assertNotIn("EXTERNAL", offers[-1].split())
        # without the extension (any use allowed, RFC 5280 4.2.1.12) it is one
        rc, out, subject = self.external("noeku", ALICE.login)
        self.assertEqual(rc, 0, transcript(out))
        self.assert_stored(ALICE.login, out, "EXTERNAL", subject)

    def test_no_certificate_no_external(self):
        # without a certificate EXTERNAL is not offered, and the other mechanisms still work
        rc, out, subject = self.msmtp("SCRAM-SHA-256", ALICE.login, ALICE.password)
        self.assertEqual(rc, 0, transcript(out))
        self.assertNotIn("EXTERNAL", re.findall(r"^<-- 250-AUTH (.*)$", out, re.M)[-1].split())
        self.assert_stored(ALICE.login, out, "SCRAM-SHA-256", subject)


if __name__ == "__main__":
    unittest.main()
