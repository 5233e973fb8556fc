"""DKIM signing checked by an independent verifier: `smtpgate dkim keygen` makes RSA and Ed25519
keys and prints their DNS records; `smtpgate dkim sign` signs messages with the server's signer
(src/relay/dkim.c); `dkimverify` (Debian python3-dkim) verifies them, its DNS lookup answered with
the printed record instead of DNS. Tampered copies must fail, so the verifier
is not a rubber stamp. Also the CLI's refusals."""

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import binary  # noqa: E402

TIMEOUT = 60

# Runs the dkimverify program itself (python3-dkim) under its own interpreter, with its DNS
# lookup (dkim.dnsplug._get_txt) answered from the record files given as arguments (zone-file lines
# as keygen prints them) instead of DNS. argv: dkimverify path, record files; stdin: the message.
VERIFY = r"""
import re, runpy, sys
import dkim.dnsplug
recs = {}
for path in sys.argv[2:]:
    with open(path) as f:
        line = f.read().strip()
    name = line.split()[0].rstrip(".")
    recs[name] = "".join(re.findall(r'"([^"]*)"', line))
def lookup(name, timeout=5):
    return recs.get(name.rstrip("."))
dkim.dnsplug._get_txt = lookup
prog = sys.argv[1]
sys.argv = [prog]
runpy.run_path(prog, run_name="__main__")
"""

SIMPLE = (b"From: Alice <alice@example.org>\r\n"
          b"To: Bob <bob@example.net>\r\n"
          b"Subject: Hello\r\n"
          b"Date: Wed, 02 Dec 2026 11:00:00 +0000\r\n"
          b"Message-ID: <1@example.org>\r\n"
          b"\r\n"
          b"Hello Bob.\r\n")

TRICKY = (b"Received: from client (client [127.0.0.1]) by mail.example.org;\r\n"
          b"\tWed, 02 Dec 2026 11:00:00 +0000\r\n"
          b"From: \"Alice Q. Example\"\r\n"
          b"   <alice@example.org>\r\n"
          b"To: bob@example.net,\r\n"
          b"\tcarol@example.net,\r\n"
          b" dave@example.net\r\n"
          b"Cc: eve@example.net\r\n"
          b"Subject:   lots   of\t\tspace   \r\n"
          b"Subject: a second subject\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"List-Unsubscribe: <mailto:leave@example.org>\r\n"
          b"X-Unsigned: \t whatever \r\n"
          b"\r\n"
          b"\r\n"
          b"trailing space   \r\n"
          b"trailing tab\t\r\n"
          b"  internal   \t runs  \r\n"
          b"\r\n"
          + b"x" * 5000 + b"\r\n"
          + (b"y" * 70 + b" ") * 200 + b"\r\n"
          b"\r\n\r\n\r\n"
          b"no final line end")

EMPTY_BODY = b"From: alice@example.org\r\nSubject: empty\r\n\r\n"
NO_BODY = b"From: alice@example.org\r\nSubject: nothing after the header"
BARE_LF = b"From: alice@example.org\nSubject: bare LF\n\nline one\nline two  \n\n"

MESSAGES = {"simple": SIMPLE, "tricky": TRICKY, "empty body": EMPTY_BODY, "no body": NO_BODY,
            "bare LF": BARE_LF}


