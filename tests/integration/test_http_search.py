"""Search, read state and tags, health probes (issue 14) against the real binary: the SQLite
FTS5 index is fed by the server's background indexer; every operator of the query language is
checked through GET /api/v1/search and the inbox listing. Python stdlib only."""

import base64
import time
import unittest
import urllib.parse

import harness
from harness import ALICE, BOB, DAVE
from test_http import basic, bearer, mime_message, q, request, smtp_send
from test_http_hardening import ServerCase, mx_send


class SearchTest(ServerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        srv = cls.srv
        cls.ids = {}

        def mx(rcpt, subject, body, sender="news@shop.test", attachment=None):
            if attachment:
                msg = mime_message(sender, rcpt, subject, text=body, attachment=attachment)
            else:
                msg = ("From: Shop <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\n%s\r\n"
                       % (sender, rcpt, subject, body)).encode()
            return mx_send(srv, [rcpt], msg, mail_from=sender)

        cls.ids["invoice"] = mx(BOB.login, "Your invoice 4711", "Total due: 42 EUR. Thanks!",
                                attachment=("rechnung-4711.pdf", "application/pdf", b"%PDF-1.4 x"))
        cls.ids["newsletter"] = mx(BOB.login, "Weekly newsletter", "Big summer sale on garden chairs")
        cls.ids["phrase"] = mx(BOB.login, "Meeting notes", "the quick brown fox met the lazy dog",
                               sender="colleague@work.test")
        cls.ids["alice"] = mx(ALICE.login, "Alice only invoice", "an invoice for alice")
        cls.ids["cafe"] = mx(BOB.login, "Café opening", "Grand opening of the café")
        # plus-addressing: bob's own submission to someone+receipts@... is tagged automatically
        msg = harness.make_message(BOB.login, "shop+receipts@shop.test", "order placed")
        smtp_send(srv, BOB, ["shop+receipts@shop.test"], msg)
        cls.wait_indexed(BOB.login, 5)
        cls.wait_indexed(ALICE.login, 1)

    @classmethod
    def wait_indexed(cls, login, n):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = request(cls.port, "GET", "/api/v1/search?q=login:%s" % q(login), auth=bearer())
            if r.status == 200 and r.json()["total"] >= n:
                return
            time.sleep(0.1)
        raise AssertionError("%s: %d messages not indexed in 30 s" % (login, n))

    def search(self, query, auth=None, **kw):
        path = "/api/v1/search?q=" + urllib.parse.quote(query)
        for k, v in kw.items():
            path += "&%s=%s" % (k, urllib.parse.quote(str(v)))
        r = self.get(path, auth=auth or basic(BOB))
        self.assertEqual(r.status, 200, (query, r))
        return r.json()

    def subjects(self, query, **kw):
        return sorted(m["subject"] for m in self.search(query, **kw)["messages"])

    def test_words_fields_and_phrases(self):
        self.assertEqual(self.subjects("invoice"), ["Your invoice 4711"])
        self.assertEqual(self.subjects("invo"), ["Your invoice 4711"])          # prefix
        self.assertEqual(self.subjects("garden"), ["Weekly newsletter"])        # body text
        self.assertEqual(self.subjects("rechnung"), ["Your invoice 4711"])      # attachment name
        self.assertEqual(self.subjects("from:colleague@work.test"), ["Meeting notes"])
        self.assertEqual(self.subjects("subject:newsletter"), ["Weekly newsletter"])
        self.assertEqual(self.subjects("subject:garden"), [])
        self.assertEqual(self.subjects("to:receipts"), ["order placed"])
        self.assertEqual(self.subjects('"brown fox"'), ["Meeting notes"])
        self.assertEqual(self.subjects('"fox brown"'), [])
        self.assertEqual(self.subjects("cafe"), ["Café opening"])               # diacritics folded
        self.assertEqual(self.subjects("has:attachment"), ["Your invoice 4711"])
        got = self.subjects("from:shop.test -invoice -sale")
        self.assertEqual(got, ["Café opening"])
        d = self.search("from:shop.test")
        self.assertEqual(d["total"], 3)

    def test_isolation_and_login_operator(self):
        self.assertEqual(self.subjects("invoice", auth=basic(ALICE)), ["Alice only invoice"])
        r = self.get("/api/v1/search?q=login:" + q(BOB.login), auth=basic(ALICE))
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["parameter"], "q")
        admin = sorted(m["subject"] for m in self.search("invoice", auth=bearer())["messages"])
        self.assertEqual(admin, ["Alice only invoice", "Your invoice 4711"])
        only = self.search("invoice login:%s" % ALICE.login, auth=bearer())
        self.assertEqual([m["subject"] for m in only["messages"]], ["Alice only invoice"])

    def test_dates_paging_and_inbox_listing(self):
        today = time.strftime("%Y-%m-%d", time.gmtime())
        self.assertEqual(self.search("before:2000-01-01")["total"], 0)
        self.assertEqual(self.search("after:2000-01-01")["total"], self.search("")["total"])
        self.assertEqual(self.search("after:2999-01-01")["total"], 0)
        self.assertGreaterEqual(self.search("after:%s" % today)["total"], 4)
        page1 = self.search("", limit=2)
        self.assertEqual(len(page1["messages"]), 2)
        page2 = self.search("", limit=2, before=page1["next_before"])
        self.assertEqual(len(page2["messages"]), 2)
        self.assertFalse({m["id"] for m in page1["messages"]} & {m["id"] for m in page2["messages"]})
        lst = self.get("/api/v1/inboxes/%s/messages?q=invoice" % q(BOB.login), auth=basic(BOB)).json()
        self.assertEqual([m["subject"] for m in lst["messages"]], ["Your invoice 4711"])
        self.assertEqual(lst["total"], 1)
        for bad in ('"unclosed', "nope:x", "has:pizza", "before:yesterday", "tag:bad/tag"):
            r = self.get("/api/v1/search?q=" + urllib.parse.quote(bad), auth=basic(BOB))
            self.assertEqual(r.status, 400, bad)
            self.assertEqual(r.json()["parameter"], "q")

    def test_read_state_and_tags(self):
        mid = self.ids["newsletter"]
        self.assertIn("Weekly newsletter", self.subjects("is:unread"))
        d = self.get("/api/v1/messages/%s" % mid, auth=basic(BOB)).json()
        self.assertTrue(d["read"])
        self.assertNotIn("Weekly newsletter", self.subjects("is:unread"))
        self.assertIn("Weekly newsletter", self.subjects("is:read"))
        r = request(self.port, "PUT", "/api/v1/messages/%s/read" % mid, auth=basic(BOB),
                    body={"read": False})
        self.assertEqual(r.status, 200, r)
        self.assertFalse(r.json()["read"])
        r = request(self.port, "PUT", "/api/v1/messages/%s/tags" % mid, auth=basic(BOB),
                    body={"tags": ["promo", "later"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["tags"], ["promo", "later"])
        self.assertEqual(self.subjects("tag:promo"), ["Weekly newsletter"])
        self.assertNotIn("Weekly newsletter", self.subjects("-tag:promo"))
        lst = self.get("/api/v1/inboxes/%s/messages?tag=later" % q(BOB.login), auth=basic(BOB)).json()
        self.assertEqual([m["id"] for m in lst["messages"]], [mid])
        for bad in ({"tags": ["no spaces"]}, {"tags": "x"}, {"tags": ["x"] * 33}, {"read": "yes"}):
            path = "/api/v1/messages/%s/%s" % (mid, "read" if "read" in bad else "tags")
            r = request(self.port, "PUT", path, auth=basic(BOB), body=bad)
            self.assertEqual(r.status, 400, bad)
        # another account cannot touch it
        r = request(self.port, "PUT", "/api/v1/messages/%s/tags" % mid, auth=basic(ALICE),
                    body={"tags": ["x"]})
        self.assertEqual(r.status, 404)
        # plus-addressing tagged the submission automatically
        self.assertEqual(self.subjects("tag:receipts"), ["order placed"])

    def test_delete_forgets(self):
        msg = b"From: <x@y.test>\r\nTo: <dave@example.org>\r\nSubject: zebra crossing\r\n\r\nx\r\n"
        mid = mx_send(self.srv, [DAVE.addresses[0]], msg)
        self.wait_indexed(DAVE.login, 1)
        self.assertEqual(self.subjects("zebra", auth=basic(DAVE)), ["zebra crossing"])
        r = request(self.port, "DELETE", "/api/v1/messages/%s" % mid, auth=basic(DAVE))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.subjects("zebra", auth=basic(DAVE)), [])


class ProbesTest(ServerCase):
    def test_healthz_readyz(self):
        self.assertEqual(request(self.port, "GET", "/healthz").status, 200)
        deadline = time.monotonic() + 10       # ready once every SMTP loop runs
        while request(self.port, "GET", "/readyz").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        d = request(self.port, "GET", "/readyz").json()
        self.assertEqual(d, {"status": "ready", "listeners": True, "store": True})
        r = request(self.port, "POST", "/readyz", body=b"")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers.get("allow"), "GET")


if __name__ == "__main__":
    unittest.main()
