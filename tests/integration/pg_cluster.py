"""pg_cluster.py: a private PostgreSQL cluster for the scale-out tests (stdlib only).

    with PgCluster() as pg:          # initdb + pg_ctl start in a temp dir, 127.0.0.1:<free port>
        pg.conninfo                  # "host=127.0.0.1 port=N dbname=smtpgate user=smtpgate password=..."
        pg.psql("SELECT 1")          # run SQL as the superuser, returns stdout
        pg.stop(); pg.start()        # an outage and the return

The binaries come from Debian's postgresql package (/usr/lib/postgresql/*/bin). PostgreSQL
refuses to run as root: when the tests run as root, the cluster runs as the `postgres` system
user (or `nobody`) with the directory handed to it. Password authentication (scram-sha-256) on
TCP, for the smtpgate role and database; the superuser connects over the Unix socket in the
cluster directory. Under CI a missing package is a failure, elsewhere a skip.
"""

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import unittest

import harness


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[-2].split(".") if x.isdigit()])
    for d in reversed(dirs):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "pg_ctl"), os.X_OK):
            return d
    return None


def require_pg():
    if pg_bindir() is None:
        msg = "PostgreSQL server binaries not installed (Debian package postgresql)"
        if os.environ.get("CI"):
            raise AssertionError(msg)
        raise unittest.SkipTest(msg)


class PgCluster:
    def __init__(self, start=True):
        require_pg()
        self.bindir = pg_bindir()
        self.tmp = tempfile.mkdtemp(prefix="sg-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.sock = self.tmp
        self.log_path = os.path.join(self.tmp, "postgres.log")
        self.password = secrets.token_hex(12)
        self.run_as = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.run_as = pwd.getpwnam(name)
                    break
                except KeyError:
                    pass
            os.chmod(self.tmp, 0o755)
            os.chown(self.tmp, self.run_as.pw_uid, self.run_as.pw_gid)
            d = os.path.dirname(self.tmp)
            while d not in ("/", ""):
                os.chmod(d, os.stat(d).st_mode | 0o011)
                d = os.path.dirname(d)
        self.port = None
        self._initdb()
        if start:
            self.start()

    def _preexec(self):
        if self.run_as is not None:
            os.setgid(self.run_as.pw_gid)
            os.setgroups([])
            os.setuid(self.run_as.pw_uid)

    def _run(self, argv, input=None, check=True, timeout=60):
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                           preexec_fn=self._preexec, cwd=self.tmp,
                           env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PGTZ": "UTC"})
        if check and r.returncode != 0:
            raise AssertionError("%s failed (%d): %s %s" % (argv[0], r.returncode, r.stdout[-500:], r.stderr[-800:]))
        return r

    def _initdb(self):
        pwfile = os.path.join(self.tmp, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self.run_as is not None:
            os.chown(pwfile, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                   "--auth-host=scram-sha-256", "--pwfile", pwfile, "-E", "UTF8", "--no-sync"])
        os.unlink(pwfile)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n" % self.sock)

    def start(self, new_port=False):
        for _attempt in range(3):
            if self.port is None or new_port:
                self.port = harness.free_port()
            r = self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log_path,
                           "-o", "-p %d" % self.port, "-w", "-t", "30", "start"], check=False)
            if r.returncode == 0:
                break
            if "in use" not in self.log() and "could not bind" not in self.log():
                raise AssertionError("pg_ctl start failed: %s %s" % (r.stderr[-500:], self.log()[-800:]))
            self.port = None
        else:
            raise AssertionError("PostgreSQL could not bind a free port")
        if not getattr(self, "_provisioned", False):
            self.psql("CREATE ROLE smtpgate LOGIN PASSWORD '%s'" % self.password)
            self.psql("CREATE DATABASE smtpgate OWNER smtpgate")
            self._provisioned = True

    def stop(self, mode="fast"):
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"],
                  check=False)

    @property
    def conninfo(self):
        return ("host=127.0.0.1 port=%d dbname=smtpgate user=smtpgate password=%s"
                % (self.port, self.password))

    def psql(self, sql, db="postgres"):
        psql = os.path.join(self.bindir, "psql")
        if not os.access(psql, os.X_OK):
            psql = shutil.which("psql")
        r = self._run([psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p",
                       str(self.port), "-U", "postgres", "-d", db, "-c", sql])
        return r.stdout

    def session(self, db="smtpgate"):
        """An interactive psql as the superuser (text pipes, line buffered), e.g. to hold a lock
        while a test looks at what waits for it; the caller ends it (stdin.close(), wait())."""
        psql = os.path.join(self.bindir, "psql")
        if not os.access(psql, os.X_OK):
            psql = shutil.which("psql")
        return subprocess.Popen([psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                                 "-p", str(self.port), "-U", "postgres", "-d", db],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, preexec_fn=self._preexec, cwd=self.tmp,
                                env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PGTZ": "UTC"})

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        self.stop("immediate")
        if os.environ.get("SG_KEEP_TMP"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False
