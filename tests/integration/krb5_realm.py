"""krb5_realm.py: a throw-away MIT Kerberos realm for tests (Python 3 stdlib only).

    realm = TestRealm()                  # temp dir, krb5.conf, kdc.conf, database, KDC running
    realm.add_principal("alice", "alicepw")
    keytab = realm.add_service("smtp/localhost")   # -randkey + ktadd, returns the keytab path
    realm.kinit("alice", "alicepw")      # into realm.ccache (or a given ccache file)
    env = realm.env()                    # KRB5_CONFIG, KRB5CCNAME, KRB5_KDC_PROFILE for clients
    realm.stop()                         # kills the KDC, removes the temp dir

Also a context manager (`with TestRealm() as realm:`).

Run standalone:
    python3 krb5_realm.py                 self-test: realm, alice, kinit, klist, stop
    python3 krb5_realm.py --run CMD ARGS  start standard_realm() (USERS, keytab with
                                          smtp/localhost + imap/localhost), export
                                          SG_TEST_KRB5_KEYTAB, SG_TEST_KRB5_REALM,
                                          SG_TEST_KRB5_DIR and the client env, kinit alice
                                          into the default ccache and every user into
                                          $SG_TEST_KRB5_DIR/cc.<user, / as _>, run CMD,
                                          exit with its status (77 = skipped: no KDC)
The KDC binds 127.0.0.1 on a free port; DNS lookups and reverse DNS are off, so service
principals are exactly service/<host as given> (the clients use smtp/localhost).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REALM = "SMTPGATE.TEST"
SBIN = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]


def _which(name):
    for d in SBIN + os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if d and os.access(p, os.X_OK):
            return p
    raise FileNotFoundError(name + " not found (install krb5-kdc, krb5-admin-server, krb5-user)")


def _free_port():
    # TCP and UDP on the same port: the KDC listens on both.
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port for the KDC")


def available():
    """True when the MIT KDC tools are installed."""
    try:
        for n in ("krb5kdc", "kdb5_util", "kadmin.local", "kinit"):
            _which(n)
        return True
    except FileNotFoundError:
        return False


class TestRealm:
    def __init__(self, realm=REALM, tmpdir=None, start=True):
        self.realm = realm
        self._own_dir = tmpdir is None
        self.dir = tmpdir or tempfile.mkdtemp(prefix="sg-krb5-")
        self.port = _free_port()
        self.krb5_conf = os.path.join(self.dir, "krb5.conf")
        self.kdc_conf = os.path.join(self.dir, "kdc.conf")
        self.ccache = os.path.join(self.dir, "ccache")
        self.keytab = os.path.join(self.dir, "server.keytab")
        self.kdc_log = os.path.join(self.dir, "kdc.log")
        self.proc = None
        self._write_conf()
        if start:
            self.create_db()
            self.start()

    # -- configuration -------------------------------------------------
    def _write_conf(self):
        d = self.dir
        with open(self.krb5_conf, "w") as f:
            f.write(f"""[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    ignore_acceptor_hostname = false
    udp_preference_limit = 1
    default_ccache_name = FILE:{self.ccache}

[realms]
    {self.realm} = {{
        kdc = 127.0.0.1:{self.port}
    }}

[domain_realm]
    localhost = {self.realm}
    .localhost = {self.realm}
    127.0.0.1 = {self.realm}

[logging]
    kdc = FILE:{self.kdc_log}
    default = FILE:{os.path.join(d, "krb5lib.log")}
""")
        with open(self.kdc_conf, "w") as f:
            f.write(f"""[kdcdefaults]
    kdc_listen = 127.0.0.1:{self.port}
    kdc_tcp_listen = 127.0.0.1:{self.port}

[realms]
    {self.realm} = {{
        database_name = {os.path.join(d, "principal")}
        key_stash_file = {os.path.join(d, "stash")}
        acl_file = {os.path.join(d, "kadm5.acl")}
        kdc_listen = 127.0.0.1:{self.port}
        kdc_tcp_listen = 127.0.0.1:{self.port}
        max_life = 1h
        max_renewable_life = 1h
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{self.kdc_log}
""")
        with open(os.path.join(d, "kadm5.acl"), "w") as f:
            f.write("")

    def env(self, ccache=None):
        """The variables a Kerberos client (or the server) needs, merged into os.environ."""
        e = dict(os.environ)
        e.update(self.env_vars(ccache))
        return e

    def env_vars(self, ccache=None):
        return {
            "KRB5_CONFIG": self.krb5_conf,
            "KRB5_KDC_PROFILE": self.kdc_conf,
            "KRB5CCNAME": "FILE:" + (ccache or self.ccache),
        }

    # -- tools ---------------------------------------------------------
    def _run(self, argv, input_data=None, ccache=None, check=True):
        r = subprocess.run(argv, input=input_data, env=self.env(ccache), capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def kadmin(self, query):
        return self._run([_which("kadmin.local"), "-r", self.realm, "-q", query])

    def create_db(self):
        self._run([_which("kdb5_util"), "create", "-s", "-P", "masterpw", "-r", self.realm])

    def start(self, timeout=10.0):
        log = open(os.path.join(self.dir, "krb5kdc.out"), "w")
        self.proc = subprocess.Popen([_which("krb5kdc"), "-n", "-r", self.realm],
                                     env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("krb5kdc exited: " + self._read(os.path.join(self.dir, "krb5kdc.out"))
                                   + self._read(self.kdc_log))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("krb5kdc did not answer on port %d" % self.port)

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    def add_principal(self, name, password):
        self.kadmin(f"addprinc -pw {password} {name}")

    def add_service(self, name="smtp/localhost", keytab=None):
        """Create name with a random key and export it to keytab (default self.keytab)."""
        keytab = keytab or self.keytab
        self.kadmin(f"addprinc -randkey {name}")
        self.kadmin(f"ktadd -k {keytab} {name}")
        os.chmod(keytab, 0o600)
        return keytab

    def disable_principal(self, name):
        self.kadmin(f"modprinc -allow_tix {name}")

    def kinit(self, principal, password, ccache=None):
        self._run([_which("kinit"), principal], input_data=password + "\n", ccache=ccache)
        return "FILE:" + (ccache or self.ccache)

    def klist(self, ccache=None):
        return self._run([_which("klist"), "-e"], ccache=ccache).stdout

    def kdestroy(self, ccache=None):
        self._run([_which("kdestroy")], ccache=ccache, check=False)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._own_dir and os.environ.get("SG_KEEP_KRB5") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


USERS = ["alice", "bob", "carol", "alice/admin"]


def standard_realm():
    """Users USERS with password <first component>pw ("alicepw", "bobpw", ...);
    smtp/localhost and imap/localhost (a service we must refuse) in r.keytab."""
    r = TestRealm()
    try:
        for u in USERS:
            r.add_principal(u, u.split("/")[0] + "pw")
        r.add_service("smtp/localhost")
        r.add_service("imap/localhost")
    except Exception:
        r.stop()
        raise
    return r


def ccache_for(realm, user):
    """Per-user ccache file in the realm dir: cc.alice, cc.alice_admin."""
    return os.path.join(realm.dir, "cc." + user.replace("/", "_"))


def _selftest():
    with TestRealm() as r:
        r.add_principal("alice", "alicepw")
        kt = r.add_service("smtp/localhost")
        r.kinit("alice", "alicepw")
        out = r.klist()
        print(out)
        assert "alice@" + REALM in out, out
        kl = subprocess.run([_which("klist"), "-k", kt], env=r.env(), capture_output=True,
                            text=True, check=True).stdout
        print(kl)
        assert "smtp/localhost@" + REALM in kl, kl
        try:
            r.kinit("alice", "wrong", ccache=os.path.join(r.dir, "cc2"))
            raise AssertionError("kinit with a wrong password succeeded")
        except RuntimeError:
            pass
        pid = r.proc.pid
    try:
        os.kill(pid, 0)
        raise AssertionError("KDC still running")
    except ProcessLookupError:
        pass
    print("krb5_realm self-test: ok")


def _run_cmd(argv):
    r = standard_realm()
    try:
        r.kinit("alice", "alicepw")
        for u in USERS:
            r.kinit(u, u.split("/")[0] + "pw", ccache=ccache_for(r, u))
        env = r.env()
        env["SG_TEST_KRB5_KEYTAB"] = r.keytab
        env["SG_TEST_KRB5_REALM"] = r.realm
        env["SG_TEST_KRB5_DIR"] = r.dir
        return subprocess.run(argv, env=env).returncode
    finally:
        r.stop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--run":
        if not available():
            print("krb5_realm: MIT KDC not installed, skipping", file=sys.stderr)
            sys.exit(77)
        sys.exit(_run_cmd(sys.argv[2:]))
    _selftest()
