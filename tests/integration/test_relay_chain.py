"""Issue 13, the smarthost client's mechanisms against a real server: smtpgate in relay mode
delivers to a second smtpgate (capture mode, STARTTLS with a certificate from a private CA) with
XOAUTH2 and OAUTHBEARER (a bearer token minted by `smtpgate token issue` for the smarthost's
account, read from relay_token_file) and SCRAM-SHA-256 (its gs2 header says we could bind to the
TLS channel and the server offered no -PLUS variant), and EXTERNAL with a client certificate
(relay_cert, relay_key) from a CA the smarthost trusts (tls_client_ca). The smarthost's own record of the message (X-Smtpgate-Envelope) says which mechanism
and login authenticated and over which TLS version."""

import os
import re
import shutil
import smtplib
import tempfile
import unittest

from harness import HOST, Server, User, queued_id
from relay_util import log_lines, make_pki, wait_for
from sec_util import make_client_pki

ALICE = User("alice", "alicepw", addresses=["alice@example.test"])
RELAYUSER = User("relayuser", "relay-Pass-1", addresses=["relay@smarthost.test"])
BODY = (b"From: alice@example.test\r\nTo: bob@elsewhere.test\r\nSubject: chain\r\n\r\n"
        b"through two smtpgates\r\n")


class RelayChain(unittest.TestCase):
    def test_token_scram_and_external(self):
        tmp = tempfile.mkdtemp(prefix="sg-relay-chain-")
        os.chmod(tmp, 0o755)
        try:
            pki = make_pki(os.path.join(tmp, "pki"), ("smarthost.test", "127.0.0.1"))
            cdir = os.path.join(tmp, "client")
            os.makedirs(cdir)
            client_ca, client_cert, client_key = make_client_pki(cdir, "relayuser")
            with Server(users=[RELAYUSER], listeners={"submission": "submission"},
                        settings={"tls_cert": pki.cert, "tls_key": pki.key,
                                  "tls_client_ca": client_ca, "sender_policy": "off"}) as hub:
                token = hub.cli("token", "issue", "relayuser", "--data-dir", hub.data_dir,
                                "--ttl", "600").stdout.strip()
                tok = os.path.join(tmp, "token")
                pw = os.path.join(tmp, "pw")
                for path, text in ((tok, token), (pw, RELAYUSER.password)):
                    with open(path, "w") as f:
                        f.write(text + "\n")
                    os.chmod(path, 0o600)
                for mech, secret in (("XOAUTH2", {"relay_token_file": tok}),
                                     ("OAUTHBEARER", {"relay_token_file": tok}),
                                     ("SCRAM-SHA-256", {"relay_password_file": pw}),
                                     ("EXTERNAL", {"relay_cert": client_cert,
                                                   "relay_key": client_key})):
                    with self.subTest(mech=mech):
                        before = set(hub.messages("relayuser"))
                        settings = {"delivery": "relay", "relay_host": hub.addr("submission"),
                                    "relay_ca_file": pki.ca, "relay_tls_name": "smarthost.test",
                                    "relay_auth": mech, "relay_user": "relayuser",
                                    "relay_retry_min": "1s"}
                        settings.update(secret)
                        with Server(users=[ALICE], listeners={"submission": "submission"},
                                    settings=settings) as srv:
                            s = smtplib.SMTP(HOST, srv.port("submission"), timeout=10)
                            s.starttls()
                            s.login(ALICE.login, ALICE.password)
                            s.mail("alice@example.test")
                            s.rcpt("bob@elsewhere.test")
                            code, text = s.data(BODY)
                            s.quit()
                            qid = queued_id(text.decode())
                            self.assertTrue(wait_for(lambda: log_lines(srv.log(), "queue_done",
                                                                       qid)),
                                            srv.log()[-2000:] + hub.log()[-2000:])
                            self.assertNotIn(token, srv.log())
                        new = set(hub.messages("relayuser")) - before
                        self.assertEqual(len(new), 1)
                        got = hub.read_message("relayuser", new.pop())
                        env = re.search(rb"X-Smtpgate-Envelope: [^\r\n]*", got).group(0)
                        self.assertIn(b"auth=" + mech.encode(), env)
                        self.assertIn(b"login=relayuser", env)
                        self.assertIn(b"tls=TLSv1.3", env)
                        self.assertIn(b"Return-Path: <alice@example.test>", got)
                        self.assertTrue(got.endswith(BODY))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
