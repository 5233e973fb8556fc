"""The OpenAPI document (src/http/openapi.json, served at /api/v1/openapi.json) is true: every
documented operation is called against the real binary and each response is checked against the
schema documented for its status code (a small JSON-schema checker below, stdlib only). Also the
links and HTML-check views."""

import base64
import json
import os
import unittest
import urllib.parse

import harness
from harness import ALICE, BOB
from test_http import basic, bearer, mime_message, q, request, smtp_send
from test_http_hardening import ServerCase, mx_send

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check(schema, value, doc, where="$"):
    """Raise AssertionError when value does not match schema (type, enum, required,
    properties, items, $ref)."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return check(doc["components"]["schemas"][name], value, doc, where)
    t = schema.get("type")
    if t is not None:
        kinds = t if isinstance(t, list) else [t]
        ok = False
        for k in kinds:
            if k == "integer":
                ok = ok or (isinstance(value, int) and not isinstance(value, bool))
            elif k == "number":
                ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
            else:
                ok = ok or isinstance(value, TYPES[k]) and not (k != "boolean" and isinstance(value, bool))
        if not ok:
            raise AssertionError("%s: %r is not %s" % (where, value, t))
    if "enum" in schema and value not in schema["enum"]:
        raise AssertionError("%s: %r not in %s" % (where, value, schema["enum"]))
    if isinstance(value, dict):
        for r in schema.get("required", []):
            if r not in value:
                raise AssertionError("%s: missing %r" % (where, r))
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                check(sub, value[k], doc, where + "." + k)
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            check(schema["items"], v, doc, "%s[%d]" % (where, i))


class OpenApiTest(ServerCase):
    def test_every_operation_matches_the_document(self):
        r = request(self.port, "GET", "/api/v1/openapi.json")
        self.assertEqual(r.status, 200)
        doc = r.json()
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "src", "http", "openapi.json")) as f:
            self.assertEqual(doc, json.load(f))       # the served one is the one in the repo
        self.assertTrue(doc["openapi"].startswith("3."))
        # data to call everything with
        png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
                               "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        mid = mx_send(self.srv, [BOB.login], mime_message(
            "x@shop.test", BOB.login, "openapi", html='<a href="https://example.net/a?x=1&amp;y=2">Shop</a>',
            attachment=("logo.png", "image/png", png)))
        victim = mx_send(self.srv, [BOB.login], b"Subject: to delete\r\n\r\nx\r\n")
        smtp_send(self.srv, ALICE, [BOB.login], harness.make_message(ALICE.login, BOB.login, "auth"))
        rule = request(self.port, "POST", "/api/v1/faults", auth=bearer(),
                       body={"stage": "rcpt", "delay_ms": 1}).json()
        values = {"login": BOB.login, "id": mid, "n": "0"}
        special = {("delete", "/api/v1/messages/{id}"): {"id": victim},
                   ("delete", "/api/v1/faults/{id}"): {"id": str(rule["id"])}}
        bodies = {"setTags": {"tags": ["a", "b"]}, "setRead": {"read": True},
                  "addFault": {"stage": "mail", "delay_ms": 1}}
        called = []
        order = sorted(((path, m, op) for path, item in doc["paths"].items()
                        for m, op in item.items() if m in ("get", "put", "post", "delete")),
                       key=lambda x: (x[1] == "delete", x[0].startswith("/api/v1/inboxes/")))
        for path, method, op in order:
            vals = dict(values, **special.get((method, path), {}))
            if op["operationId"] == "deleteFault":      # a rule of its own (clearFaults may run first)
                vals["id"] = str(request(self.port, "POST", "/api/v1/faults", auth=bearer(),
                                         body={"stage": "rcpt", "delay_ms": 1}).json()["id"])
            url = path
            for k, v in vals.items():
                url = url.replace("{%s}" % k, q(v))
            auth = None if op.get("security") == [] else bearer()
            if op["operationId"] == "eventStream":
                ticket = request(self.port, "POST", "/api/v1/events/ticket", auth=bearer()).json()["ticket"]
                from test_http import SSEReader
                rd = SSEReader(self.port, path="/api/v1/events?ticket=" + ticket)
                status = rd.wait_status()
                rd.close()
                self.assertIn(str(status), op["responses"])
                called.append(op["operationId"])
                continue
            body = bodies.get(op["operationId"])
            if body is None and method in ("post", "put"):
                body = b""
            r = request(self.port, method.upper(), url, auth=auth, body=body)
            self.assertIn(str(r.status), op["responses"], (method, url, r))
            spec = op["responses"][str(r.status)]
            ctype = r.headers.get("content-type", "").split(";")[0]
            if "content" in spec:
                self.assertIn(ctype, spec["content"], (method, url))
                if ctype == "application/json":
                    check(spec["content"][ctype]["schema"], r.json(), doc, "%s %s" % (method, path))
            self.assertLess(r.status, 400, (method, url, r))
            called.append(op["operationId"])
        ops = [op["operationId"] for item in doc["paths"].values() for m, op in item.items()
               if m in ("get", "put", "post", "delete")]
        self.assertEqual(sorted(called), sorted(ops))
        # errors have the documented shape too
        r = request(self.port, "GET", "/api/v1/inboxes/%s/messages?limit=x" % q(BOB.login), auth=bearer())
        check(doc["components"]["schemas"]["Error"], r.json(), doc)


class ViewsTest(ServerCase):
    def test_links_and_html_check(self):
        html = ('<html><head><style>@media (max-width:600px){.a{display: flex}}</style></head>'
                '<body><a href="https://example.net/p?a=1&amp;b=2">Pay <b>now</b></a>'
                '<svg width="1"></svg><div style="position: absolute; border-radius:4px">x</div>'
                '<img srcset="a.webp 1x"></body></html>')
        mid = mx_send(self.srv, [BOB.login], mime_message(
            "x@shop.test", BOB.login, "views", html=html, text="see https://example.org/t. thanks"))
        links = self.get("/api/v1/messages/%s/links" % mid, auth=basic(BOB)).json()["links"]
        self.assertIn({"url": "https://example.net/p?a=1&b=2", "text": "Pay now", "source": "html"}, links)
        self.assertIn({"url": "https://example.org/t", "text": "", "source": "text"}, links)
        feats = {f["id"]: f for f in self.get("/api/v1/messages/%s/html-check" % mid,
                                               auth=basic(BOB)).json()["features"]}
        for fid in ("css-media-queries", "css-display-flex", "html-svg", "css-position",
                    "css-border-radius", "html-style", "html-srcset", "image-webp"):
            self.assertIn(fid, feats)
        self.assertNotIn("html-script", feats)
        self.assertNotIn("css-float", feats)
        self.assertIn("outlook-windows", feats["css-display-flex"]["unsupported"])
        r = self.get("/api/v1/messages/%s/links" % mid, auth=basic(ALICE))
        self.assertEqual(r.status, 404)


if __name__ == "__main__":
    unittest.main()
