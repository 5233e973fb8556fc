"""peers.py: independent SMTP servers for the probe tests (Python 3 stdlib only).

    with PostfixPeer() as pf:        # Postfix + Cyrus SASL (sasldb) on 127.0.0.1:pf.port
        pf.users                     # {"alice": "alice-secret-1", ...}
    with DovecotPeer() as dv:        # Dovecot submission on 127.0.0.1:dv.port, relaying to a sink
        ...

Everything lives in a private temporary directory: configuration, queue, sasldb,
TLS certificate, logs, pid files. Nothing system-wide is read for configuration
(other than the packages' own binaries and plugins) or changed, and no system
service is started or stopped. The peers listen on loopback only, on free ports,
and stop cleanly (postfix stop / dovecot stop, then the processes are waited for).

Both speak STARTTLS with a throw-away self-signed certificate (peer.cafile), so
the probe can be tested with --tls none, --tls starttls --cafile and --insecure.

Postfix + Cyrus SASL: mechanisms PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256
NTLM through auxprop/sasldb (saslpasswd2 -f FILE). Cyrus reads smtpd.conf from
cyrus_sasl_config_path in main.cf (upstream; Debian's build
reads $config_directory/sasl/smtpd.conf; both point to the private etc/sasl), so
the system's /etc/postfix/sasl is not used. Plaintext mechanisms are offered without TLS too
(smtpd_sasl_security_options = noanonymous), so wrong-password tests work on
--tls none; relaying needs authentication (reject_unauth_destination); mail is
discarded (default_transport = discard).

Dovecot submission: mechanisms PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256
from a passwd-file with {PLAIN} passwords (the SCRAM and CRAM-MD5 secrets are
derived on the fly), and OAUTHBEARER / XOAUTH2 through an oauth2 passdb with
local JWT validation (introspection_mode = local, an HS256 key in a private
fs:posix dict; peer.token("alice") mints a token it accepts). No HTTP
introspection server is needed. submission_relay_host points to a small
in-process SMTP sink; login_trusted_networks keeps Dovecot's anvil auth penalty
(up to 15 s per failure) out of the tests.

Run standalone:  python3 peers.py   (starts both, prints their ports, probes
them with smtplib, stops them).
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time

SBIN = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]


def _which(name):
    for d in SBIN + os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if d and os.access(p, os.X_OK):
            return p
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_banner(port, timeout=15.0):
    """Wait until something on 127.0.0.1:port sends a 220 greeting."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(3)
                data = s.recv(512)
                if data.startswith(b"220"):
                    try:
                        s.sendall(b"QUIT\r\n")
                    except OSError:
                        pass
                    return
                last = data
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise RuntimeError("no SMTP greeting on port %d: %r" % (port, last))


