"""harness.py: start the real smtpgate binary on loopback and talk to it (Python 3 stdlib only).

    from harness import Server, User

    with Server(users=[User("alice@example.test", "alicepw", addresses=["al@example.test"])]) as srv:
        c = srv.raw("submission")            # raw socket client, multi-line aware
        c.ehlo(); c.starttls(); c.ehlo()
        code, text = c.cmd("AUTH PLAIN " + plain_b64("", "alice@example.test", "alicepw"))
        s = srv.smtp("submissions")          # smtplib.SMTP_SSL (implicit TLS) / smtplib.SMTP
        srv.messages("alice@example.test")   # ids in <data-dir>/mail/<login>/new/
        srv.read_message("alice@example.test", msg_id)   # bytes

Server(...) writes a config file, runs `smtpgate user add` for each account, starts
`smtpgate serve --config FILE --data-dir DIR` with stderr captured in <tmp>/server.log, waits
until every listener accepts TCP connections and stops it with SIGTERM (SIGKILL after a bound).
The binary is $SMTPGATE_BIN (default build/src/smtpgate). When a `with` block fails, or the
server died or reported a sanitizer error, the tail of its log is printed to stderr.
SG_KEEP_TMP=1 keeps the temp directory.

Run as a program it is the integration test runner used by tests/run:
    python3 tests/integration/harness.py run test_foundation.py [more files...]
It prints one line per test (PASS / FAIL / ERROR / SKIP), failure details, and a last line
`RESULT passed=N failed=N skipped=N`; the exit status is 1 when anything failed.
"""

import base64
import hashlib
import hmac
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HOST = "127.0.0.1"
TIMEOUT = 10.0              # every socket operation and client call
START_TIMEOUT = 10.0        # until all listeners accept
STOP_TIMEOUT = 5.0          # SIGTERM -> SIGKILL
HOSTNAME = "mail.example.test"
DEFAULT_ROLES = ("mx", "submission", "submissions")

ACTIVE = []                 # running Server objects (the runner prints their logs on failure)


def _repo_root():
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


SERVICE_USER = "smtpgate"
USERADD = ["useradd", "--system", "--home-dir", "/var/lib/smtpgate", "--no-create-home",
           "--shell", "/usr/sbin/nologin", SERVICE_USER]
_service_user_ok = False


def ensure_service_user():
    """Started as root, `smtpgate serve` runs as the dedicated user 'smtpgate' and refuses to
    start without it (never a shared account such as nobody): create it once, as an admin
    (or scripts/run-demo) would. Several test processes may race here: useradd's own lock
    decides, the loser sees the user."""
    global _service_user_ok
    if _service_user_ok or os.geteuid() != 0:
        return
    import pwd
    for _attempt in range(20):
        try:
            pwd.getpwnam(SERVICE_USER)
            _service_user_ok = True
            return
        except KeyError:
            pass
        subprocess.run(USERADD, capture_output=True, timeout=30)
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            time.sleep(0.2)
    raise AssertionError("cannot create the service user: %s" % " ".join(USERADD))


