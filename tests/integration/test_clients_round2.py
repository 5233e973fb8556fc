"""Real mail clients with their default settings, and the mechanism list as a configuration
choice (issue 16, issue 10 items 18 and 23).

    DefaultOffer     the offer of a server with no mechanism settings: no SCRAM-*-PLUS (opt-in:
                     channel_binding = yes / auth_mechanisms), no NTLM or CRAM-MD5 (opt-in:
                     legacy_verifiers); neomutt with an empty configuration apart from smtp_url
                     and smtp_pass sends a message; -PLUS keeps working where enabled (gsasl
                     with channel binding); unknown names are refused at start with file:line.
    LegacyVerifiers  the NT hash and CRAM-MD5 state are stored only with legacy_verifiers (the
                     server's setting read by `smtpgate user --config`, or --legacy-verifiers),
                     and NTLM / CRAM-MD5 work when they are.
    FakeSalt         SCRAM's salt for an unknown login is the same before and after a restart.

The client matrix (Postfix, s-nail, neomutt, nodemailer, git send-email) is at the end.
"""

import base64
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import (ALICE, BOB, R_AUTH_BAD, R_AUTH_OK, Server, ServerTestCase, headers,
                     require_tool, unb64)

CLIENT_TIMEOUT = 60
RCPT = "friend@remote.test"


def tag(label):
    return "%s-%d-%d" % (label, os.getpid(), time.time_ns())


def run(argv, input_bytes=None, env=None, timeout=CLIENT_TIMEOUT, cwd=None):
    """Run a client with stdin from input_bytes (else closed). Returns (status, output)."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(argv, input=input_bytes,
                       stdin=None if input_bytes is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=e, cwd=cwd)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def auth_events(srv, mech=None, result=None, since=0):
    """event=auth lines of the server log (from line index `since`)."""
    out = []
    for ln in srv.log_lines()[since:]:
        if "event=auth " not in ln:
            continue
        if mech is not None and " mech=%s " % mech not in ln:
            continue
        if result is not None and " result=%s " % result not in ln:
            continue
        out.append(ln)
    return out


def stored_by_subject(srv, login, subject):
    """The stored message of login's inbox with this subject (bytes), or None."""
    for mid in srv.messages(login):
        data = srv.read_message(login, mid)
        if subject.encode() in data:
            return data
    return None


def envelope(stored):
    env = headers(stored, "X-Smtpgate-Envelope")
    return dict(p.strip().split("=", 1) for p in env[0].split(";") if "=" in p) if env else {}


class ClientCase(ServerTestCase):
    """Helpers shared by the client tests: a private temp dir per class, neomutt and gsasl."""

    USERS = (ALICE, BOB)

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sg-round2-")
        try:
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

    def assert_delivered(self, login, subject, mech, out=""):
        """A message with this subject is in login's inbox, authenticated by mech."""
        deadline = time.monotonic() + 5
        stored = None
        while stored is None and time.monotonic() < deadline:
            stored = stored_by_subject(self.srv, login, subject)
            if stored is None:
                time.sleep(0.05)
        self.assertIsNotNone(stored, "no message %r in %s's inbox; client output:\n%s\nauth log:\n%s"
                             % (subject, login, out[-1500:], "\n".join(auth_events(self.srv)[-4:])))
        env = envelope(stored)
        self.assertEqual((env.get("auth"), env.get("login")), (mech, login), stored[:600])
        return stored

    # -- neomutt -----------------------------------------------------------------------
    def neomutt(self, login, secret, lines=(), listener="submission", subject=None):
        """neomutt in batch mode (`neomutt -n -F rc -s SUBJ RCPT < body`, no terminal): rc holds
        smtp_url and smtp_pass (or the token command) plus `lines`; HOME is a private dir whose
        ~/.mutt_certificates (neomutt's default certificate_file) holds the server's certificate,
        as neomutt writes it after the user accepts the certificate once; the sender is $EMAIL.
        Returns (status, output, subject)."""
        require_tool("neomutt")
        subject = subject or tag("neomutt")
        home = tempfile.mkdtemp(prefix="home-", dir=self.tmp)
        shutil.copy(self.srv.cert_path(), os.path.join(home, ".mutt_certificates"))
        scheme = "smtps" if self.srv.is_implicit_tls(listener) else "smtp"
        rc_lines = ['set smtp_url="%s://%s@127.0.0.1:%d/"'
                    % (scheme, login.replace("@", "%40"), self.srv.port(listener))]
        if secret is not None:
            rc_lines.append('set smtp_pass="%s"' % secret)
        rc_lines += list(lines)
        conf = os.path.join(home, "neomuttrc")
        with open(conf, "w") as f:
            f.write("\n".join(rc_lines) + "\n")
        env = {"HOME": home, "EMAIL": login if "@" in login else ALICE.login, "TERM": "dumb"}
        rc, out = run(["neomutt", "-n", "-F", conf, "-s", subject, RCPT],
                      input_bytes=b"sent by neomutt\n", env=env)
        return rc, out, subject

    # -- gsasl -------------------------------------------------------------------------
    def gsasl(self, mech, login, password, listener="submission", no_cb=False):
        require_tool("gsasl")
        argv = ["gsasl", "--smtp", "--connect", self.srv.addr(listener),
                "--x509-ca-file", self.srv.cert_path(), "-m", mech, "-a", login, "-p", password,
                "--verbose"]
        if no_cb:
            argv.append("--no-cb")
        return run(argv)


