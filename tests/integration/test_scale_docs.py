"""docs/scaling.md's "Running several nodes" example, run as written (issue 15).

The two blocks marked `<!-- example: smtpgate.conf -->` and `<!-- example: haproxy.cfg -->` are
read from the document; only addresses, ports and paths are rewritten (10.0.0.11/12 -> the two
nodes' free loopback ports, 203.0.113.10 -> HAProxy's, 10.0.0.5 -> 127.0.0.1, the data directory
and the 0600 conninfo file -> temporary ones). A private PostgreSQL is migrated with the
document's command, an account is added with it, and mail is sent through HAProxy to both nodes
with STARTTLS and implicit TLS; both nodes must be ready (/readyz) and HAProxy's checks green.
"""

import base64
import json
import os
import re
import smtplib
import subprocess
import tempfile
import time
import unittest

import harness
import pg_cluster
import scale_util
from harness import HOST, Server
from scale_util import http_get, http_status, wait_for

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "scaling.md")


def example(name):
    with open(DOC) as f:
        text = f.read()
    m = re.search(r"<!-- example: %s -->\n```[a-z]*\n(.*?)```" % re.escape(name), text, re.S)
    if m is None:
        raise AssertionError("docs/scaling.md has no example block %r" % name)
    return m.group(1)


class DocNode(Server):
    """A harness.Server whose configuration is the document's, rewritten for this machine."""

    def __init__(self, node_ip, conninfo_file, http_port, **kw):
        self.node_ip = node_ip
        self.conninfo_file = conninfo_file
        self.http_port = http_port
        super().__init__(listeners={"submission": "submission", "submissions": "submissions"},
                         start=False, **kw)

    def write_config(self):
        text = example("smtpgate.conf")
        text = text.replace("%s:2587" % self.node_ip, "%s:%d" % (HOST, self.ports["submission"]))
        text = text.replace("%s:2465" % self.node_ip, "%s:%d" % (HOST, self.ports["submissions"]))
        text = text.replace("%s:8025" % self.node_ip, "%s:%d" % (HOST, self.http_port))
        text = text.replace("10.0.0.5/32", "127.0.0.1/32")
        text = text.replace("/var/lib/smtpgate", self.data_dir)
        text = text.replace("/etc/smtpgate/pg.conninfo", self.conninfo_file)
        text = text.replace("mx1.example.com", "mx-%d.example.test" % self.http_port)
        if "10.0.0." in text:
            raise AssertionError("unrewritten address in the example: %s" % text)
        with open(self.config_path, "w") as f:
            f.write(text)
        self._share_with_server([l for l in text.splitlines() if not l.startswith("pg_conninfo_file")])