def binary():
    ensure_service_user()
    b = os.environ.get("SMTPGATE_BIN") or os.path.join(_repo_root(), "build", "src", "smtpgate")
    return os.path.abspath(b)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=30.0, step=0.05):
    """Poll pred() until it returns something true (returned) or `timeout` seconds pass
    (then its last value). For what the server does asynchronously: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def which(tool):
    return shutil.which(tool)


def require_tool(tool):
    """Skip the calling test when an external client is not installed."""
    if not which(tool):
        raise unittest.SkipTest(tool + " not installed (scripts/deps installs it)")
    return which(tool)


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    return base64.b64decode(text, validate=True)


def plain_b64(authzid, login, password):
    return b64(authzid.encode() + b"\0" + login.encode() + b"\0" + password.encode())


def cram_md5_response(login, password, challenge_b64):
    chal = unb64(challenge_b64)
    digest = hmac.new(password.encode(), chal, hashlib.md5).hexdigest()
    return b64(login + " " + digest)


def tls_context(verify_cert=None, maximum_version=None, minimum_version=None, client_cert=None,
                client_key=None):
    """A client context. verify_cert: a PEM file to trust (hostname not checked); None: no
    verification (the sandbox certificate is self-signed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(verify_cert)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if maximum_version is not None:
        ctx.maximum_version = maximum_version
    if minimum_version is not None:
        ctx.minimum_version = minimum_version
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


class User:
    """An account created with `smtpgate user add` before the server starts."""

    def __init__(self, login, password, addresses=(), disabled=False):
        self.login = login
        self.password = password
        self.addresses = list(addresses)
        self.disabled = disabled


class ProtocolError(AssertionError):
    pass


class Reply:
    """One SMTP reply: code (int), lines (list of str without the code), text (joined by \\n),
    raw (the bytes as received)."""

    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines
        self.raw = raw

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def first(self):
        """The first line as sent: '250 2.0.0 Ok'."""
        return self.raw.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    @property
    def last(self):
        return self.raw.rstrip(b"\r\n").split(b"\r\n")[-1].decode("utf-8", "replace")

    def __iter__(self):             # code, text = reply
        return iter((self.code, self.text))

    def __repr__(self):
        return "Reply(%r)" % self.raw.decode("utf-8", "replace")


class RawClient:
    """A plain socket SMTP client for protocol-level tests. Every read is bounded by TIMEOUT."""

    MAX_REPLY = 1 << 20

    def __init__(self, port, implicit_tls=False, context=None, timeout=TIMEOUT, greet=True):
        self.port = port
        self.timeout = timeout
        self.context = context or tls_context()
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""
        self.transcript = []
        if implicit_tls:
            self.sock = self.context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.greeting = self.read_reply() if greet else None

    # -- bytes -------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(("C", data))
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete reply within %.1fs; have %r" % (self.timeout, self.buf))
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection; unread %r" % self.buf)
        self.buf += chunk
        if len(self.buf) > self.MAX_REPLY:
            raise ProtocolError("reply larger than %d bytes" % self.MAX_REPLY)

    def read_line(self, deadline=None):
        deadline = deadline or time.monotonic() + self.timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self, timeout=None):
        """Read one (possibly multi-line) reply."""
        deadline = time.monotonic() + (timeout or self.timeout)
        raw = b""
        lines = []
        code = None
        for _ in range(10000):
            line = self.read_line(deadline)
            raw += line + b"\r\n"
            m = re.match(rb"^(\d{3})([ -])(.*)$", line)
            if not m and line[:3].isdigit() and len(line) == 3:
                m = re.match(rb"^(\d{3})()()$", line)
            if not m:
                raise ProtocolError("malformed reply line %r" % line)
            if code is not None and int(m.group(1)) != code:
                raise ProtocolError("code changed inside a multi-line reply: %r" % raw)
            code = int(m.group(1))
            lines.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                r = Reply(code, lines, raw)
                self.transcript.append(("S", raw))
                return r
        raise ProtocolError("reply with more than 10000 lines")

    def pending(self, wait=0.3):
        """Bytes the server sent that nobody asked for (waits `wait` seconds)."""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError):
            pass
        data, self.buf = self.buf, b""
        return data

    def closed(self, wait=TIMEOUT):
        """True when the server closes the connection within `wait` (unread data is discarded)."""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionError, ssl.SSLError, OSError):
            return True
        return False

    # -- commands ----------------------------------------------------------
    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.read_reply(timeout)

    def expect(self, line, code, prefix=None, timeout=None):
        r = self.cmd(line, timeout)
        self.check(r, code, prefix, line)
        return r

    @staticmethod
    def check(r, code, prefix=None, what=""):
        if r.code != code or (prefix is not None and not r.first.startswith(prefix)):
            want = prefix or str(code)
            if isinstance(what, bytes):
                what = what.decode("utf-8", "replace")
            raise AssertionError("%s: expected %r, got %r" % (what[:80], want, r.raw.decode("utf-8", "replace")))

    def ehlo(self, name="client.example.test"):
        r = self.cmd("EHLO " + name)
        self.check(r, 250, what="EHLO")
        self.esmtp = {}
        for ln in r.lines[1:]:
            parts = ln.split(None, 1)
            if parts:
                self.esmtp[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
        return r

    def auth_mechs(self):
        return self.esmtp.get("AUTH", "").upper().split()

    def starttls(self, context=None):
        self.expect("STARTTLS", 220)
        if self.buf:
            raise ProtocolError("server sent data after 220 to STARTTLS: %r" % self.buf)
        self.sock = (context or self.context).wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.esmtp = {}

    def auth_plain(self, login, password, authzid=""):
        return self.cmd("AUTH PLAIN " + plain_b64(authzid, login, password))

    def auth_login(self, login, password):
        r = self.cmd("AUTH LOGIN")
        if r.code != 334:
            return r
        r = self.cmd(b64(login))
        if r.code != 334:
            return r
        return self.cmd(b64(password))

    def auth_cram_md5(self, login, password):
        r = self.cmd("AUTH CRAM-MD5")
        if r.code != 334:
            return r
        return self.cmd(cram_md5_response(login, password, r.lines[0].strip()))

    def data(self, message, dot_stuff=True):
        """Send DATA, the message (bytes, CRLF line ends expected), the end. Returns the final reply."""
        self.expect("DATA", 354)
        if isinstance(message, str):
            message = message.encode()
        if dot_stuff:
            message = dot_stuff_bytes(message)
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        self.send(message + b".\r\n")
        return self.read_reply()

    def quit(self):
        try:
            self.cmd("QUIT")
        except (OSError, ConnectionError, ProtocolError):
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dot_stuff_bytes(message):
    lines = message.split(b"\r\n")
    return b"\r\n".join((b"." + ln) if ln.startswith(b".") else ln for ln in lines)


# The reply table of ../shared/PROTOCOL.md (prefixes of the first reply line).
R_AUTH_OK = "235 2.7.0 Authentication successful"
R_AUTH_BAD = "535 5.7.8 Authentication credentials invalid"
R_AUTH_REQUIRED = "530 5.7.0 Authentication required"
R_ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
R_UNKNOWN_MECH = "504 5.5.4 Unrecognized authentication type"
R_AUTH_ABORTED = "501 5.7.0 Authentication aborted"
R_BAD_BASE64 = "501 5.5.2 Invalid base64 data"
R_SERVER_FIRST_IR = "501 5.7.0"
R_AUTH_LINE_TOO_LONG = "500 5.5.6 Authentication exchange line is too long"
R_BAD_SEQUENCE = "503 5.5.1"
R_TEMP_AUTH = "454 4.7.0 Temporary authentication failure"
R_TOO_MANY_ERRORS = "421 4.7.0"
R_RELAY_DENIED = "554 5.7.1 Relay access denied"
R_NO_SUCH_USER = "550 5.1.1 Recipient address rejected: no such user"
R_SENDER_NOT_OWNED = "553 5.7.1 Sender address not owned by user"
R_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
R_TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
R_BAD_PARAM = "501 5.5.4"
R_QUEUED = "250 2.0.0 Ok: queued as "
ENHANCED_RE = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")

# Accounts most test files use.
ALICE = User("alice@example.test", "alice-Secret-1", addresses=["al@example.test", "@alice-corp.test"])
BOB = User("bob@example.test", "bob-Secret-2")
CAROL = User("carol@example.test", "carol-Secret-3", disabled=True)
DAVE = User("dave", "dave-Secret-4", addresses=["dave@example.org"])
STD_USERS = (ALICE, BOB, CAROL, DAVE)


def assert_reply(r, prefix, what=""):
    """r (a Reply) starts with prefix, e.g. '535 5.7.8 Authentication credentials invalid'."""
    if not r.first.startswith(prefix):
        raise AssertionError("%sexpected %r, got %r" % (what + ": " if what else "", prefix,
                                                        r.raw.decode("utf-8", "replace")))


def assert_enhanced(r, what=""):
    """Every reply line except greeting/EHLO/334/354 carries an enhanced status code (RFC 2034)."""
    for ln in r.raw.decode("utf-8", "replace").split("\r\n"):
        if ln and not ENHANCED_RE.match(ln):
            raise AssertionError("%sno enhanced status code in %r" % (what + ": " if what else "", ln))


QUEUED_RE = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)")


