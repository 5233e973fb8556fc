"""sec_util.py: helpers shared by test_security.py, test_limits.py and test_durability.py
(Python 3 stdlib only).

    c = connect(srv, "submission", src="127.0.0.2")   # a RawClient bound to a loopback source
    c.ehlo(); assert_reply(c.auth_plain(login, pw), R_AUTH_OK)
    timed(lambda: c.auth_plain(...))                   # (reply, seconds)
    raise_nofile(3000)                                 # RLIMIT_NOFILE of the test process
    sigkill_and_restart(srv)                           # SIGKILL, then the same data dir again
"""

import os
import resource
import signal
import socket
import statistics
import subprocess
import time

import harness
from harness import HOST, HOSTNAME, TIMEOUT, RawClient, tls_context

# A listener where PLAIN/LOGIN work without TLS: keeps the abuse tests fast and lets them
# read every reply in clear. The TLS listeners are tested elsewhere (and in STARTTLS tests here).
PLAIN_SUBMISSION = {"role": "submission", "plaintext_without_tls": "yes"}


class SrcClient(RawClient):
    """RawClient whose socket is bound to a chosen loopback source address."""

    def __init__(self, port, src="127.0.0.1", implicit_tls=False, context=None, timeout=TIMEOUT,
                 greet=True):
        self.port = port
        self.timeout = timeout
        self.context = context or tls_context()
        self.sock = socket.create_connection((HOST, port), timeout=timeout,
                                             source_address=(src, 0))
        self.buf = b""
        self.transcript = []
        self.esmtp = {}
        if implicit_tls:
            self.sock = self.context.wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.greeting = self.read_reply() if greet else None


def connect(srv, name, src="127.0.0.1", greet=True, timeout=TIMEOUT):
    return SrcClient(srv.ports[name], src=src, implicit_tls=srv.is_implicit_tls(name),
                     greet=greet, timeout=timeout)


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def median(xs):
    return statistics.median(xs)


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        want = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sigkill_and_restart(srv, before_restart=None):
    """SIGKILL the server (no clean-up at all), then start it again on the same data dir and
    ports. The harness's restart() refuses a server that died, so this does the same steps
    without that check."""
    proc = srv.proc
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    srv.proc = None
    if srv in harness.ACTIVE:
        harness.ACTIVE.remove(srv)
    if before_restart is not None:
        before_restart()
    srv._spawn()


def proc_status(pid):
    """/proc/PID/status as {key: value}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            out[k.strip()] = v.strip()
    return out


def log_since(srv, mark):
    """The server log text written after `mark` (a length returned by log_mark)."""
    return srv.log()[mark:]


def log_mark(srv):
    return len(srv.log())


def wait_for(pred, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_client_pki(d, cn, san=None):
    """A throw-away CA (d/ca.pem) and one client certificate d/client.pem / d/client.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=smtpgate sec test CA", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=" + cn, cwd=d)
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
        if san:
            f.write("subjectAltName=" + san + "\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile", "client.ext",
            cwd=d)
    os.chmod(d, 0o755)
    for f in ("ca.pem", "client.pem", "client.key"):
        os.chmod(os.path.join(d, f), 0o644)
    return os.path.join(d, "ca.pem"), os.path.join(d, "client.pem"), os.path.join(d, "client.key")
