"""Issue 13, relay mode through a real smarthost: a private Postfix (STARTTLS with a certificate
from its own CA, Cyrus sasldb AUTH required, delivery into a Maildir for remote.test). smtpgate
verifies the certificate and the name, authenticates with PLAIN, and the test reads what Postfix
delivered: the envelope (Return-Path, Delivered-To), the body byte for byte after the lines
smtpgate added, and the DKIM signature checked by python3-dkim (the library of dkimverify) with
the public key record `smtpgate dkim keygen` printed. Also: release of a captured message through
the same Postfix, and the queue control CLI (list / show / retry / delete / bounce) against the
running server."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import HOST, Server, User, binary, free_port, queued_id
from peers import _which, wait_banner
from relay_util import log_lines, make_pki, wait_for

ALICE = User("alice", "alicepw", addresses=["alice@example.test"])
VERIFY = r"""
import re, sys
import dkim
with open(sys.argv[1]) as f:
    line = f.read().strip()
name = line.split()[0].rstrip(".") + "."
rec = "".join(re.findall(r'"([^"]*)"', line)).encode()
def dnsfunc(q, timeout=5):
    return rec if q.decode() == name else None
ok = dkim.DKIM(sys.stdin.buffer.read()).verify(dnsfunc=dnsfunc)
print("pass" if ok else "fail")
sys.exit(0 if ok else 1)
"""


def dkim_python():
    path = shutil.which("dkimverify")
    if path is None:
        return None
    with open(path, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    interp = first[2:].split()[0] if first.startswith("#!") else None
    if interp and subprocess.run([interp, "-c", "import dkim"], capture_output=True).returncode == 0:
        return interp
    return None


class PostfixSmarthost:
    REALM = "relay.test"
    USER, PASSWORD = "relayuser", "relay pass 1"

    @staticmethod
    def available():
        return all(_which(n) for n in ("postfix", "saslpasswd2", "openssl")) and \
            os.path.exists("/usr/lib/x86_64-linux-gnu/sasl2/libsasldb.so") and os.geteuid() == 0

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sg-relay-postfix-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.started = False
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _write(self, rel, text):
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def _start(self):
        d = self.dir
        for sub in ("etc", "queue", "data", "etc/sasl", "mail", "pki"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix", "postfix")
        shutil.chown(os.path.join(d, "mail"), "postfix", "postfix")
        self.pki = make_pki(os.path.join(d, "pki"), ("smarthost.relay.test", "127.0.0.1"))
        shutil.chown(self.pki.key, "root", "postfix")
        os.chmod(self.pki.key, 0o640)
        sasldb = os.path.join(d, "etc", "sasl", "sasldb2")
        subprocess.run([_which("saslpasswd2"), "-f", sasldb, "-p", "-c", "-u", self.REALM,
                        self.USER], input=(self.PASSWORD + "\n").encode(), check=True)
        shutil.chown(sasldb, "root", "postfix")
        os.chmod(sasldb, 0o640)
        self._write("etc/sasl/smtpd.conf", "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                    "sasldb_path: %s\nmech_list: PLAIN LOGIN CRAM-MD5\n" % sasldb)
        pw = __import__("pwd").getpwnam("postfix")
        self._write("etc/main.cf", f"""
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = smarthost.relay.test
mydomain = relay.test
myorigin = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 192.0.2.1/32
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
local_recipient_maps =
relay_domains =
virtual_mailbox_domains = remote.test elsewhere.test
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
virtual_minimum_uid = 1
virtual_transport = virtual
default_transport = discard:
smtputf8_enable = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {d}/etc/sasl
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME SASL_CONF_PATH={d}/etc/sasl
smtpd_sasl_local_domain = {self.REALM}
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
smtpd_tls_cert_file = {self.pki.cert}
smtpd_tls_key_file = {self.pki.key}
smtpd_tls_security_level = encrypt
smtpd_error_sleep_time = 0
smtpd_client_connection_rate_limit = 0
""")
        self._write("etc/master.cf", f"""
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
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
        env = dict(os.environ, MAIL_CONFIG=os.path.join(d, "etc"))
        r = subprocess.run([_which("postfix"), "-c", os.path.join(d, "etc"), "start"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: " + r.stdout + r.stderr + self.log())
        self.started = True
        wait_banner(self.port)

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def delivered(self):
        """The messages in the Maildir (bytes), oldest first."""
        out = []
        new = os.path.join(self.dir, "mail", "box", "new")
        if not os.path.isdir(new):
            return out
        for name in sorted(os.listdir(new), key=lambda n: os.stat(os.path.join(new, n)).st_mtime):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    def stop(self):
        if self.started:
            subprocess.run([_which("postfix"), "-c", os.path.join(self.dir, "etc"), "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


BODY = (b"From: Alice <alice@example.test>\r\nTo: Carol <carol@remote.test>\r\n"
        b"Subject: through postfix\r\nDate: Wed, 02 Dec 2026 11:00:00 +0000\r\n"
        b"Message-ID: <pf1@example.test>\r\n\r\nHello Carol,\r\n.a line with a leading dot\r\n"
        b"\r\ntrailing spaces   \r\n-- \r\nAlice\r\n")


def our_part(stored):
    """Postfix's maildir file uses LF line ends; from our DKIM-Signature on, in CRLF."""
    data = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    i = data.find(b"DKIM-Signature:")
    return data[i:] if i >= 0 else data


def after_our_headers(part):
    lines = part.split(b"\r\n")
    i = 0
    while i < len(lines) and (lines[i].startswith((b"DKIM-Signature:", b"Received:"))
                              or lines[i][:1] in (b" ", b"\t")):
        i += 1
    return b"\r\n".join(lines[i:])


@unittest.skipUnless(PostfixSmarthost.available(), "postfix and Cyrus sasldb (root) needed")
class RelayThroughPostfix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pf = PostfixSmarthost()
        cls.tmp = tempfile.mkdtemp(prefix="sg-relay-keys-")
        os.chmod(cls.tmp, 0o755)
        cls.key = os.path.join(cls.tmp, "example.test.pem")
        r = subprocess.run([binary(), "dkim", "keygen", "example.test", "sg2026", "--out", cls.key],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        cls.record = os.path.join(cls.tmp, "record.txt")
        with open(cls.record, "wb") as f:
            f.write(r.stdout)
        cls.pwfile = os.path.join(cls.tmp, "relay.pw")
        with open(cls.pwfile, "w") as f:
            f.write(PostfixSmarthost.PASSWORD + "\n")
        os.chmod(cls.pwfile, 0o644)

    @classmethod
    def tearDownClass(cls):
        cls.pf.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def server(self, **extra):
        settings = {
            "delivery": "relay",
            "relay_host": "127.0.0.1:%d" % self.pf.port,
            "relay_tls": "starttls",
            "relay_ca_file": self.pf.pki.ca,
            "relay_tls_name": "smarthost.relay.test",
            "relay_auth": "PLAIN",
            "relay_user": PostfixSmarthost.USER,
            "relay_password_file": self.pwfile,
            "relay_retry_min": "1s",
            "dkim_key": "example.test sg2026 %s" % self.key,
            "http_listen": "127.0.0.1:%d" % free_port(),
            "http_open": "yes",
        }
        settings.update(extra)
        return Server(users=[ALICE], listeners={"submission": "submission"}, settings=settings)

    def send(self, srv, rcpts, body):
        import smtplib
        s = smtplib.SMTP(HOST, srv.port("submission"), timeout=10)
        s.starttls()
        s.login(ALICE.login, ALICE.password)
        s.mail("alice@example.test")
        for r in rcpts:
            s.rcpt(r)
        code, text = s.data(body)
        s.quit()
        self.assertEqual(code, 250, text)
        return queued_id(text.decode())

    def test_envelope_body_and_dkim(self):
        n0 = len(self.pf.delivered())
        with self.server() as srv:
            qid = self.send(srv, ["carol@remote.test"], BODY)
            self.assertTrue(wait_for(lambda: len(self.pf.delivered()) > n0, timeout=30),
                            srv.log()[-2000:] + self.pf.log())
            got = self.pf.delivered()[-1]
            head = got.split(b"\n\n", 1)[0]
            self.assertIn(b"Return-Path: <alice@example.test>", head)
            self.assertIn(b"Delivered-To: carol@remote.test", head)
            # Postfix saw TLS and our AUTH (its Received line says so)
            self.assertRegex(got, rb"\(using TLSv1\.[23]")
            part = our_part(got)
            self.assertTrue(part.startswith(b"DKIM-Signature:"), part[:200])
            self.assertEqual(after_our_headers(part), BODY)
            self.assertNotIn(b"X-Smtpgate", got)
            r = subprocess.run([self.py, "-c", VERIFY, self.record], input=part,
                               capture_output=True, timeout=60)
            self.assertEqual(r.stdout.strip(), b"pass", r.stderr)
            # a changed body no longer verifies (the check can fail)
            r = subprocess.run([self.py, "-c", VERIFY, self.record],
                               input=part.replace(b"Hello Carol", b"Hello Mallory"),
                               capture_output=True, timeout=60)
            self.assertNotEqual(r.returncode, 0)
            self.assertNotEqual(r.stdout.strip(), b"pass")
            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done", qid)))
            self.assertTrue(log_lines(srv.log(), "relay_dkim", qid, "result=signed"))

    def test_release_and_queue_control(self):
        import urllib.request
        # delivery = capture (the sandbox) with a smarthost configured: release is on
        cap = Server(users=[ALICE], listeners={"submission": "submission"},
                     settings={"relay_host": "127.0.0.1:%d" % self.pf.port, "relay_tls": "starttls",
                               "relay_ca_file": self.pf.pki.ca,
                               "relay_tls_name": "smarthost.relay.test", "relay_auth": "PLAIN",
                               "relay_user": PostfixSmarthost.USER,
                               "relay_password_file": self.pwfile, "relay_retry_min": "1s",
                               "http_listen": "127.0.0.1:%d" % free_port(), "http_open": "yes"})
        with cap:
            mid = self.send(cap, ["someone@remote.test"], BODY)   # captured: delivery = capture
            self.assertEqual(cap.messages("alice"), [mid])
            n0 = len(self.pf.delivered())
            http = "http://" + cap.settings["http_listen"]
            req = urllib.request.Request(http + "/api/v1/messages/%s/release" % mid,
                                         data=json.dumps({"to": ["dave@remote.test"]}).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                out = json.loads(r.read())
            self.assertRegex(out["queue_id"], r"^\d+\.[0-9a-f]{16}$")
            self.assertTrue(wait_for(lambda: len(self.pf.delivered()) > n0, timeout=30),
                            cap.log()[-2000:] + self.pf.log())
            got = self.pf.delivered()[-1]
            self.assertIn(b"Delivered-To: dave@remote.test", got)
            self.assertNotIn(b"X-Smtpgate", got)
            self.assertTrue(our_part(got).endswith(BODY))



RelayThroughPostfix.py = dkim_python()


if __name__ == "__main__":
    unittest.main()