class DefaultOffer(ClientCase):
    """A server with no mechanism settings at all (legacy_verifiers as shipped: none), plus a
    listener with channel_binding = yes and one with an explicit auth_mechanisms list."""

    SETTINGS = {"legacy_verifiers": ""}
    LISTENERS = {"submission": "submission", "submissions": "submissions",
                 "plus": {"role": "submission", "channel_binding": "yes"},
                 "narrow": {"role": "submission", "auth_mechanisms": "SCRAM-SHA-256, PLAIN"}}

    def offer(self, listener):
        with self.srv.raw(listener) as c:
            c.ehlo()
            if not self.srv.is_implicit_tls(listener):
                c.starttls()
                c.ehlo()
            mechs = c.auth_mechs()
            c.quit()
        return mechs

    def test_default_offer_has_no_plus_and_no_legacy(self):
        for listener in ("submission", "submissions"):
            mechs = self.offer(listener)
            self.assertEqual(mechs[0], "SCRAM-SHA-256", mechs)
            self.assertFalse([m for m in mechs if m.endswith("-PLUS")], mechs)
            for m in ("CRAM-MD5", "NTLM"):
                self.assertNotIn(m, mechs)
            for m in ("SCRAM-SHA-1", "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN"):
                self.assertIn(m, mechs)
        # not offered = not accepted
        with self.srv.raw("submission") as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            for m in ("CRAM-MD5", "NTLM", "SCRAM-SHA-256-PLUS"):
                r = c.cmd("AUTH " + m)
                self.assertTrue(r.first.startswith("504 5.5.4"), (m, r.first))
            c.quit()

    def test_listener_lists(self):
        plus = self.offer("plus")
        self.assertEqual(plus[:3], ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"], plus)
        self.assertEqual(self.offer("narrow"), ["SCRAM-SHA-256", "PLAIN"])

    def test_neomutt_default_settings(self):
        # issue 16 item 1: an rc with only smtp_url and smtp_pass; GNU SASL picks the strongest
        # mechanism offered, which is no longer a -PLUS one that neomutt cannot bind
        rc, out, subject = self.neomutt(ALICE.login, ALICE.password)
        self.assertEqual(rc, 0, out)
        self.assert_delivered(ALICE.login, subject, "SCRAM-SHA-256", out)
        rc, out, subject = self.neomutt(BOB.login, BOB.password, listener="submissions")
        self.assertEqual(rc, 0, out)
        self.assert_delivered(BOB.login, subject, "SCRAM-SHA-256", out)

    def test_neomutt_on_a_channel_binding_listener(self):
        # The trade-off documented in docs/mechanisms.md: where -PLUS is offered, neomutt's GNU
        # SASL picks it without handing over the channel binding and gives up before sending
        # a credential (the server logs result=aborted or nothing); a client that binds (gsasl)
        # gets the stronger mechanism.
        n = len(self.srv.log_lines())
        rc, out, subject = self.neomutt(ALICE.login, ALICE.password, listener="plus")
        self.assertNotEqual(rc, 0, out)
        self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subject))
        self.assertFalse(auth_events(self.srv, result="ok", since=n), auth_events(self.srv, since=n))
        rc, out = self.gsasl("SCRAM-SHA-256-PLUS", ALICE.login, ALICE.password, listener="plus")
        self.assertEqual(rc, 0, out)
        self.assertIn(R_AUTH_OK, out)
        first = re.search(r"^334 \s*\n([A-Za-z0-9+/=]+)\s*$", out, re.M)
        self.assertTrue(first and unb64(first.group(1)).startswith(b"p=tls-exporter,"), out)

    def test_bad_lists_refused_at_start(self):
        cases = [("auth_mechanisms = SCRAM-SHA-256 PLAIN FROBNICATE\n", 2,
                  "unknown mechanism 'FROBNICATE'"),
                 ("[listener s]\nrole = submission\nauth_mechanisms = PLAIN CRAM-MD55\n", 4,
                  "unknown mechanism 'CRAM-MD55'"),
                 ("auth_mechanisms = PLAIN CRAM-MD5\n", 2, "CRAM-MD5 needs its legacy verifier"),
                 ("legacy_verifiers = ntlm md5\n", 2, "legacy_verifiers: unknown verifier 'md5'")]
        for text, line, want in cases:
            conf = os.path.join(self.tmp, "bad-%d.conf" % time.time_ns())
            with open(conf, "w") as f:
                f.write("# bad\n" + text)
            r = self.srv.cli("serve", "--config", conf, "--data-dir",
                             os.path.join(self.tmp, "unused"), check=False, timeout=20)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("%s:%d: %s" % (conf, line, want), r.stderr)