class RunningSeveralNodes(unittest.TestCase):
    def test_readme_shows_the_tested_example(self):
        """README's "Running several nodes" blocks are the ones this test runs."""
        with open(os.path.join(os.path.dirname(DOC), "..", "README.md")) as f:
            readme = f.read()
        for name in ("smtpgate.conf", "haproxy.cfg"):
            m = re.search(r"<!-- example: %s -->\n```[a-z]*\n(.*?)```" % re.escape(name), readme,
                          re.S)
            self.assertIsNotNone(m, "README.md has no %s example" % name)
            self.assertEqual(m.group(1), example(name), "README.md and docs/scaling.md differ")

    def test_example_as_documented(self):
        scale_util.require("haproxy", "haproxy")
        with pg_cluster.PgCluster() as pg:
            tmp = tempfile.mkdtemp(prefix="sg-doc-", dir=pg.tmp)
            conninfo = os.path.join(tmp, "pg.conninfo")
            with open(conninfo, "w") as f:
                f.write(pg.conninfo + "\n")
            os.chmod(conninfo, 0o600)
            nodes, hap = [], None
            try:
                # the document shows node 1's file; node 2's differs only in its address
                for _ in range(2):
                    nodes.append(DocNode("10.0.0.11", conninfo, harness.free_port()))
                # the documented order: migrate, add the account, then start the nodes
                r = subprocess.run([harness.binary(), "db", "--config", self.cli_conf(nodes[0]), "migrate"],
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                r = subprocess.run([harness.binary(), "user", "--config", self.cli_conf(nodes[0]), "add",
                                    "alice@example.com", "--password-stdin"], input="alice-pw\n",
                                   capture_output=True, text=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                for n in nodes:
                    n.start()
                for n in nodes:
                    wait_for(lambda: http_status(n.http_port, "/readyz") == 200, what="node ready")
                hap = self.start_haproxy(nodes)
                for i in range(4):
                    implicit = i % 2 == 1
                    port = hap["submissions" if implicit else "submission"]
                    ctx = harness.tls_context()
                    if implicit:
                        s = smtplib.SMTP_SSL(HOST, port, context=ctx, timeout=10,
                                             source_address=("127.0.0.%d" % (101 + i), 0))
                    else:
                        s = smtplib.SMTP(HOST, port, timeout=10, source_address=("127.0.0.%d" % (101 + i), 0))
                        s.starttls(context=ctx)
                    s.login("alice@example.com", "alice-pw")
                    s.sendmail("alice@example.com", ["alice@example.com"],
                               b"Subject: doc example\r\n\r\nhello\r\n")
                    s.quit()
                # every node's API lists the four messages (PostgreSQL holds them)
                for n in nodes:
                    st, body = http_get(n.http_port, "/api/v1/inboxes/alice%40example.com/messages",
                                        headers={"Authorization": "Basic " + base64.b64encode(
                                            b"alice@example.com:alice-pw").decode()})
                    self.assertEqual(st, 200, body)
                    self.assertEqual(json.loads(body)["total"], 4)
                for n in nodes:
                    self.assertRegex(n.log(), r"event=proxy listener=submission peer=127\.0\.0\.1 version=2 "
                                              r"client=127\.0\.0\.10[1-4]")
            finally:
                if hap is not None:
                    hap["proc"].cleanup()
                probs = []
                for n in nodes:
                    n.stop()
                    probs += n.problems()
                    if n.problems():
                        n.print_log_tail("; ".join(n.problems()))
                    n.cleanup()
                self.assertEqual(probs, [])

    def cli_conf(self, node):
        """The node's configuration for the CLI (as an admin would pass /etc/smtpgate/smtpgate.conf);
        written by the node's write_config before its first start."""
        node.ports = node.ports or {name: harness.free_port() for name in node.listeners}
        node.write_config()
        return node.config_path

    def start_haproxy(self, nodes):
        text = example("haproxy.cfg")
        hp = scale_util.HAProxy.__new__(scale_util.HAProxy)
        hp.tmp = tempfile.mkdtemp(prefix="sg-haproxy-doc-")
        hp.cfg = os.path.join(hp.tmp, "haproxy.cfg")
        hp.log_path = os.path.join(hp.tmp, "haproxy.log")
        hp.proc = None
        ports = {"submission": harness.free_port(), "submissions": harness.free_port()}
        hp.ports = dict(ports)
        text = text.replace("203.0.113.10:587", "%s:%d" % (HOST, ports["submission"]))
        text = text.replace("203.0.113.10:465", "%s:%d" % (HOST, ports["submissions"]))
        for n, ip in zip(nodes, ("10.0.0.11", "10.0.0.12")):
            for role, p in (("submission", 2587), ("submissions", 2465)):
                text = re.sub(r"%s:%d (send-proxy-v2 check) port 8025" % (re.escape(ip), p),
                              r"%s:%d \1 port %d" % (HOST, n.port(role), n.http_port), text)
        if "10.0.0." in text or "203.0.113" in text:
            raise AssertionError("unrewritten address in the HAProxy example:\n" + text)
        with open(hp.cfg, "w") as f:
            f.write(text)
        hp._start()
        return {"proc": hp, "submission": ports["submission"], "submissions": ports["submissions"]}


if __name__ == "__main__":
    unittest.main()