def make_cert(directory, cn="localhost"):
    """A self-signed certificate for localhost/127.0.0.1; returns (cert, key)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(key, 0o640)
    return cert, key


class SmtpSink:
    """A minimal SMTP server that accepts everything (for Dovecot's relay)."""

    def __init__(self):
        self.messages = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                w = self.wfile
                w.write(b"220 sink.test ESMTP\r\n")
                data_mode, buf = False, []
                for raw in self.rfile:
                    line = raw.rstrip(b"\r\n")
                    if data_mode:
                        if line == b".":
                            sink.messages.append(b"\n".join(buf))
                            data_mode, buf = False, []
                            w.write(b"250 2.0.0 Ok: queued\r\n")
                        else:
                            buf.append(line)
                        continue
                    cmd = line[:4].upper()
                    if cmd == b"EHLO":
                        w.write(b"250-sink.test\r\n250 8BITMIME\r\n")
                    elif cmd == b"DATA":
                        data_mode = True
                        w.write(b"354 go ahead\r\n")
                    elif cmd == b"QUIT":
                        w.write(b"221 bye\r\n")
                        return
                    else:
                        w.write(b"250 2.0.0 Ok\r\n")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class _Peer:
    users = {
        "alice": "alice-secret-1",
        "bob": "Bob pass 2",
    }

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class PostfixPeer(_Peer):
    MECHS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "NTLM"]
    REALM = "probe.test"

    @staticmethod
    def available():
        return all(_which(n) for n in ("postfix", "saslpasswd2", "openssl")) and \
            os.path.exists("/usr/lib/x86_64-linux-gnu/sasl2/libsasldb.so") and os.geteuid() == 0

    def __init__(self, port=None, start=True):
        self.dir = tempfile.mkdtemp(prefix="sg-postfix-")
        os.chmod(self.dir, 0o755)
        self.port = port or free_port()
        self.started = False
        if start:
            self.start()

    def _write(self, rel, text, mode=0o644):
        p = os.path.join(self.dir, rel)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def start(self):
        d = self.dir
        for sub in ("etc", "queue", "data", "etc/sasl"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix", "postfix")
        self.cafile, key = make_cert(os.path.join(d, "etc"))
        shutil.chown(key, "root", "postfix")
        sasldb = os.path.join(d, "etc", "sasl", "sasldb2")
        for user, pw in self.users.items():
            subprocess.run([_which("saslpasswd2"), "-f", sasldb, "-p", "-c", "-u", self.REALM, user],
                           input=(pw + "\n").encode(), check=True)
        shutil.chown(sasldb, "root", "postfix")
        os.chmod(sasldb, 0o640)
        # Debian's Postfix reads $config_directory/sasl/smtpd.conf (cyrus_sasl_config_path
        # is set to the same directory for other builds).
        self._write("etc/sasl/smtpd.conf",
                    "pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    "sasldb_path: %s\n"
                    "mech_list: %s\n" % (sasldb, " ".join(self.MECHS)))
        self._write("etc/main.cf", f"""
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix-peer.test
mydomain = probe.test
myorigin = probe.test
mydestination = probe.test
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
local_transport = discard:
default_transport = discard:
relay_transport = discard:
smtputf8_enable = no
smtpd_banner = $myhostname ESMTP probe-peer
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = {d}/etc/sasl
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME SASL_CONF_PATH={d}/etc/sasl
smtpd_sasl_local_domain = {self.REALM}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
broken_sasl_auth_clients = no
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_tls_cert_file = {d}/etc/cert.pem
smtpd_tls_key_file = {d}/etc/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 100
smtpd_client_connection_rate_limit = 0
anvil_rate_time_unit = 60s
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
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")
        env = dict(os.environ, MAIL_CONFIG=os.path.join(d, "etc"))
        out_path = os.path.join(d, "start.out")
        with open(out_path, "w") as out:
            r = subprocess.run([_which("postfix"), "-c", os.path.join(d, "etc"), "start"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               env=env)
        if r.returncode != 0:
            with open(out_path, errors="replace") as f:
                raise RuntimeError("postfix start failed: " + f.read() + self.log())
        self.started = True
        try:
            wait_banner(self.port)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(str(e) + "\n" + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def _master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        if self.started:
            pid = self._master_pid()
            subprocess.run([_which("postfix"), "-c", os.path.join(self.dir, "etc"), "stop"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while pid and time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self.started = False
        if os.environ.get("SG_KEEP_PEERS"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)


class DovecotPeer(_Peer):
    MECHS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"]
    TOKEN_MECHS = ["OAUTHBEARER", "XOAUTH2"]

    @staticmethod
    def available():
        return bool(_which("dovecot")) and os.path.exists("/usr/lib/dovecot/submission") and \
            bool(_which("openssl")) and os.geteuid() == 0

    OAUTH_KEY = b"0123456789abcdef0123456789abcdef"  # HS256 key of the local validation

    def __init__(self, port=None, start=True, oauth=True):
        self.oauth = oauth
        self.dir = tempfile.mkdtemp(prefix="sg-dovecot-")
        os.chmod(self.dir, 0o755)
        self.port = port or free_port()
        self.started = False
        self.sink = None
        self.proc = None
        if start:
            self.start()

    def start(self):
        d = self.dir
        for sub in ("run", "state", "home"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "run"), 0o755)
        self.cafile, key = make_cert(d)
        os.chmod(key, 0o600)
        users = os.path.join(d, "users")
        with open(users, "w") as f:
            for u, pw in self.users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (u, pw))
        shutil.chown(users, "root", "dovecot")
        os.chmod(users, 0o640)
        self.sink = SmtpSink()
        oauth_conf = ""
        mechs = "plain login cram-md5 scram-sha-1 scram-sha-256"
        if self.oauth:
            mechs += " oauthbearer xoauth2"
            # Dovecot 2.3.19 looks keys up as <azp>/<alg>/<kid>, "default" for a token
            # without azp or kid: <prefix>/default/HS256/default, base64 content.
            keydir = os.path.join(d, "keys", "default", "HS256")
            os.makedirs(keydir)
            with open(os.path.join(keydir, "default"), "w") as f:
                f.write(base64.b64encode(self.OAUTH_KEY).decode())
            for sub in ("keys", "keys/default", "keys/default/HS256"):
                os.chmod(os.path.join(d, sub), 0o755)
            os.chmod(os.path.join(keydir, "default"), 0o644)
            ext = os.path.join(d, "oauth2.conf.ext")
            with open(ext, "w") as f:
                f.write("introspection_mode = local\n"
                        "local_validation_key_dict = fs:posix:prefix=%s/keys/\n"
                        "username_attribute = sub\n" % d)
            oauth_conf = ("passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                          "  args = %s\n}\n" % ext)
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""
instance_name = sg-dovecot-{self.port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = submission
listen = 127.0.0.1
hostname = dovecot-peer.test
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechs}
auth_failure_delay = 0
# no anvil auth penalty (up to 15 s per failure) for the tests' loopback client
login_trusted_networks = 127.0.0.0/8
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
mail_location = maildir:{d}/home/%u/Maildir
{oauth_conf}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home/%u
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {self.sink.port}
submission_relay_trusted = yes
submission_relay_ssl = no
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        # The master daemonizes: its output goes to a file, not a pipe (the
        # daemon would keep a pipe open and subprocess.run would wait forever).
        out_path = os.path.join(d, "start.out")
        with open(out_path, "w") as out:
            r = subprocess.run([_which("dovecot"), "-c", self.conf], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.sink.stop()
            with open(out_path, errors="replace") as f:
                raise RuntimeError("dovecot failed to start: " + f.read() + self.log())
        self.started = True
        try:
            wait_banner(self.port)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(str(e) + "\n" + self.log())

    def token(self, sub, ttl=3600):
        """An HS256 JWT that the oauth2 passdb's local validation accepts."""
        def b64u(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        now = int(time.time())
        head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64u(json.dumps({"sub": sub, "iat": now, "nbf": now - 5,
                                "exp": now + ttl}).encode())
        sig = hmac.new(self.OAUTH_KEY, (head + "." + body).encode(), hashlib.sha256).digest()
        return head + "." + body + "." + b64u(sig)

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.started:
            pid = None
            try:
                with open(os.path.join(self.dir, "run", "master.pid")) as f:
                    pid = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
            subprocess.run([_which("dovecot"), "-c", self.conf, "stop"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.time() + 10
            while pid and time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
            else:
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            # Dovecot's children are named "dovecot-<instance_name>/<service>".
            _kill_leftovers("dovecot-sg-dovecot-%d/" % self.port)
            _kill_leftovers(self.conf)
            self.started = False
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if os.environ.get("SG_KEEP_PEERS"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)


def _instance_pids(marker):
    """PIDs of Dovecot processes whose command line contains marker (our unique instance
    name, or our config file for the master)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        first = cmd.split(" ", 1)[0]
        if marker in cmd and (first.startswith("dovecot-") or first.endswith("/dovecot")):
            pids.append(int(entry))
    return pids


def _kill_leftovers(marker):
    """Stop what is left of one private instance (its master already asked to stop)."""
    deadline = time.time() + 5
    while time.time() < deadline and _instance_pids(marker):
        time.sleep(0.1)
    for pid in _instance_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _selftest():
    import smtplib
    ok = True
    for cls in (PostfixPeer, DovecotPeer):
        if not cls.available():
            print(cls.__name__, "not available")
            continue
        with cls() as p:
            print(cls.__name__, "on port", p.port, "dir", p.dir)
            s = smtplib.SMTP("127.0.0.1", p.port, timeout=10)
            s.ehlo("selftest")
            print("  EHLO:", s.esmtp_features.get("auth", ""), "starttls" in s.esmtp_features)
            try:
                s.login("alice", p.users["alice"])
                print("  login alice ok")
            except smtplib.SMTPException as e:
                print("  login failed:", e)
                ok = False
            s.quit()
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if _selftest() else 1)
