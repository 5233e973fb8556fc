"""`make run`'s script (scripts/run-demo): a new user following the README sends a message with
swaks and sees it land in the demo inbox. Runs the script in a temp directory on free ports."""

import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

from harness import HOST, binary, free_port, require_tool, _repo_root

LOGIN = "demo@example.test"


class Demo(unittest.TestCase):
    def start_demo(self, cwd, port):
        # the server drops root: let it reach ./smtpgate-data inside the 0700 temp dir
        os.chmod(cwd, 0o711)
        log = open(os.path.join(cwd, "demo.out"), "wb")
        proc = subprocess.Popen(["sh", os.path.join(_repo_root(), "scripts", "run-demo"), binary(),
                                 "--listen", "submission=%s:%d" % (HOST, port),
                                 "--http", "%s:%d" % (HOST, free_port())],
                                cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.fail("run-demo exited %s:\n%s" % (proc.returncode, self.output(cwd)))
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    return proc
            except OSError:
                time.sleep(0.05)
        self.stop(proc)
        self.fail("run-demo's server not listening:\n" + self.output(cwd))

    @staticmethod
    def output(cwd):
        with open(os.path.join(cwd, "demo.out"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    @staticmethod
    def stop(proc):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def test_demo_account_and_swaks(self):
        require_tool("swaks")
        with tempfile.TemporaryDirectory(prefix="sg-it-demo-") as cwd:
            port = free_port()
            proc = self.start_demo(cwd, port)
            try:
                out = self.output(cwd)
                pwfile = os.path.join(cwd, "smtpgate-data", "demo-password")
                self.assertTrue(os.path.isfile(pwfile), out)
                self.assertEqual(stat.S_IMODE(os.stat(pwfile).st_mode), 0o600)
                with open(pwfile) as f:
                    password = f.readline().strip()
                self.assertIn(LOGIN, out)
                self.assertIn(password, out, "the demo credentials are printed")
                m = re.search(r"^\s*(swaks .*)$", out, re.M)
                self.assertTrue(m, "no swaks command printed:\n" + out)
                self.assertIn("--auth-password '%s'" % password, m.group(1))
                # the printed command, pointed at this test's port
                cmd = m.group(1).replace("127.0.0.1:2587", "%s:%d" % (HOST, port))
                r = subprocess.run(["sh", "-c", cmd + " --timeout 20"], cwd=cwd,
                                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
                sw = (r.stdout + r.stderr).decode("utf-8", "replace")
                self.assertEqual(r.returncode, 0, sw)
                qid = re.search(r"queued as (\S+)", sw)
                self.assertTrue(qid, sw)
                new = os.path.join(cwd, "smtpgate-data", "mail", LOGIN, "new")
                self.assertIn(qid.group(1), os.listdir(new))
            finally:
                self.stop(proc)
            # a second start keeps the password and the account
            proc = self.start_demo(cwd, free_port())
            try:
                with open(pwfile) as f:
                    self.assertEqual(f.readline().strip(), password)
                r = subprocess.run([binary(), "user", "--data-dir",
                                    os.path.join(cwd, "smtpgate-data"), "list"],
                                   capture_output=True, text=True, timeout=20)
                self.assertEqual(r.stdout.count(LOGIN), 1, r.stdout)
            finally:
                self.stop(proc)


if __name__ == "__main__":
    unittest.main()
