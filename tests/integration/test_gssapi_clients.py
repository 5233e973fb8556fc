"""Real GSSAPI clients (msmtp, curl, gsasl) against our GSSAPI server mechanism.

Until the SMTP server can run GSSAPI end to end, a tiny SMTP front end here
(plain TCP, no TLS) hands the AUTH exchange to tests/integration/sasl_pipe.c,
which runs src/sasl/mech_gssapi.c's server side. The same client commands
apply unchanged to the real server (see docs in the report / krb5_realm.py).

    python3 tests/integration/test_gssapi_clients.py
        (SASL_PIPE=path/to/sasl_pipe, else next to $SMTPGATE_BIN's build dir, else build*/)
"""

import glob
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import krb5_realm  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def sasl_pipe():
    p = os.environ.get("SASL_PIPE")
    if p:
        return p
    b = os.environ.get("SMTPGATE_BIN")      # BUILD/src/smtpgate -> BUILD/tests/sasl_pipe
    if b:
        p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(b))), "tests",
                         "sasl_pipe")
        if os.access(p, os.X_OK):
            return p
    cands = glob.glob(os.path.join(ROOT, "build*", "tests", "sasl_pipe"))
    cands.sort(key=os.path.getmtime, reverse=True)
    return cands[0] if cands else None


