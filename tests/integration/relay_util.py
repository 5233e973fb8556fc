"""relay_util.py: what the relay tests share (Python 3 stdlib + the openssl CLI).

FakeSmarthost: a scripted SMTP server on a free loopback port, on its own thread. Every
connection is recorded (commands with their time, the transactions it accepted); its behaviour
is set by attributes the test changes at any time:

    sh = FakeSmarthost(tls=pki, auth=("relayuser", "relaypw"))
    sh.rcpt_reply = lambda addr, n: "550 5.1.1 no such user" if addr.startswith("bad") else None
    sh.final_reply = lambda n: "451 4.3.0 try later" if n == 1 else None   # n: DATA count
    sh.mode = "disconnect_mid_data" | "stall_after_data" | "tls_fail" | None

make_pki(dir, names): a private CA and a server certificate for names (DNS or IP SANs).
"""

import os
import socket
import ssl
import subprocess
import threading
import time

from harness import HOST, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


class Pki:
    def __init__(self, d, names):
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
                "/CN=smtpgate relay test CA", cwd=d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=%s" % names[0], cwd=d)
        san = ",".join(("IP:%s" if n[0].isdigit() else "DNS:%s") % n for n in names)
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n" % san)
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
        for p in (self.ca, self.cert, self.key):
            os.chmod(p, 0o644)


def make_pki(d, names=("relay.test", "127.0.0.1")):
    os.makedirs(d, exist_ok=True)
    return Pki(d, list(names))


class Transaction:
    def __init__(self):
        self.mail_from = None
        self.mail_params = ""
        self.rcpts = []          # accepted
        self.rcpt_params = []
        self.data = None         # bytes as received, dot-unstuffed, without the final "."
        self.final = None


class Conn:
    def __init__(self, n):
        self.n = n
        self.commands = []       # (monotonic time, line)
        self.tls = False
        self.authed = False
        self.transactions = []


class FakeSmarthost:
    def __init__(self, tls=None, auth=None, pipelining=True, caps=("8BITMIME", "SIZE 100000000"),
                 require_tls=False):
        self.pki = tls
        self.auth = auth
        self.pipelining = pipelining
        self.caps = list(caps)
        self.require_tls = require_tls
        self.mode = None
        self.rcpt_reply = lambda addr, n: None
        self.final_reply = lambda n: None
        self.mail_reply = lambda n: None
        self.conns = []
        self.delivered = []      # Transactions that got 250 after DATA
        self.data_count = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.threads = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def addr(self):
        return "%s:%d" % (HOST, self.port)

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                c = Conn(len(self.conns) + 1)
                self.conns.append(c)
            th = threading.Thread(target=self._serve, args=(s, c), daemon=True)
            th.start()

    def _serve(self, s, c):
        s.settimeout(30)
        f = [s, s.makefile("rb")]

        def send(line):
            f[0].sendall((line + "\r\n").encode())
            if line.startswith("421"):
                raise EOFError      # RFC 5321 3.8: 421 closes the connection

        def readline():
            ln = f[1].readline(70000)
            if not ln:
                raise EOFError
            return ln

        try:
            send("220 relay.test ESMTP fake")
            txn = None
            while True:
                raw = readline()
                line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                c.commands.append((time.monotonic(), line))
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    caps = ["250-relay.test"]
                    if self.pipelining:
                        caps.append("250-PIPELINING")
                    caps += ["250-" + x for x in self.caps]
                    if self.pki is not None and not c.tls:
                        caps.append("250-STARTTLS")
                    if self.auth is not None and (c.tls or self.pki is None):
                        caps.append("250-AUTH PLAIN LOGIN")
                    caps.append("250 HELP")
                    caps[-1] = "250 " + caps[-1][4:]
                    for x in caps[:-1]:
                        send(x)
                    send(caps[-1])
                elif verb == "STARTTLS":
                    send("220 2.0.0 go ahead")
                    if self.mode == "tls_fail":
                        f[0].sendall(b"this is not a TLS record\r\n" * 4)
                        return
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    ctx.load_cert_chain(self.pki.cert, self.pki.key)
                    ts = ctx.wrap_socket(s, server_side=True)
                    f = [ts, ts.makefile("rb")]
                    c.tls = True
                elif verb == "AUTH":
                    import base64
                    parts = line.split(" ")
                    if len(parts) >= 3 and parts[1].upper() == "PLAIN":
                        dec = base64.b64decode(parts[2])
                        _, u, p = dec.split(b"\0")
                        if self.auth and (u.decode(), p.decode()) == tuple(self.auth):
                            c.authed = True
                            send("235 2.7.0 ok")
                        else:
                            send("535 5.7.8 Authentication credentials invalid")
                    else:
                        send("504 5.5.4 unsupported")
                elif verb == "MAIL":
                    if self.require_tls and not c.tls:
                        send("530 5.7.0 Must issue a STARTTLS command first")
                        continue
                    if self.auth is not None and not c.authed:
                        send("530 5.7.0 Authentication required")
                        continue
                    txn = Transaction()
                    rest = line[10:]
                    end = rest.find(">")
                    txn.mail_from = rest[1:end] if rest.startswith("<") else rest
                    txn.mail_params = rest[end + 1:].strip()
                    r = self.mail_reply(len(c.transactions) + 1)
                    if r:
                        txn = None
                        send(r)
                    else:
                        send("250 2.1.0 ok")
                elif verb == "RCPT":
                    if txn is None:
                        send("503 5.5.1 need MAIL")
                        continue
                    rest = line[8:]
                    end = rest.find(">")
                    addr = rest[1:end]
                    r = self.rcpt_reply(addr, len(c.transactions) + 1)
                    if r:
                        send(r)
                    else:
                        txn.rcpts.append(addr)
                        txn.rcpt_params.append(rest[end + 1:].strip())
                        send("250 2.1.5 ok")
                elif verb == "DATA":
                    if txn is None or not txn.rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    send("354 go")
                    with self.lock:
                        self.data_count += 1
                        n = self.data_count
                    buf = []
                    got = 0
                    while True:
                        ln = readline()
                        if ln == b".\r\n":
                            break
                        if ln.startswith(b"."):
                            ln = ln[1:]
                        buf.append(ln)
                        got += len(ln)
                        if self.mode == "disconnect_mid_data" and got > 200:
                            return
                    txn.data = b"".join(buf)
                    c.commands.append((time.monotonic(), "<end of data>"))
                    if self.mode == "stall_after_data":
                        time.sleep(30)
                        return
                    r = self.final_reply(n)
                    if r:
                        send(r)
                        txn.final = r
                    else:
                        send("250 2.0.0 ok queued")
                        txn.final = "250"
                        with self.lock:
                            self.delivered.append(txn)
                    c.transactions.append(txn)
                    txn = None
                elif verb == "RSET":
                    txn = None
                    send("250 2.0.0 ok")
                elif verb == "NOOP":
                    send("250 2.0.0 ok")
                elif verb == "QUIT":
                    send("221 2.0.0 bye")
                    return
                else:
                    send("502 5.5.2 unknown")
        except (EOFError, OSError, ssl.SSLError, ValueError):
            return
        finally:
            try:
                s.close()
            except OSError:
                pass


def wait_for(pred, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def log_lines(text, event, *needles):
    """Log lines of one event (key=value lines: "<time> LEVEL event=NAME ...") holding every needle."""
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[2] == "event=" + event and all(n in line for n in needles):
            out.append(line)
    return out


def line_time(line):
    """The server's own timestamp of a log line, in seconds."""
    import datetime
    stamp = line.split(" ", 1)[0].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(
        tzinfo=datetime.timezone.utc).timestamp()