def queued_id(reply_text):
    """The id from '250 2.0.0 Ok: queued as <id>' (str or Reply)."""
    if isinstance(reply_text, Reply):
        reply_text = reply_text.first
    if isinstance(reply_text, bytes):
        reply_text = reply_text.decode("utf-8", "replace")
    m = QUEUED_RE.match(reply_text) or re.search(r"queued as (\S+)", reply_text)
    if not m:
        raise AssertionError("no 'queued as <id>' in %r" % reply_text)
    return m.group(1).strip("<>")


class Server:
    """One smtpgate server with a private data dir and free loopback ports.

    listeners: None (one listener per role in DEFAULT_ROLES, named after the role) or a dict
        name -> role or name -> dict(role=..., other listener keys).
    listener_opts: extra keys per listener name, e.g. {"mx": {"bare_lf": "normalize"}}.
    settings: extra top-level config keys (max_message_size, sender_policy, ...).
    config_extra: raw text appended to the top-level section.
    env: extra environment variables for the server process (e.g. KRB5_KTNAME).
    """

    def __init__(self, users=(), listeners=None, listener_opts=None, settings=None,
                 config_extra="", hostname=HOSTNAME, auth_fail_delay_ms=50, env=None,
                 extra_args=(), start=True, use_config=True):
        self.bin = binary()
        self.users = list(users)
        self.hostname = hostname
        self.settings = dict(settings or {})
        self.settings.setdefault("auth_fail_delay_ms", auth_fail_delay_ms)
        # Suites send many wrong passwords from 127.0.0.1: keep throttling out of
        # their way unless a test sets it (test_security does).
        self.settings.setdefault("throttle_ip_threshold", 100000)
        self.settings.setdefault("throttle_account_threshold", 100000)
        self.settings.setdefault("throttle_max_delay_ms", auth_fail_delay_ms)
        # many servers run side by side: no HTTP unless a test asks (--http ADDR:PORT)
        self.settings.setdefault("http_listen", "off")
        # The suites exercise NTLM and CRAM-MD5 too: store their (opt-in, issue 10 item 23)
        # verifiers unless a test sets legacy_verifiers itself ("" = the server's default,
        # none; DefaultOffer and LegacyVerifiers in test_clients_round2.py cover that default).
        self.settings.setdefault("legacy_verifiers", "ntlm cram-md5")
        self.config_extra = config_extra
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.use_config = use_config
        if listeners is None:
            listeners = {r: r for r in DEFAULT_ROLES}
        self.listeners = {}
        for name, spec in listeners.items():
            spec = {"role": spec} if isinstance(spec, str) else dict(spec)
            spec.update((listener_opts or {}).get(name, {}))
            self.listeners[name] = spec
        self.tmp = tempfile.mkdtemp(prefix="sg-it-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.config_path = os.path.join(self.tmp, "smtpgate.conf")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.ports = {}
        self.proc = None
        self.died = None
        self._stopped_rc = None
        os.makedirs(self.data_dir)
        if start:
            try:
                self.start()
            except BaseException:
                self.print_log_tail("server failed to start")
                self.cleanup()
                raise

    # -- set-up ------------------------------------------------------------
    def role(self, name):
        return self.listeners[name]["role"]

    def port(self, name):
        return self.ports[name]

    def addr(self, name):
        return "%s:%d" % (HOST, self.ports[name])

    def write_config(self):
        lines = ["# written by tests/integration/harness.py",
                 "hostname = %s" % self.hostname,
                 "data_dir = %s" % self.data_dir]
        for k, v in self.settings.items():
            lines.append("%s = %s" % (k, v))
        if self.config_extra:
            lines.append(self.config_extra.rstrip("\n"))
        for name, spec in self.listeners.items():
            lines.append("")
            lines.append("[listener %s]" % name)
            lines.append("role = %s" % spec["role"])
            lines.append("listen = %s" % self.addr(name))
            for k, v in spec.items():
                if k != "role":
                    lines.append("%s = %s" % (k, v))
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._share_with_server(lines)

    def _share_with_server(self, lines):
        """Started as root, smtpgate drops to the unprivileged user smtpgate: let it reach
        its data directory and the files the config names (keytab, JWKS, ...), as an admin
        would with chown. Temp dirs are 0700 by default."""
        if os.geteuid() != 0:
            return
        paths = [self.data_dir]
        for line in lines:
            if "=" in line and not line.startswith("#"):
                v = line.split("=", 1)[1].strip()
                if v.startswith("/") and os.path.exists(v):
                    paths.append(v)
        for p in paths:
            if os.path.isfile(p):
                os.chmod(p, os.stat(p).st_mode | 0o044)
            d = os.path.dirname(p) if os.path.isfile(p) else p
            while d not in ("/", "") and d.startswith(tempfile.gettempdir() + "/"):
                os.chmod(d, os.stat(d).st_mode | 0o011)
                d = os.path.dirname(d)

    def cli(self, *args, input=None, timeout=60, check=True):
        """Run `smtpgate ARGS` (text mode). Returns CompletedProcess."""
        env = dict(os.environ)
        env.update(self.env)
        r = subprocess.run([self.bin] + [str(a) for a in args], input=input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise AssertionError("smtpgate %s failed (%d): %s%s" % (" ".join(map(str, args)),
                                                                   r.returncode, r.stdout, r.stderr))
        return r

    def user(self, *args, input=None, check=True):
        """`smtpgate user ARGS` on this server's data dir; add and passwd store the legacy
        verifiers this server's legacy_verifiers names, as `--config` would."""
        args = list(args)
        if args and args[0] in ("add", "passwd") and "--legacy-verifiers" not in args:
            args += ["--legacy-verifiers", self.settings.get("legacy_verifiers") or "none"]
        return self.cli("user", "--data-dir", self.data_dir, *args, input=input, check=check)

    def add_user(self, u):
        args = ["add", u.login]
        for a in u.addresses:
            args += ["--address", a]
        args.append("--password-stdin")
        self.user(*args, input=u.password + "\n")
        if u.disabled:
            self.user("disable", u.login)

    def start(self):
        if not os.access(self.bin, os.X_OK):
            raise AssertionError("smtpgate binary not found: %s (set SMTPGATE_BIN)" % self.bin)
        for u in self.users:
            self.add_user(u)
        last = None
        for _attempt in range(3):         # a port taken between probe and bind: retry
            self.ports = {name: free_port() for name in self.listeners}
            self.write_config()
            try:
                self._spawn()
                return
            except _PortInUse as e:
                last = e
        raise AssertionError("could not bind free ports: %s" % last)

    def serve_argv(self):
        argv = [self.bin, "serve"]
        if self.use_config:
            argv += ["--config", self.config_path]
        else:                             # everything on the command line (one listener per role)
            argv += ["--hostname", self.hostname]
            for name, spec in self.listeners.items():
                argv += ["--listen", "%s=%s" % (spec["role"], self.addr(name))]
            # never the default HTTP port 8025 (a `make run` or a parallel run may hold it)
            if not any(a in ("--http", "--no-http") or a.startswith("--http=")
                       for a in self.extra_args):
                http = str(self.settings.get("http_listen", "off"))
                argv += ["--no-http"] if http == "off" else ["--http", http]
        argv += ["--data-dir", self.data_dir] + self.extra_args
        return argv

    def restart(self, new_ports=False):
        """Stop and start again on the same data dir (accounts are kept)."""
        self.stop()
        if self.died is not None:
            raise AssertionError("server died before the restart: %s" % self.died)
        if new_ports:
            self.ports = {name: free_port() for name in self.listeners}
            self.write_config()
        self._spawn()

    def _spawn(self):
        env = dict(os.environ)
        env.update(self.env)
        readies = self.log().count("event=ready")      # earlier starts on this log
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.serve_argv(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        ACTIVE.append(self)
        deadline = time.monotonic() + START_TIMEOUT
        # event=ready is logged once every listener is bound and listening and the signal
        # handlers are in place (info level). When the log shows it, that is the whole wait:
        # no probe connection, which would be a session of its own and hold a connection slot
        # (per address and in total) until the server saw it close, racing a test that counts
        # its slots. Without a visible log, the listeners are probed by connecting.
        if (str(self.settings.get("log_level", "info")) in ("debug", "info")
                and str(self.settings.get("syslog", "no")) in ("no", "false", "off", "0")):
            while self.log().count("event=ready") <= readies:
                self._check_alive()
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("no event=ready in the log after %.0fs" % START_TIMEOUT)
                time.sleep(0.02)
            return
        waiting = dict(self.ports)
        while waiting:
            self._check_alive()
            for name, port in list(waiting.items()):
                try:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        del waiting[name]
                except OSError:
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("listeners %s not accepting after %.0fs"
                                         % (sorted(waiting), START_TIMEOUT))
                time.sleep(0.05)

    def _check_alive(self):
        """During start-up: the server exited (a port taken between probe and bind: _PortInUse)."""
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self.proc = None
            ACTIVE.remove(self)
            text = self.log()
            if "in use" in text.lower():
                raise _PortInUse(text[-300:])
            raise AssertionError("smtpgate serve exited with status %s during start-up" % rc)

    # -- tear-down ---------------------------------------------------------
    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit status (None if not running)."""
        if self.proc is None:
            return self._stopped_rc
        if self.proc.poll() is not None:
            self.died = self.proc.returncode
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
                if self.proc.returncode not in (0, -signal.SIGTERM):
                    self.died = "exit status %s after SIGTERM" % self.proc.returncode
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
                self.died = "did not stop within %.0fs of SIGTERM (killed)" % STOP_TIMEOUT
        self._stopped_rc = self.proc.returncode
        self.proc = None
        if self in ACTIVE:
            ACTIVE.remove(self)
        return self._stopped_rc

    def cleanup(self):
        self.stop()
        if os.environ.get("SG_KEEP_TMP"):
            sys.stderr.write("harness: kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def problems(self):
        """What went wrong with the process itself: crash, hang on stop, sanitizer report."""
        out = []
        if self.died is not None:
            out.append("server died or hung: %s" % self.died)
        text = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "ThreadSanitizer", "Segmentation fault"):
            if marker in text:
                out.append("server log contains %r" % marker)
        return out

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    # -- what the server did, from its own log timestamps ----------------------
    # Timing assertions use these rather than the test's clock: on a loaded machine the test
    # process may be descheduled for a second, the server's timestamps say when it acted.
    def events(self, event=None, **match):
        """The server's log lines as LogEvent(t, level, event, fields), oldest first; only
        `event` ones when given, and only those whose fields equal every `match` value."""
        out = []
        for line in self.log_lines():
            e = parse_log_line(line)
            if e is None or (event is not None and e.event != event):
                continue
            if all(e.fields.get(k) == str(v) for k, v in match.items()):
                out.append(e)
        return out

    def wait_events(self, pred, timeout=30.0, what="log events"):
        """Poll the log until pred(self) returns something true (returned); AssertionError
        after `timeout` seconds (bounded; generous for a loaded machine)."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred(self)
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
            time.sleep(0.05)

    def sessions(self):
        """{sid: {"connect": LogEvent, "disconnect": LogEvent or None, "events": [...]}}"""
        out = {}
        for e in self.events():
            sid = e.fields.get("sid")
            if sid is None:
                continue
            d = out.setdefault(sid, {"connect": None, "disconnect": None, "events": []})
            d["events"].append(e)
            if e.event in ("connect", "disconnect"):
                d[e.event] = e
        return out

    def sid_of(self, client, timeout=30.0):
        """The session id the server logged (event=connect) for a connected client (a
        RawClient, or anything with .sock), matched by the client's address and port."""
        sock = getattr(client, "sock", client)
        ip, port = sock.getsockname()[:2]
        ev = self.wait_events(lambda srv: srv.events("connect", client=ip, port=port),
                              timeout, "event=connect for client %s port %d" % (ip, port))
        return ev[-1].fields["sid"]

    def session_end(self, sid, timeout=30.0):
        """The session's event=disconnect (waits for it)."""
        return self.wait_events(lambda srv: srv.events("disconnect", sid=sid), timeout,
                                "event=disconnect sid=%s" % sid)[-1]

    def wait_sessions_ended(self, timeout=30.0):
        """Wait until every session the server logged a connect for has logged its disconnect
        (the server released its slots); returns sessions()."""
        def done(srv):
            ss = srv.sessions()
            return ss if all(d["disconnect"] is not None for d in ss.values()
                             if d["connect"] is not None) else None
        return self.wait_events(done, timeout, "every session's event=disconnect")

    def print_log_tail(self, why="", n=40):
        lines = self.log_lines()
        sys.stderr.write("---- smtpgate log (%s, last %d of %d lines: %s) ----\n"
                         % (why, min(n, len(lines)), len(lines), self.log_path))
        for ln in lines[-n:]:
            sys.stderr.write("  " + ln + "\n")
        sys.stderr.write("---- end of log ----\n")

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        self.stop()
        probs = self.problems()
        if etype is not None or probs:
            self.print_log_tail(str(exc)[:200] if exc else "; ".join(probs))
        self.cleanup()
        if probs and etype is None:
            raise AssertionError("; ".join(probs))
        return False

    # -- clients -----------------------------------------------------------
    def is_implicit_tls(self, name):
        return self.role(name) == "submissions"

    def raw(self, name, context=None, greet=True, timeout=TIMEOUT):
        """A RawClient connected to listener `name` (TLS already done for implicit TLS)."""
        return RawClient(self.ports[name], implicit_tls=self.is_implicit_tls(name),
                         context=context, greet=greet, timeout=timeout)

    def smtp(self, name, context=None, starttls=True, timeout=TIMEOUT):
        """An smtplib client after EHLO; STARTTLS done when the role offers it and starttls."""
        ctx = context or tls_context()
        if self.is_implicit_tls(name):
            s = smtplib.SMTP_SSL(HOST, self.ports[name], context=ctx, timeout=timeout,
                                 local_hostname="client.example.test")
            s.ehlo()
        else:
            s = smtplib.SMTP(HOST, self.ports[name], timeout=timeout,
                             local_hostname="client.example.test")
            s.ehlo()
            if starttls:
                s.starttls(context=ctx)
                s.ehlo()
        return s

    def cert_path(self):
        return os.path.join(self.data_dir, "tls", "cert.pem")

    def verify_context(self):
        """A context that trusts only the generated certificate."""
        return tls_context(verify_cert=self.cert_path())

    # -- the capture store ---------------------------------------------------
    def maildir(self, login):
        return os.path.join(self.data_dir, "mail", login)

    def messages(self, login):
        """Ids of the messages in <data-dir>/mail/<login>/new/, sorted."""
        d = os.path.join(self.maildir(login), "new")
        try:
            return sorted(n for n in os.listdir(d) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def message_path(self, login, msg_id):
        new = os.path.join(self.maildir(login), "new")
        p = os.path.join(new, msg_id)
        if os.path.exists(p):
            return p
        for n in self.messages(login):   # Maildir info suffixes (":2,") or id prefixes
            if n.split(":")[0] == msg_id or n.startswith(msg_id):
                return os.path.join(new, n)
        raise AssertionError("message %s not in %s (have %s)" % (msg_id, new, self.messages(login)))

    def read_message(self, login, msg_id):
        with open(self.message_path(login, msg_id), "rb") as f:
            return f.read()

    def all_messages(self):
        """{login: [ids]} for every inbox."""
        root = os.path.join(self.data_dir, "mail")
        try:
            return {l: self.messages(l) for l in sorted(os.listdir(root))}
        except FileNotFoundError:
            return {}


class _PortInUse(Exception):
    pass


def split_message(stored, client_message):
    """Check that the stored file is our header block followed by the client's message, byte-exact
    (CRLF kept, or every CRLF converted to LF consistently). Returns (added_headers, ending)."""
    if isinstance(client_message, str):
        client_message = client_message.encode()
    if stored.endswith(client_message):
        return stored[:-len(client_message)], "crlf"
    lf = client_message.replace(b"\r\n", b"\n")
    if b"\r\n" not in stored and stored.endswith(lf):
        return stored[:-len(lf)], "lf"
    raise AssertionError("stored message does not end with the client's message\nstored:\n%r\nsent:\n%r"
                         % (stored[-600:], client_message[-600:]))


def header_block(stored):
    """The header section of a stored file (str), up to the first empty line."""
    text = stored.decode("utf-8", "replace").replace("\r\n", "\n")
    return text.split("\n\n", 1)[0]


def headers(stored, name):
    """Values (unfolded) of header `name` in the stored file's header section."""
    out = []
    cur = None
    for ln in header_block(stored).split("\n"):
        if ln[:1] in (" ", "\t") and cur is not None:
            out[-1] += " " + ln.strip()
            continue
        k, sep, v = ln.partition(":")
        if sep and k.strip().lower() == name.lower():
            out.append(v.strip())
            cur = k
        else:
            cur = None
    return out


def make_message(sender, rcpt, subject, body="Hello from the smtpgate tests.\r\n", extra=""):
    """A small RFC 5322 message with CRLF line ends and a unique Message-ID."""
    tag = "%d.%d" % (time.time_ns(), os.getpid())
    return ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@tests.example.test>\r\n%s\r\n%s"
            % (sender, rcpt, subject, tag, extra, body)).encode()


class ServerTestCase(unittest.TestCase):
    """One server per test class (started in setUpClass). Subclasses set USERS, LISTENERS,
    LISTENER_OPTS, SETTINGS."""

    USERS = ()
    LISTENERS = None
    LISTENER_OPTS = None
    SETTINGS = None
    CONFIG_EXTRA = ""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(users=cls.USERS, listeners=cls.LISTENERS, listener_opts=cls.LISTENER_OPTS,
                         settings=cls.SETTINGS, config_extra=cls.CONFIG_EXTRA)

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
            self.fail("the server of this class is not running (crashed in an earlier test?)")


# -- the runner (tests/run) ------------------------------------------------------

class _Result(unittest.TextTestResult):
    def __init__(self, stream, descriptions, verbosity):
        super().__init__(stream, descriptions, verbosity)
        self.passed = 0
        self._t0 = {}

    def _name(self, test):
        return test.id() if hasattr(test, "id") else str(test)

    def _line(self, tag, test, extra=""):
        dt = time.monotonic() - self._t0.get(id(test), time.monotonic())
        sys.stdout.write("%-5s %s (%.2fs)%s\n" % (tag, self._name(test), dt, extra))
        sys.stdout.flush()

    def startTest(self, test):
        self._t0[id(test)] = time.monotonic()
        unittest.TestResult.startTest(self, test)

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self.passed += 1
        self._line("PASS", test)

    def _fail(self, tag, test, err):
        self._line(tag, test)
        sys.stdout.write(self._exc_info_to_string(err, test))
        for srv in list(ACTIVE):
            sys.stdout.flush()
            sys.stderr.flush()
            old, sys.stderr = sys.stderr, sys.stdout
            try:
                srv.print_log_tail("server at the time of the failure")
            finally:
                sys.stderr = old
        sys.stdout.flush()

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._fail("FAIL", test, err)

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._fail("ERROR", test, err)

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._line("SKIP", test, " " + reason)

    def addExpectedFailure(self, test, err):
        unittest.TestResult.addExpectedFailure(self, test, err)
        self.passed += 1
        self._line("PASS", test, " (expected failure)")

    def addUnexpectedSuccess(self, test):
        unittest.TestResult.addUnexpectedSuccess(self, test)
        self._line("FAIL", test, " (unexpected success)")

    def printErrors(self):
        pass


class LogEvent:
    """One line of the server's log: t (seconds since the epoch, millisecond resolution),
    level, event and the key=value fields (quotes removed)."""
    __slots__ = ("t", "level", "event", "fields", "line")

    def __init__(self, t, level, event, fields, line):
        self.t, self.level, self.event, self.fields, self.line = t, level, event, fields, line

    def __repr__(self):
        return "LogEvent(%r)" % self.line


_LOG_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z (\w+) event=(\S+)(.*)$")
_KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    """A LogEvent for one smtpgate log line (2026-01-02T03:04:05.678Z info event=X k=v ...),
    None for anything else (sanitizer output, peers' lines)."""
    m = _LOG_RE.match(line)
    if m is None:
        return None
    import calendar
    y, mo, d, h, mi, sec, ms = (int(x) for x in m.groups()[:7])
    t = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) + ms / 1000.0
    fields = {}
    for k, v in _KV_RE.findall(m.group(10)):
        fields[k] = v[1:-1] if len(v) >= 2 and v[0] == '"' and v[-1] == '"' else v
    return LogEvent(t, m.group(8), m.group(9), fields, line)


def _count(suite):
    n = 0
    for t in suite:
        n += _count(t) if isinstance(t, unittest.TestSuite) else 1
    return n


def run_files(paths):
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for p in paths:
        mod = os.path.splitext(os.path.basename(p))[0]
        suite.addTests(loader.loadTestsFromName(mod))
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=_Result, verbosity=0)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    # setUpClass / module errors are counted as errors above (one per class).
    sys.stdout.write("RESULT passed=%d failed=%d skipped=%d\n" % (result.passed, failed, skipped))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        # Use the module as `harness` so the tests and the runner share ACTIVE.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import harness as _h
        sys.exit(_h.run_files(sys.argv[2:]))
    sys.stderr.write(__doc__)
    sys.exit(2)