class LegacyVerifiers(ClientCase):
    """legacy_verifiers = ntlm cram-md5: stored by `smtpgate user` when the server's config says
    so, offered and working; without it nothing fast is stored."""

    SETTINGS = {"legacy_verifiers": "ntlm cram-md5", "ntlm_allow_v1": "yes"}

    def kinds(self, login):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.srv.data_dir, "smtpgate.db"),
                             uri=True)
        try:
            rows = db.execute("SELECT v.kind FROM verifiers v JOIN accounts a ON a.id = v.account_id "
                              "WHERE a.login = ?", (login,)).fetchall()
        finally:
            db.close()
        return sorted(r[0] for r in rows)

    def test_cli_reads_the_server_config(self):
        self.assertEqual(self.kinds(ALICE.login),
                         ["cram_md5", "nt", "password_hash", "scram_sha1", "scram_sha256"])
        self.srv.cli("user", "--config", self.srv.config_path, "add", "carol@example.test",
                     "--password-stdin", input="carol-Secret-1\n")
        self.assertIn("nt", self.kinds("carol@example.test"))
        # without the setting (the default) and with --legacy-verifiers none: no fast verifier
        plain_conf = os.path.join(self.tmp, "plain.conf")
        with open(plain_conf, "w") as f:
            f.write("data_dir = %s\n" % self.srv.data_dir)
        self.srv.cli("user", "--config", plain_conf, "add", "dan@example.test", "--password-stdin",
                     input="dan-Secret-1\n")
        self.assertEqual(self.kinds("dan@example.test"), ["password_hash", "scram_sha1", "scram_sha256"])
        self.srv.cli("user", "--config", self.srv.config_path, "passwd", "carol@example.test",
                     "--password-stdin", "--legacy-verifiers", "none", input="carol-Secret-2\n")
        self.assertEqual(self.kinds("carol@example.test"), ["password_hash", "scram_sha1", "scram_sha256"])
        r = self.srv.cli("user", "--data-dir", self.srv.data_dir, "add", "erin", "--password-stdin",
                         "--legacy-verifiers", "lm", input="x-Secret-1\n", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("unknown verifier 'lm'", r.stderr)

    def test_legacy_mechanisms_work_when_enabled(self):
        with self.srv.raw("submission") as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            mechs = c.auth_mechs()
            self.assertIn("CRAM-MD5", mechs)
            self.assertIn("NTLM", mechs)
            r = c.auth_cram_md5(ALICE.login, ALICE.password)
            self.assertEqual(r.first, R_AUTH_OK)
            c.quit()
        require_tool("curl")
        rc, out = run(["curl", "-sS", "-v", "--url", "smtp://127.0.0.1:%d/x" % self.srv.port("submission"),
                       "--ssl-reqd", "--cacert", self.srv.cert_path(), "--login-options", "AUTH=NTLM",
                       "--user", "%s:%s" % (BOB.login, BOB.password), "--mail-from", BOB.login,
                       "--mail-rcpt", RCPT, "--upload-file", "-", "--max-time", "30"],
                      input_bytes=b"Subject: ntlm\r\n\r\nx\r\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("235 2.7.0", out)
        # a user whose fast verifiers were dropped fails NTLM like a wrong password
        self.srv.user("passwd", ALICE.login, "--password-stdin", "--legacy-verifiers", "none",
                      input=ALICE.password + "\n")
        rc, out = run(["curl", "-sS", "-v", "--url", "smtp://127.0.0.1:%d/x" % self.srv.port("submission"),
                       "--ssl-reqd", "--cacert", self.srv.cert_path(), "--login-options", "AUTH=NTLM",
                       "--user", "%s:%s" % (ALICE.login, ALICE.password), "--mail-from", ALICE.login,
                       "--mail-rcpt", RCPT, "--upload-file", "-", "--max-time", "30"],
                      input_bytes=b"Subject: ntlm\r\n\r\nx\r\n")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("535 5.7.3", out)
        self.assertIn("reason=no_verifier", auth_events(self.srv, "NTLM", "fail")[-1])


class FakeSalt(ClientCase):
    """Issue 10 item 18: the SCRAM salt shown for an unknown login derives from a key kept in the
    data directory, so it is as stable across a restart as a real account's salt."""

    def server_first(self, login, mech="SCRAM-SHA-256"):
        with self.srv.raw("submission") as c:
            c.ehlo()
            c.starttls()
            c.ehlo()
            r = c.cmd("AUTH %s %s" % (mech, base64.b64encode(("n,,n=%s,r=fyko+d2lbbFgONRv9qkxdawL"
                                                              % login).encode()).decode()))
            self.assertEqual(r.code, 334, r.first)
            c.send(b"*\r\n")
            c.read_reply()
            c.quit()
        fields = dict(f.split("=", 1) for f in unb64(r.first[4:].strip()).decode().split(","))
        return fields["s"], fields["i"]

    def test_fake_salt_survives_restart(self):
        logins = ("ghost@example.test", "nobody", ALICE.login)
        before = {lg: self.server_first(lg) for lg in logins}
        sha1 = self.server_first("ghost@example.test", "SCRAM-SHA-1")
        self.assertEqual(before["ghost@example.test"], self.server_first("ghost@example.test"))
        self.assertNotEqual(before["ghost@example.test"][0], before["nobody"][0])
        key = os.path.join(self.srv.data_dir, "scram-fake-salt.key")
        st = os.stat(key)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(st.st_size, 32)
        with open(key, "rb") as f:
            k1 = f.read()
        self.srv.restart()
        after = {lg: self.server_first(lg) for lg in logins}
        self.assertEqual(after, before)
        self.assertEqual(self.server_first("ghost@example.test", "SCRAM-SHA-1"), sha1)
        with open(key, "rb") as f:
            self.assertEqual(f.read(), k1, "the key was created again")


class GeneratedCertificate(ClientCase):
    """Issue 10 item 26: the self-signed certificate `serve` generates is a leaf (CA:FALSE,
    keyUsage digitalSignature, extendedKeyUsage serverAuth, SAN of the host name). Users are
    told to trust it: as a CA it would make them trust anything signed with its key."""

    USERS = ()

    def openssl(self, *args, check=True):
        r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60,
                           cwd=self.tmp)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_leaf_not_ca(self):
        require_tool("openssl")
        cert = self.srv.cert_path()
        text = self.openssl("x509", "-in", cert, "-noout", "-text").stdout
        self.assertRegex(text, r"X509v3 Basic Constraints: critical\s+CA:FALSE")
        ku = re.search(r"X509v3 Key Usage: critical\s+(.*)", text)
        self.assertTrue(ku, text)
        self.assertEqual(ku.group(1).strip(), "Digital Signature")
        self.assertRegex(text, r"X509v3 Extended Key Usage:\s+TLS Web Server Authentication\n")
        self.assertIn("DNS:%s" % self.srv.hostname, text)
        self.assertIn("Subject: O = smtpgate sandbox, CN = %s" % self.srv.hostname, text)
        # trusted as itself, for a server
        out = self.openssl("verify", "-CAfile", cert, "-purpose", "sslserver", cert).stdout
        self.assertIn(": OK", out)
        # what its key signs is not trusted through it
        key = os.path.join(self.srv.data_dir, "tls", "key.pem")
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", "evil.key", "-out", "evil.csr", "-subj", "/CN=bank.example")
        with open(os.path.join(self.tmp, "evil.ext"), "w") as f:
            f.write("subjectAltName=DNS:bank.example\nextendedKeyUsage=serverAuth\n")
        self.openssl("x509", "-req", "-in", "evil.csr", "-CA", cert, "-CAkey", key, "-set_serial", "7",
                     "-days", "1", "-extfile", "evil.ext", "-out", "evil.pem")
        r = self.openssl("verify", "-CAfile", cert, "-purpose", "sslserver", "evil.pem", check=False)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        # and the clients of the suite (GnuTLS: msmtp/gsasl/neomutt, OpenSSL: Python) trust it
        with self.srv.raw("submissions", context=self.srv.verify_context()) as c:
            c.ehlo()
            c.quit()


# ===================================================================================== matrix
# Issue 16: real clients, right and wrong secrets. One server for the whole matrix, with the
# legacy verifiers (CRAM-MD5 is in several clients' lists) and an HS256 key file for tokens.

OAUTH_SECRET = "round2-clients-oauth-secret-0123456789"
WRONG = "not-the-Secret-9"


class PostfixRelayClient:
    """A private Postfix whose only job is relaying to smtpgate (relayhost with SASL through
    Cyrus): it accepts mail on a loopback port from 127.0.0.1 and hands each recipient to a
    transport `sg_<name>` (transport_maps: <name>@remote.test) that runs smtp(8) with its own
    smtp_sasl_mechanism_filter and password (master.cf -o overrides), so one instance covers
    every mechanism and the wrong password. Everything lives in a private directory; started
    and stopped by the test (postfix -c DIR start/stop), loopback only, free ports."""

    def __init__(self, target_port, cafile, routes):
        from peers import _which, free_port, wait_banner
        self._which = _which
        self.dir = tempfile.mkdtemp(prefix="sg-pfclient-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.started = False
        d = self.dir
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix", "postfix")
        shutil.copy(cafile, os.path.join(d, "etc", "ca.pem"))
        os.chmod(os.path.join(d, "etc", "ca.pem"), 0o644)
        nexthop = "[127.0.0.1]:%d" % target_port
        with open(os.path.join(d, "etc", "transport"), "w") as f:
            for name in routes:
                f.write("%s@remote.test sg_%s:%s\n" % (name, name, nexthop))
        # smtp(8) reads the SASL password map as the postfix user
        for name, (_mech, login, password) in routes.items():
            pw = os.path.join(d, "etc", "sasl_%s" % name)
            with open(pw, "w") as f:
                f.write("%s %s:%s\n" % (nexthop, login, password))
            shutil.chown(pw, "root", "postfix")
            os.chmod(pw, 0o640)
        with open(os.path.join(d, "etc", "main.cf"), "w") as f:
            f.write(f"""
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pfclient.example.test
mydomain = example.test
myorigin = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
biff = no
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
transport_maps = texthash:{d}/etc/transport
default_transport = error:no route in this test
relay_transport = error:no route in this test
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_sasl_auth_enable = yes
smtp_sasl_security_options = noanonymous
smtp_sasl_tls_security_options = noanonymous
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {d}/etc/ca.pem
smtp_tls_loglevel = 0
minimal_backoff_time = 3600s
maximal_backoff_time = 3600s
queue_run_delay = 3600s
""")
        transports = "".join(
            "sg_%s unix - - n - - smtp -o smtp_sasl_mechanism_filter=%s "
            "-o smtp_sasl_password_maps=texthash:%s/etc/sasl_%s\n"
            % (name, mech.lower(), d, name) for name, (mech, _l, _p) in routes.items())
        with open(os.path.join(d, "etc", "master.cf"), "w") as f:
            f.write(f"""
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""" + transports)
        r = subprocess.run([_which("postfix"), "-c", os.path.join(d, "etc"), "start"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env=dict(os.environ, MAIL_CONFIG=os.path.join(d, "etc")))
        if r.returncode != 0:
            self.cleanup()
            raise AssertionError("postfix start failed: %s%s\n%s" % (r.stdout, r.stderr, self.log()))
        self.started = True
        try:
            wait_banner(self.port)
        except RuntimeError as e:
            self.cleanup()
            raise AssertionError(str(e))

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def queue(self):
        """postqueue -j of the private instance: one dict per queued message."""
        import json
        r = subprocess.run([self._which("postqueue"), "-c", os.path.join(self.dir, "etc"), "-j"],
                           capture_output=True, text=True, timeout=30)
        return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]

    def cleanup(self):
        if self.started:
            pid = None
            try:
                with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                    pid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
            subprocess.run([self._which("postfix"), "-c", os.path.join(self.dir, "etc"), "stop"],
                           capture_output=True, timeout=60)
            deadline = time.monotonic() + 10
            while pid and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


class ClientMatrix(ClientCase):
    """Issue 16's client matrix against one server (STARTTLS submission, implicit-TLS
    submissions; CRAM-MD5 through legacy_verifiers; OAuth tokens with an HS256 key file)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp0 = tempfile.mkdtemp(prefix="sg-matrix-")
        secret = os.path.join(cls.tmp0, "oauth.secret")
        with open(secret, "w") as f:
            f.write(OAUTH_SECRET)
        os.chmod(secret, 0o644)
        cls.SETTINGS = {"legacy_verifiers": "cram-md5", "oauth_secret_file": secret}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp0, ignore_errors=True)

    def token(self, login):
        r = self.srv.cli("token", "issue", login, "--config", self.srv.config_path)
        return r.stdout.strip()

    def wrong_token(self, login):
        """A token signed with another key (no smtpgate code involved)."""
        import hashlib
        import hmac
        import json

        def b64u(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        now = int(time.time())
        head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64u(json.dumps({"sub": login, "iat": now, "exp": now + 600}).encode())
        sig = hmac.new(b"another-key-0123456789abcdef", ("%s.%s" % (head, body)).encode(),
                       hashlib.sha256).digest()
        return "%s.%s.%s" % (head, body, b64u(sig))

    def assert_failed_auth(self, since, mech, login):
        """The server logged a failed AUTH of this mechanism and login since line `since`."""
        ev = [ln for ln in auth_events(self.srv, mech, "fail", since=since) if "login=%s " % login in ln]
        self.assertTrue(ev, "no event=auth mech=%s result=fail login=%s; auth log:\n%s"
                        % (mech, login, "\n".join(auth_events(self.srv, since=since)[-6:])))

    # -- Postfix (Cyrus SASL) as a relay client ------------------------------------------
    def test_postfix_relay_client(self):
        require_tool("postfix")
        if os.geteuid() != 0:
            self.skipTest("a private Postfix instance needs root (its daemons drop to postfix)")
        import smtplib
        mechs = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256")
        routes = {m.lower().replace("-", ""): (m, ALICE.login, ALICE.password) for m in mechs}
        routes["wrong"] = ("PLAIN", ALICE.login, WRONG)
        routes["wrongscram"] = ("SCRAM-SHA-256", ALICE.login, WRONG)
        since = len(self.srv.log_lines())
        pf = PostfixRelayClient(self.srv.port("submission"), self.srv.cert_path(), routes)
        try:
            subjects = {}
            with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
                for name in routes:
                    subjects[name] = tag("postfix-" + name)
                    s.sendmail(ALICE.login, ["%s@remote.test" % name],
                               ("From: %s\r\nTo: %s@remote.test\r\nSubject: %s\r\n\r\nvia postfix\r\n"
                                % (ALICE.login, name, subjects[name])).encode())
            for m in mechs:
                name = m.lower().replace("-", "")
                self.assert_delivered(ALICE.login, subjects[name], m, pf.log()[-3000:])
            # the wrong password: deferred, the 535 in the queue's reason
            deadline = time.monotonic() + 30
            reasons = {}
            while time.monotonic() < deadline:
                for msg in pf.queue():
                    for rc in msg.get("recipients", []):
                        if rc.get("delay_reason"):
                            reasons[rc["address"]] = rc["delay_reason"]
                if len(reasons) == 2:
                    break
                time.sleep(0.2)
            for name in ("wrong", "wrongscram"):
                why = reasons.get("%s@remote.test" % name, "")
                self.assertIn("535 5.7.8 Authentication credentials invalid", why,
                              "%s: %r\n%s" % (name, reasons, pf.log()[-2000:]))
                self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subjects[name]))
            self.assert_failed_auth(since, "PLAIN", ALICE.login)
            self.assert_failed_auth(since, "SCRAM-SHA-256", ALICE.login)
        finally:
            pf.cleanup()


    # -- s-nail ----------------------------------------------------------------------------
    def snail(self, mech, login, secret, listener="submission"):
        """s-nail in batch mode (v15-compat; the secret in the mta URL). s-nail checks the
        certificate by DNS name only (the IP SAN is not compared), so it connects to localhost,
        one of the generated certificate's names."""
        require_tool("s-nail")
        from urllib.parse import quote
        subject = tag("snail-" + mech)
        implicit = self.srv.is_implicit_tls(listener)
        argv = ["s-nail", "-#", "-n", "-S", "v15-compat", "-S", "ttycharset=utf-8", "-S", "nosave",
                "-S", "mta=%s://%s:%s@localhost:%d" % ("smtps" if implicit else "smtp", quote(login, safe=""),
                                                      quote(secret, safe=""), self.srv.port(listener)),
                # s-nail 14.9's "oauthbearer" method sends AUTH XOAUTH2 (its FAQ calls it both)
                "-S", "smtp-auth=%s" % ("oauthbearer" if mech == "XOAUTH2" else mech.lower()),
                "-S", "tls-ca-file=%s" % self.srv.cert_path(),
                "-S", "tls-ca-no-defaults", "-S", "from=%s" % login, "-S", "sendwait", "-S", "verbose",
                "-s", subject, RCPT]
        if not implicit:
            argv[argv.index("nosave") + 1:argv.index("nosave") + 1] = ["-S", "smtp-use-starttls"]
        home = tempfile.mkdtemp(prefix="snail-", dir=self.tmp)
        rc, out = run(argv, input_bytes=b"sent by s-nail\n", env={"HOME": home})
        return rc, out, subject

    def test_snail(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"):
            secret = self.token(ALICE.login) if mech == "XOAUTH2" else ALICE.password
            rc, out, subject = self.snail(mech, ALICE.login, secret)
            self.assertEqual(rc, 0, out[-1500:])
            self.assert_delivered(ALICE.login, subject, mech, out)
        rc, out, subject = self.snail("PLAIN", BOB.login, BOB.password, listener="submissions")
        self.assertEqual(rc, 0, out[-1500:])
        self.assert_delivered(BOB.login, subject, "PLAIN", out)

    def test_snail_wrong_secret(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"):
            since = len(self.srv.log_lines())
            secret = self.wrong_token(ALICE.login) if mech == "XOAUTH2" else WRONG
            rc, out, subject = self.snail(mech, ALICE.login, secret)
            self.assertNotEqual(rc, 0, out[-1500:])
            if mech == "XOAUTH2":
                # s-nail stops at the error challenge (334 {"status":"401",...}): no 535 to see
                m = re.search(r"SMTP server: 334 (\S+)", out)
                self.assertTrue(m, out[-1500:])
                self.assertIn(b'"status":"401"', unb64(m.group(1)))
            else:
                self.assertIn("535 5.7.8", out)
            self.assertIn("message not sent", out)
            self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subject))
            self.assert_failed_auth(since, mech, ALICE.login)

    # -- neomutt -----------------------------------------------------------------------------
    def neomutt_mech(self, mech, login, secret, listener="submission"):
        lines = []
        if mech is not None:
            lines.append('set smtp_authenticators="%s"' % mech.lower())
        if mech in ("OAUTHBEARER", "XOAUTH2"):
            tok = os.path.join(self.tmp, tag("tok"))
            with open(tok, "w") as f:
                f.write(secret)
            lines.append('set smtp_oauth_refresh_command="cat %s"' % tok)
            secret = None
        return self.neomutt(login, secret, lines=lines, listener=listener)

    def test_neomutt(self):
        for mech in (None, "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"):
            secret = self.token(ALICE.login) if mech in ("OAUTHBEARER", "XOAUTH2") else ALICE.password
            rc, out, subject = self.neomutt_mech(mech, ALICE.login, secret)
            self.assertEqual(rc, 0, "%s: %s" % (mech, out[-1500:]))
            self.assert_delivered(ALICE.login, subject, mech or "SCRAM-SHA-256", out)

    def test_neomutt_wrong_secret(self):
        for mech in (None, "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"):
            since = len(self.srv.log_lines())
            secret = self.wrong_token(ALICE.login) if mech in ("OAUTHBEARER", "XOAUTH2") else WRONG
            rc, out, subject = self.neomutt_mech(mech, ALICE.login, secret)
            self.assertNotEqual(rc, 0, "%s: %s" % (mech, out[-1500:]))
            self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subject))
            self.assert_failed_auth(since, mech or "SCRAM-SHA-256", ALICE.login)


    # -- nodemailer ------------------------------------------------------------------------
    CLIENTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "clients")

    def nodemailer(self, mech, login, secret, listener="submission"):
        """tests/clients/send.js (nodemailer pinned by tests/clients/package-lock.json, installed
        into the ignored tests/clients/node_modules with `npm ci` when missing)."""
        import json
        require_tool("node")
        if not os.path.isdir(os.path.join(self.CLIENTS_DIR, "node_modules", "nodemailer")):
            require_tool("npm")
            rc, out = run(["npm", "ci", "--no-audit", "--no-fund"], cwd=self.CLIENTS_DIR, timeout=300)
            self.assertEqual(rc, 0, "npm ci in tests/clients failed:\n" + out[-2000:])
        subject = tag("nodemailer-" + mech)
        args = {"port": self.srv.port(listener), "secure": self.srv.is_implicit_tls(listener),
                "ca": self.srv.cert_path(), "method": mech, "user": login, "from": login, "to": RCPT,
                "subject": subject}
        args["token" if mech == "XOAUTH2" else "pass"] = secret
        rc, out = run(["node", os.path.join(self.CLIENTS_DIR, "send.js"), json.dumps(args)])
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        self.assertTrue(lines, out[-1500:])
        return rc, json.loads(lines[-1]), subject

    def test_nodemailer(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"):
            secret = self.token(ALICE.login) if mech == "XOAUTH2" else ALICE.password
            rc, res, subject = self.nodemailer(mech, ALICE.login, secret)
            self.assertEqual((rc, res["ok"]), (0, True), res)
            self.assertTrue(res["response"].startswith("250 2.0.0 Ok: queued as"), res)
            self.assert_delivered(ALICE.login, subject, mech)
        rc, res, subject = self.nodemailer("PLAIN", BOB.login, BOB.password, listener="submissions")
        self.assertEqual(rc, 0, res)
        self.assert_delivered(BOB.login, subject, "PLAIN")

    def test_nodemailer_wrong_secret(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"):
            since = len(self.srv.log_lines())
            secret = self.wrong_token(ALICE.login) if mech == "XOAUTH2" else WRONG
            rc, res, subject = self.nodemailer(mech, ALICE.login, secret)
            self.assertEqual((rc, res["ok"], res["code"]), (1, False, "EAUTH"), res)
            self.assertIn("535 5.7.8", res["response"])
            self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subject))
            self.assert_failed_auth(since, mech, ALICE.login)


    # -- git send-email --------------------------------------------------------------------
    def git_send_email(self, mech, login, secret, listener="submission"):
        """git send-email (Net::SMTP + Authen::SASL) sends one patch file, STARTTLS ("tls") or
        implicit TLS ("ssl"), the generated certificate as --smtp-ssl-cert-path."""
        require_tool("git")
        subject = tag("git-" + mech)
        d = tempfile.mkdtemp(prefix="git-", dir=self.tmp)
        patch = os.path.join(d, "0001-test.patch")
        with open(patch, "w") as f:
            f.write("From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n"
                    "From: %s\nDate: Wed, 2 Dec 2026 12:00:00 +0000\nSubject: [PATCH] %s\n\n"
                    "sent by git send-email\n---\n x | 1 +\n" % (login, subject))
        argv = ["git", "send-email", "--smtp-server=127.0.0.1",
                "--smtp-server-port=%d" % self.srv.port(listener),
                "--smtp-encryption=%s" % ("ssl" if self.srv.is_implicit_tls(listener) else "tls"),
                "--smtp-user=" + login, "--smtp-pass=" + secret, "--smtp-auth=" + mech,
                "--smtp-ssl-cert-path=" + self.srv.cert_path(), "--from=" + login, "--to=" + RCPT,
                "--confirm=never", "--suppress-cc=all", "--smtp-debug=1", patch]
        env = {"HOME": d, "GIT_CONFIG_NOSYSTEM": "1", "GIT_COMMITTER_NAME": "Test",
               "GIT_COMMITTER_EMAIL": login, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": login}
        rc, out = run(argv, env=env, cwd=d)
        return rc, out, subject

    def test_git_send_email(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
            rc, out, subject = self.git_send_email(mech, ALICE.login, ALICE.password)
            self.assertEqual(rc, 0, out[-1500:])
            self.assert_delivered(ALICE.login, subject, mech, out)
        rc, out, subject = self.git_send_email("PLAIN", BOB.login, BOB.password, listener="submissions")
        self.assertEqual(rc, 0, out[-1500:])
        self.assert_delivered(BOB.login, subject, "PLAIN", out)

    def test_git_send_email_wrong_secret(self):
        for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
            since = len(self.srv.log_lines())
            rc, out, subject = self.git_send_email(mech, ALICE.login, WRONG)
            self.assertNotEqual(rc, 0, out[-1500:])
            self.assertIn("5.7.8 Authentication credentials invalid", out)
            self.assertIsNone(stored_by_subject(self.srv, ALICE.login, subject))
            self.assert_failed_auth(since, mech, ALICE.login)


if __name__ == "__main__":
    unittest.main()
