"""A TLS-terminating SMTP proxy for channel-binding tests: it relays the plaintext part of the
session line by line, and on STARTTLS does the TLS handshake with the client itself (with the
server's own certificate and key, so the client's certificate check still passes) and a second,
separate handshake with the server. The two TLS channels differ, so a SCRAM-*-PLUS client's
channel binding cannot match the server's: exactly what -PLUS exists to detect.

Loopback only, one thread per accepted connection, every socket with a timeout; stop() ends it.
"""

import select
import socket
import ssl
import threading

TIMEOUT = 30


def _read_reply(f):
    """One SMTP reply (all its lines) as bytes, or b"" at EOF."""
    out = b""
    while True:
        line = f.readline(4096)
        if not line:
            return out
        out += line
        if len(line) < 4 or line[3:4] != b"-":
            return out


class StartTlsProxy:
    def __init__(self, server_port, certfile, keyfile, host="127.0.0.1", upstream_tls12=False):
        self.server = (host, server_port)
        self.sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.sctx.load_cert_chain(certfile, keyfile)
        self.cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.cctx.check_hostname = False
        self.cctx.verify_mode = ssl.CERT_NONE
        if upstream_tls12:           # the same channel-binding type as a TLS 1.2 client's
            self.cctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((host, 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.5)
        self.port = self.lsock.getsockname()[1]
        self.stopping = False
        self.starttls_seen = 0
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def addr(self):
        return "%s:%d" % (self.server[0], self.port)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.lsock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _session(self, c):
        s = None
        try:
            c.settimeout(TIMEOUT)
            s = socket.create_connection(self.server, timeout=TIMEOUT)
            cf, sf = c.makefile("rb"), s.makefile("rb")
            c.sendall(_read_reply(sf))                          # greeting
            while True:
                line = cf.readline(4096)
                if not line:
                    return
                s.sendall(line)
                reply = _read_reply(sf)
                c.sendall(reply)
                if line.strip().upper() == b"STARTTLS" and reply.startswith(b"220"):
                    break
            self.starttls_seen += 1
            # nothing may be buffered in the makefile readers: the client waits for the
            # handshake and the server sent nothing after 220
            s = self.cctx.wrap_socket(s, server_hostname=None)
            c = self.sctx.wrap_socket(c, server_side=True)
            self._relay(c, s)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            for x in (c, s):
                if x is not None:
                    try:
                        x.close()
                    except OSError:
                        pass

    def _relay(self, c, s):
        # Non-blocking: a readable TLS socket may hold no application data (TLS 1.3 session
        # tickets), and a blocking recv() would then stall the other direction.
        c.setblocking(False)
        s.setblocking(False)
        peer = {c: s, s: c}
        while not self.stopping:
            r, _, _ = select.select([c, s], [], [], TIMEOUT)
            if not r:
                return
            for a in r:
                while True:
                    try:
                        data = a.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        break
                    if not data:
                        return
                    self._send(peer[a], data)

    @staticmethod
    def _send(sock, data):
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view):]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([sock], [sock], [], TIMEOUT)