def dkimverify():
    """(the interpreter of the dkimverify script, its path), or None without python3-dkim."""
    path = shutil.which("dkimverify")
    if path is None:
        return None
    with open(path, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    if not first.startswith("#!"):
        return None
    interp = first[2:].split()[0]
    r = subprocess.run([interp, "-c", "import dkim.dnsplug"], capture_output=True,
                       timeout=TIMEOUT)
    return (interp, path) if r.returncode == 0 else None


def run(*args, input=None):
    r = subprocess.run([binary()] + [str(a) for a in args], input=input, capture_output=True,
                       timeout=TIMEOUT)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


class Dkim(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dv = dkimverify()
        if cls.dv is None:
            raise unittest.SkipTest("python3-dkim (dkimverify) not installed; scripts/deps has it")
        cls.tmp = tempfile.mkdtemp(prefix="sg-dkim-")
        cls.keys = {}
        for kind, sel, extra in (("rsa", "rsa2026", ["--bits", "2048"]),
                                 ("ed25519", "ed2026", ["--type", "ed25519"])):
            key = os.path.join(cls.tmp, kind + ".pem")
            rc, out, err = run("dkim", "keygen", "example.org", sel, "--out", key, *extra)
            assert rc == 0, err
            rec = os.path.join(cls.tmp, kind + ".txt")
            with open(rec, "wb") as f:
                f.write(out)
            cls.keys[kind] = (sel, key, rec, out.decode())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verify(self, message, *records):
        interp, prog = self.dv
        r = subprocess.run([interp, "-c", VERIFY, prog] + list(records), input=message,
                           capture_output=True, timeout=TIMEOUT)
        out = r.stdout.strip()
        # a verdict, never another crash: "signature ok" (0), or "signature verification failed"
        # or dkimpy's ValidationError (a body hash mismatch is raised, not printed) (1)
        ok = (r.returncode, out) == (0, b"signature ok")
        refused = r.returncode == 1 and (out == b"signature verification failed" or
                                         b"\ndkim.ValidationError: " in r.stderr)
        if not ok and not refused:
            raise AssertionError("dkimverify: exit %d, %r %r" % (r.returncode, out, r.stderr))
        return r.returncode == 0, (out + r.stderr).decode(errors="replace")

    def sign(self, kind, message):
        sel, key, _, _ = self.keys[kind]
        rc, out, err = run("dkim", "sign", "example.org", sel, key, "-", input=message)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith(message))
        return out

    def test_keygen_files_and_records(self):
        for kind, (sel, key, rec, out) in self.keys.items():
            with self.subTest(kind=kind):
                self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
                with open(key) as f:
                    self.assertIn("-----BEGIN PRIVATE KEY-----", f.read())
                line = out.strip()
                self.assertEqual(out.count("\n"), 1, "one line on stdout")
                self.assertTrue(line.startswith(sel + "._domainkey.example.org. IN TXT \""), line)
                strings = re.findall(r'"([^"]*)"', line)
                self.assertTrue(all(1 <= len(s) <= 255 for s in strings), strings)
                txt = "".join(strings)
                self.assertTrue(txt.startswith("v=DKIM1; k=%s; p=" % kind), txt)
                if kind == "rsa":
                    self.assertGreater(len(strings), 1, "a 2048-bit key needs two strings")
                # `record` prints the same line for the existing key
                rc, again, err = run("dkim", "record", "example.org", sel, key)
                self.assertEqual(rc, 0, err)
                self.assertEqual(again.decode(), out)

    def test_signatures_verify(self):
        for kind in self.keys:
            for name, message in MESSAGES.items():
                with self.subTest(kind=kind, message=name):
                    signed = self.sign(kind, message)
                    ok, err = self.verify(signed, self.keys[kind][2])
                    self.assertTrue(ok, err + signed[:600].decode(errors="replace"))

    def test_tampering_fails(self):
        for kind in self.keys:
            signed = self.sign(kind, TRICKY)
            rec = self.keys[kind][2]
            for what, bad in (
                    ("body", signed.replace(b"internal", b"Internal")),
                    ("signed header", signed.replace(b"a second subject", b"a 2nd subject")),
                    ("added From", b"From: mallory@example.com\r\n" + signed),
                    ("other key", None)):
                with self.subTest(kind=kind, tamper=what):
                    if bad is None:
                        other = [k for k in self.keys if k != kind][0]
                        # the right name, the other key's p=: must fail
                        with open(self.keys[other][2]) as f:
                            p = re.search(r'p=([^"]*)', "".join(re.findall(r'"([^"]*)"', f.read())))
                        with open(rec) as f:
                            line = f.read()
                        txt = "".join(re.findall(r'"([^"]*)"', line))
                        txt = re.sub(r"p=.*", "p=" + p.group(1), txt)
                        wrong = os.path.join(self.tmp, kind + "-wrong.txt")
                        with open(wrong, "w") as f:
                            f.write(line.split()[0] + ' IN TXT "' + txt + '"\n')
                        ok, _ = self.verify(signed, wrong)
                    else:
                        ok, _ = self.verify(bad, rec)
                    self.assertFalse(ok)
            # unsigned header changes and whitespace changes survive (relaxed)
            relaxed = signed.replace(b"X-Unsigned: \t whatever", b"X-Unsigned: changed") \
                            .replace(b"trailing space   \r\n", b"trailing space\r\n")
            ok, err = self.verify(relaxed, rec)
            self.assertTrue(ok, err)

    def test_cli_refusals(self):
        sel, key, _, _ = self.keys["ed25519"]
        rc, _, err = run("dkim", "keygen", "example.org", sel, "--out", key, "--type", "ed25519")
        self.assertEqual(rc, 1)
        self.assertIn("never overwritten", err)
        rc, _, err = run("dkim", "keygen", "bad domain", "s", "--out",
                         os.path.join(self.tmp, "x.pem"))
        self.assertEqual(rc, 2)
        self.assertIn("invalid DOMAIN", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x.pem")))
        rc, _, err = run("dkim", "keygen", "example.org", "s", "--bits", "512", "--out",
                         os.path.join(self.tmp, "y.pem"))
        self.assertEqual(rc, 2)
        rc, _, err = run("dkim", "keygen", "example.org", "s", "--type", "dsa")
        self.assertEqual(rc, 2)
        rc, out, err = run("dkim", "sign", "example.org", sel, key,
                           input=b"To: b@example.org\r\n\r\nno From\r\n")
        self.assertEqual(rc, 1)
        self.assertEqual(out, b"")
        self.assertIn("no From", err)
        rc, _, err = run("dkim", "sign", "example.org", sel, os.path.join(self.tmp, "none.pem"),
                         input=SIMPLE)
        self.assertEqual(rc, 1)
        self.assertIn("cannot open", err)
        rc, out, _ = run("dkim", "--help")
        self.assertEqual(rc, 0)
        self.assertIn(b"keygen DOMAIN SELECTOR", out)


if __name__ == "__main__":
    unittest.main()
