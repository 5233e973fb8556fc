"""scale_util.py: the real parts the scale-out tests put around smtpgate (stdlib only).

    HAProxy(backends)   a private HAProxy in TCP mode on free loopback ports, started in the
                        foreground (-db) by the test and stopped by it
    http_json(port, path)  GET a JSON document from a node's HTTP API (http_open = yes)
    start_node(...)     a harness.Server with the HTTP API on a free port

A HAProxy backend is a dict: name, servers [(host, port)], send_proxy ("v1" | "v2" | None),
check (None | "smtp" | "readyz:PORT,PORT..." for an HTTP check on each server's own port).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import HOST, Server


def require(tool, package):
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            raise AssertionError("%s not installed (Debian package %s, scripts/deps)" % (tool, package))
        raise unittest.SkipTest("%s not installed (Debian package %s)" % (tool, package))


class HAProxy:
    def __init__(self, backends, timeout_s=30):
        require("haproxy", "haproxy")
        self.tmp = tempfile.mkdtemp(prefix="sg-haproxy-")
        self.cfg = os.path.join(self.tmp, "haproxy.cfg")
        self.log_path = os.path.join(self.tmp, "haproxy.log")
        self.backends = backends
        self.ports = {}
        self.proc = None
        last = None
        for _attempt in range(3):
            self.ports = {b["name"]: harness.free_port() for b in backends}
            self._write(timeout_s)
            try:
                self._start()
                return
            except RuntimeError as e:
                last = e
        raise AssertionError("haproxy did not start: %s" % last)

    def _write(self, timeout_s):
        out = ["global", "    maxconn 2000", "",
               "defaults", "    mode tcp",
               "    timeout connect 2s", "    timeout client %ds" % timeout_s,
               "    timeout server %ds" % timeout_s, "    timeout check 1s", ""]
        for b in self.backends:
            name = b["name"]
            out += ["frontend fe_%s" % name, "    bind %s:%d" % (HOST, self.ports[name]),
                    "    default_backend be_%s" % name, "",
                    "backend be_%s" % name, "    balance roundrobin"]
            check = b.get("check")
            if check == "smtp":
                out += ["    option tcp-check", "    tcp-check expect rstring ^220",
                        "    tcp-check send QUIT\\r\\n"]
            elif check and check.startswith("readyz"):
                out += ["    option httpchk GET /readyz", "    http-check expect status 200"]
            checkports = check.split(":", 1)[1].split(",") if check and ":" in check else []
            for i, (host, port) in enumerate(b["servers"]):
                opts = {"v1": " send-proxy", "v2": " send-proxy-v2"}.get(b.get("send_proxy"), "")
                if check == "smtp":
                    opts += " check check-send-proxy inter 300 fall 1 rise 1"
                elif checkports:
                    opts += " check port %s inter 300 fall 1 rise 1" % checkports[i]
                out.append("    server s%d %s:%d%s" % (i, host, port, opts))
            out.append("")
        with open(self.cfg, "w") as f:
            f.write("\n".join(out))

    def _start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        waiting = dict(self.ports)
        while waiting:
            if self.proc.poll() is not None:
                text = self.log()
                self.proc = None
                raise RuntimeError(text[-500:])
            for name, port in list(waiting.items()):
                try:
                    with socket.create_connection((HOST, port), timeout=0.5):
                        del waiting[name]
                except OSError:
                    pass
            if waiting:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("frontends %s not accepting" % sorted(waiting))
                time.sleep(0.05)

    def port(self, name):
        return self.ports[name]

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False


def http_get(port, path, timeout=10):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def http_json(port, path):
    status, body = http_get(port, path)
    if status != 200:
        raise AssertionError("GET %s: HTTP %d %r" % (path, status, body[:200]))
    return json.loads(body)


def start_node(users=(), settings=None, **kw):
    """A harness.Server with the HTTP API open on a free loopback port (srv.http_port)."""
    last = None
    for _attempt in range(4):
        port = harness.free_port()
        st = dict(settings or {})
        st.update({"http_listen": "%s:%d" % (HOST, port), "http_open": "yes"})
        srv = Server(users=users, settings=st, start=False, **kw)
        try:
            srv.start()
            deadline = time.monotonic() + 10
            while "port=%d " % port not in srv.log() and "%s:%d" % (HOST, port) not in srv.log():
                if srv.proc is None or srv.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("HTTP server on port %d did not start" % port)
                time.sleep(0.05)
            srv.http_port = port
            return srv
        except AssertionError as e:
            last = e
            srv.cleanup()
    raise AssertionError("could not start a node: %s" % last)


def wait_for(pred, timeout=10, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(step)
