"""docs/relay.md: the complete example configuration works when pasted. The test takes exactly
the text between the <!-- relay-example --> markers, replaces only the paths (/etc/smtpgate,
/var/lib/smtpgate), the smarthost's address and the listening address, creates the files it
names the way the document says (dkim keygen, the password file, a TLS certificate), starts
`smtpgate serve` on it and relays one message through a scripted smarthost that requires
STARTTLS (certificate for smtp.provider.example from its own CA) and AUTH PLAIN: the message
arrives over TLS, authenticated, DKIM-signed for example.org."""

import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import tempfile
import time
import unittest

from harness import HOST, binary, free_port
from relay_util import FakeSmarthost, make_pki, openssl, wait_for

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "relay.md")


def example():
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"<!-- relay-example -->\n```ini\n(.*?)```\n<!-- /relay-example -->", text, re.S)
    assert m, "no example block in docs/relay.md"
    return m.group(1)


README = os.path.join(os.path.dirname(DOC), "..", "README.md")


class RelayDocExample(unittest.TestCase):
    def test_readme_shows_the_tested_example(self):
        """The README's relay example is this very block, so it is tested too."""
        with open(README) as f:
            readme = f.read()
        m = re.search(r"<!-- relay-example -->\n```ini\n(.*?)```\n<!-- /relay-example -->",
                      readme, re.S)
        self.assertIsNotNone(m, "README.md has no relay example block")
        self.assertEqual(m.group(1), example(), "README.md and docs/relay.md examples differ")

    def test_example_configuration_relays(self):
        tmp = tempfile.mkdtemp(prefix="sg-relay-doc-")
        os.chmod(tmp, 0o755)
        proc = None
        try:
            etc = os.path.join(tmp, "etc")
            data = os.path.join(tmp, "lib")
            for d in (etc, data, os.path.join(etc, "tls"), os.path.join(etc, "dkim")):
                os.makedirs(d)
            pki = make_pki(os.path.join(tmp, "pki"), ("smtp.provider.example",))
            shutil.copy(pki.ca, os.path.join(etc, "provider-ca.pem"))
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "tls/key.pem", "-out", "tls/cert.pem", "-days", "2",
                    "-subj", "/CN=mail.example.org", cwd=etc)
            r = subprocess.run([binary(), "dkim", "keygen", "example.org", "mail2026", "--out",
                                os.path.join(etc, "dkim", "example.org.pem")],
                               capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(etc, "relay.password"), "w") as f:
                f.write("the provider password\n")
            os.chmod(os.path.join(etc, "relay.password"), 0o600)
            with FakeSmarthost(tls=pki, auth=("mail.example.org", "the provider password"),
                               require_tls=True) as sh:
                port = free_port()
                conf = (example().replace("/etc/smtpgate", etc)
                        .replace("/var/lib/smtpgate", data)
                        .replace("smtp.provider.example:587", sh.addr())
                        .replace("0.0.0.0:587", "%s:%d" % (HOST, port)))
                path = os.path.join(etc, "smtpgate.conf")
                with open(path, "w") as f:
                    f.write(conf)
                r = subprocess.run([binary(), "user", "--config", path, "add", "alice", "--address",
                                    "alice@example.org", "--password-stdin"],
                                   input="alicepw\n", capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                if os.geteuid() == 0:      # the server drops to its user: let it in
                    os.chmod(data, 0o777)
                log = open(os.path.join(tmp, "server.log"), "wb")
                proc = subprocess.Popen([binary(), "serve", "--config", path], stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                log.close()

                def up():
                    try:
                        socket = __import__("socket").create_connection((HOST, port), 0.5)
                        socket.close()
                        return True
                    except OSError:
                        return proc.poll() is not None
                self.assertTrue(wait_for(up, timeout=15))
                self.assertIsNone(proc.poll(), open(os.path.join(tmp, "server.log")).read())
                s = smtplib.SMTP(HOST, port, timeout=10)
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s.starttls(context=ctx)
                s.login("alice", "alicepw")
                s.sendmail("alice@example.org", ["bob@example.net"],
                           b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: doc\r\n"
                           b"\r\nfrom the documented configuration\r\n")
                s.quit()
                self.assertTrue(wait_for(lambda: sh.delivered, timeout=20),
                                open(os.path.join(tmp, "server.log")).read()[-3000:])
                t = sh.delivered[0]
                self.assertTrue(sh.conns[0].tls and sh.conns[0].authed)
                self.assertEqual(t.rcpts, ["bob@example.net"])
                self.assertTrue(t.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256"), t.data[:80])
                self.assertIn(b"d=example.org", t.data[:400])
                self.assertIn(b"s=mail2026", t.data[:400])
        finally:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