class FakeSMTP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, pipe_env, mechs="GSSAPI"):
        self.pipe_env = pipe_env
        self.mechs = mechs
        self.results = []  # (mech, status line from sasl_pipe)
        self.transcripts = []
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(socketserver.StreamRequestHandler):
    def send(self, line):
        self.tx.append("S: " + line)
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def recv(self):
        line = self.rfile.readline(20000)
        if not line:
            return None
        s = line.decode("latin-1").rstrip("\r\n")
        self.tx.append("C: " + s)
        return s

    def handle(self):
        self.tx = []
        self.server.transcripts.append(self.tx)
        self.send("220 localhost ESMTP fake")
        authed = False
        while True:
            line = self.recv()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.send("250-localhost")
                self.send("250-AUTH " + self.server.mechs)
                self.send("250 8BITMIME")
            elif verb == "AUTH" and not authed:
                authed = self.auth(line)
            elif verb == "DATA":
                self.send("354 go ahead")
                while True:
                    d = self.recv()
                    if d is None or d == ".":
                        break
                self.send("250 2.0.0 Ok: queued as fake")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            elif verb == "HELP":
                self.send("214 2.0.0 fake")
            else:
                self.send("250 2.0.0 Ok")

    def auth(self, line):
        parts = line.split(" ")
        mech = parts[1].upper() if len(parts) > 1 else ""
        env = dict(os.environ)
        env.update(self.server.pipe_env)
        p = subprocess.Popen([sasl_pipe(), mech], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        try:
            p.stdin.write(("IR " + parts[2] if len(parts) > 2 else "NOIR") + "\n")
            p.stdin.flush()
            while True:
                out = p.stdout.readline().rstrip("\n")
                if out.startswith("C "):
                    self.send("334 " + out[2:])
                    resp = self.recv()
                    if resp is None:
                        return False
                    p.stdin.write(resp + "\n")
                    p.stdin.flush()
                    continue
                self.server.results.append((mech, out))
                if out.startswith("OK "):
                    self.send("235 2.7.0 Authentication successful")
                    return True
                if out.startswith("TEMPFAIL"):
                    self.send("454 4.7.0 Temporary authentication failure")
                elif out.startswith("MALFORMED"):
                    self.send("501 5.5.2 Invalid")
                elif out == "FAIL cancelled":
                    self.send("501 5.7.0 Authentication aborted")
                else:
                    self.send("535 5.7.8 Authentication credentials invalid")
                return False
        finally:
            p.stdin.close()
            p.wait(10)


MSG = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: gss\r\n\r\nhi\r\n"


@unittest.skipUnless(krb5_realm.available(), "MIT KDC not installed")
class GssapiClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if sasl_pipe() is None:
            raise unittest.SkipTest("sasl_pipe not built")
        cls.realm = krb5_realm.standard_realm()
        for u in krb5_realm.USERS:
            cls.realm.kinit(u, u.split("/")[0] + "pw", ccache=krb5_realm.ccache_for(cls.realm, u))
        cls.tmp = tempfile.mkdtemp(prefix="sg-gssclients-")

    @classmethod
    def tearDownClass(cls):
        cls.realm.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def server(self, **extra):
        env = {"SG_PIPE_KEYTAB": self.realm.keytab, "SG_PIPE_HOSTNAME": "localhost",
               "SG_PIPE_ACCOUNTS": "alice,bob:disabled,alice@example.org",
               "KRB5_CONFIG": self.realm.krb5_conf}
        env.update(extra)
        s = FakeSMTP(env)
        self.addCleanup(s.stop)
        return s

    def cenv(self, user="alice"):
        return self.realm.env(ccache=krb5_realm.ccache_for(self.realm, user))

    def dump(self, srv, r):
        return "\n".join(["rc=%d" % r.returncode, r.stdout[-3000:], r.stderr[-3000:]]
                         + ["\n".join(t) for t in srv.transcripts] + [repr(srv.results)])

    # -- msmtp (GNU SASL's GSSAPI client) ------------------------------------
    def msmtp(self, srv, user="alice", extra=""):
        if not shutil.which("msmtp"):
            self.skipTest("msmtp not installed")
        conf = os.path.join(self.tmp, "msmtprc-%d" % srv.port)
        with open(conf, "w") as f:
            f.write(f"""account default
host localhost
port {srv.port}
auth gssapi
user {user}
tls off
from alice@example.org
{extra}
""")
        os.chmod(conf, 0o600)
        return subprocess.run(["msmtp", "-C", conf, "--debug", "bob@example.org"], input=MSG,
                              env=self.cenv(user), capture_output=True, text=True, timeout=30)

    def test_msmtp_ok(self):
        srv = self.server()
        r = self.msmtp(srv)
        self.assertEqual(r.returncode, 0, self.dump(srv, r))
        self.assertEqual(srv.results, [("GSSAPI", "OK alice")], self.dump(srv, r))

    def test_msmtp_unknown_principal(self):
        srv = self.server()
        r = self.msmtp(srv, user="carol")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(srv.results, [("GSSAPI", "FAIL unknown_principal")], self.dump(srv, r))

    def test_msmtp_disabled(self):
        srv = self.server()
        r = self.msmtp(srv, user="bob")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(srv.results, [("GSSAPI", "FAIL disabled")], self.dump(srv, r))

    def test_msmtp_map_domain(self):
        srv = self.server(SG_PIPE_MAP_DOMAIN="example.org")
        r = self.msmtp(srv)
        self.assertEqual(r.returncode, 0, self.dump(srv, r))
        self.assertEqual(srv.results, [("GSSAPI", "OK alice@example.org")], self.dump(srv, r))

    # -- curl (its own GSSAPI code, lib/vauth/krb5_gssapi.c) ------------------
    def curl(self, srv, user="alice", extra=()):
        if not shutil.which("curl"):
            self.skipTest("curl not installed")
        msg = os.path.join(self.tmp, "msg")
        with open(msg, "w") as f:
            f.write(MSG)
        argv = ["curl", "-sS", "-v", "smtp://localhost:%d" % srv.port, "--login-options",
                "AUTH=GSSAPI", "--user", ":", "--mail-from", "alice@example.org",
                "--mail-rcpt", "bob@example.org", "-T", msg] + list(extra)
        return subprocess.run(argv, env=self.cenv(user), capture_output=True, text=True,
                              timeout=30)

    def test_curl_ok(self):
        srv = self.server()
        r = self.curl(srv)
        self.assertEqual(r.returncode, 0, self.dump(srv, r))
        self.assertEqual(srv.results, [("GSSAPI", "OK alice")], self.dump(srv, r))

    def test_curl_wrong_realm(self):
        srv = self.server(SG_PIPE_REALM="OTHER.TEST")
        r = self.curl(srv)
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(srv.results, [("GSSAPI", "FAIL wrong_realm")], self.dump(srv, r))

    # -- gsasl --smtp ---------------------------------------------------------
    def gsasl(self, srv, user="alice", authzid=None):
        if not shutil.which("gsasl"):
            self.skipTest("gsasl not installed")
        argv = ["gsasl", "--smtp", "--connect", "localhost:%d" % srv.port, "-m", "GSSAPI",
                "--no-starttls", "--service", "smtp", "--hostname", "localhost",
                "--quality-of-protection", "qop-auth"]
        if authzid is not None:
            argv += ["-z", authzid]
        return subprocess.run(argv, env=self.cenv(user), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)

    def test_gsasl_ok(self):
        srv = self.server()
        r = self.gsasl(srv)
        self.assertEqual(srv.results, [("GSSAPI", "OK alice")], self.dump(srv, r))

    def test_gsasl_authzid(self):
        srv = self.server()
        r = self.gsasl(srv, authzid="alice")
        self.assertEqual(srv.results, [("GSSAPI", "OK alice")], self.dump(srv, r))
        srv2 = self.server()
        r = self.gsasl(srv2, authzid="bob")
        self.assertEqual(srv2.results, [("GSSAPI", "FAIL bad_authzid")], self.dump(srv2, r))

    # -- our client side against GNU SASL's server -----------------------------
    def our_client_vs_gsasl_server(self, authzid=None):
        if not shutil.which("gsasl"):
            self.skipTest("gsasl not installed")
        env = self.cenv("alice")
        env["KRB5_KTNAME"] = "FILE:" + self.realm.keytab
        env["SG_PIPE_HOST"] = "localhost"
        if authzid is not None:
            env["SG_PIPE_AUTHZID"] = authzid
        srv = subprocess.Popen(["gsasl", "--server", "-m", "GSSAPI", "--service", "smtp",
                                "--hostname", "localhost", "--verbose"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                               bufsize=1)
        cli = subprocess.Popen([sasl_pipe(), "--client", "GSSAPI"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env, text=True, bufsize=1)
        log = []
        try:
            self.assertEqual(srv.stdout.readline().strip(), "GSSAPI")
            self.assertEqual(srv.stdout.readline().strip(), "")  # empty first challenge
            while True:
                line = cli.stdout.readline().rstrip("\n")
                log.append("client: " + line)
                tag, _, data = line.partition(" ")
                self.assertIn(tag, ("R", "DONE"), log)
                srv.stdin.write(data + "\n")
                srv.stdin.flush()
                if tag == "DONE":
                    # "Validate GSS-API user? (y/n)", then the gsasl CLI asks for one
                    # more (empty) client line, with its own client too.
                    srv.stdin.write("y\n\n")
                    break
                ch = srv.stdout.readline().rstrip("\n")
                log.append("server: " + ch)
                cli.stdin.write(ch + "\n")
                cli.stdin.flush()
            srv.stdin.close()
            rest = srv.stdout.read()
            err = srv.stderr.read()
            rc = srv.wait(10)
            return rc, "\n".join(log) + "\n" + rest + err
        finally:
            for p in (srv, cli):
                if p.poll() is None:
                    p.kill()
                    p.wait()
                for f in (p.stdin, p.stdout, p.stderr):
                    if f is not None and not f.closed:
                        f.close()

    def test_our_client_vs_gsasl_server(self):
        rc, out = self.our_client_vs_gsasl_server()
        self.assertEqual(rc, 0, out)
        self.assertIn("Authzid: (null)", out)
        rc, out = self.our_client_vs_gsasl_server(authzid="alice")
        self.assertEqual(rc, 0, out)
        self.assertIn("Authzid: alice", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
