#!/usr/bin/env python3
"""Write the seed corpora under tests/fuzz/corpus/<target>/ (stdlib only;
the RS256/ES256 JWT seeds also need the openssl command and the test-only
keys in tests/fuzz/keys/, whose public halves are the JWKS compiled into
fuzz_common.c). Input layouts are described at the top of each fuzz_*.c."""
import base64, hashlib, hmac, json, os, struct, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
HS256_KEY = b"smtpgate-fuzz-hs256-key-32-bytes"
FUZZ_NOW = 1767225600  # fuzz_jwt.c


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def split2(a, b=None):
    """sg_fuzz_split layout: len(a) then a then b (b None: a only)."""
    if isinstance(a, str):
        a = a.encode()
    if b is None:
        return bytes([255]) + a if len(a) < 255 else bytes([len(a) & 0xff]) + a
    if isinstance(b, str):
        b = b.encode()
    assert len(a) < 255
    return bytes([len(a)]) + a + b


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ---- cmd: flags (bit0 allow <>, bit1 utf8) + line
cmds = {
    "mail": (1, "MAIL FROM:<alice@example.test> SIZE=1000 BODY=8BITMIME AUTH=alice+2Bx@example.test"),
    "mail_null": (1, "MAIL FROM:<>"),
    "rcpt": (0, "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test"),
    "quoted": (0, 'RCPT TO:<"john \\"q\\" doe"@example.test>'),
    "literal4": (0, "RCPT TO:<postmaster@[192.0.2.1]>"),
    "literal6": (0, "RCPT TO:<x@[IPv6:2001:db8::1]>"),
    "utf8": (3, "MAIL FROM:<j\u00f6s\u00e9@b\u00fccher.example> SMTPUTF8"),
    "shell": (0, "MAIL FROM:<;sleep 66;>"),
    "auth_crlf": (1, "MAIL FROM:<a@b.test> AUTH=+0D+0ARCPT"),
    "ehlo": (0, "EHLO client.example.test"),
    "sourceroute": (0, "RCPT TO:<@a.test,@b.test:c@d.test>"),
}
for n, (f, line) in cmds.items():
    put("cmd", n, bytes([f]) + line.encode())

# ---- data: flags (bit0 normalize_lf, bit1 small max) + chunk seed + stream
NEXT = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nspoofed\r\n.\r\n"
datas = {
    "plain": b"Subject: hi\r\n\r\nhello\r\n.\r\n",
    "stuffed": b"..leading dot\r\n...two\r\n.\r\n",
    "empty": b".\r\n",
    "lf_dot_lf": b"body\n.\n" + NEXT,
    "cr_dot_cr": b"body\r.\r" + NEXT,
    "lf_dot_crlf": b"body\n.\r\n" + NEXT,
    "crlf_dot_lf": b"body\r\n.\n" + NEXT,
    "nul_dot": b"body\r\n\x00.\r\n" + NEXT,
    "dot_nul": b"body\r\n.\x00\r\n" + NEXT,
    "eightbit": "caf\u00e9\r\n.\r\n".encode(),
    "pipelined": b"one\r\n.\r\nQUIT\r\n",
}
for n, s in datas.items():
    put("data", n, bytes([0, 7]) + s)
    put("data", n + "_norm", bytes([1, 3]) + s)
put("data", "toobig", bytes([2 | (8 << 2), 1]) + b"0123456789abcdef\r\n.\r\n")

# ---- b64
for n, s in {"plain": "AGFsaWNlAHMzY3JldA==", "pad1": "YWI=", "pad2": "YQ==",
             "url": "eyJhbGciOiJIUzI1NiJ9", "noncanon": "YR==", "len4n1": "YWJjZ",
             "raw": "\x00\xff\x10binary"}.items():
    put("b64", n, s)

# ---- reply_parse: max_lines byte + stream
replies = {
    "greeting": b"220 mx.example.test ESMTP\r\n",
    "ehlo": b"250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n250 8BITMIME\r\n",
    "auth_fail": b"535 5.7.8 Authentication credentials invalid\r\n",
    "challenge": b"334 \r\n334 PDEyMzQ1QG14PgA=\r\n",
    "bare_lf": b"250-a\n250 b\n",
    "mismatch": b"250-a\r\n251 b\r\n",
    "short": b"25\r\n",
    "bare_code": b"250\r\n221 2.0.0 bye\r\n",
    "nul": b"250 a\x00b\r\n",
    "pipelined": b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
}
for n, s in replies.items():
    put("reply_parse", n, bytes([0x30]) + s)

# ---- config
put("config", "full", """# sample
hostname = mail.example.test
data_dir = /var/lib/smtpgate
max_message_size = 26214400
max_recipients = 100
log_level = info
sender_enforce = yes
ntlm_domain = EXAMPLE
oauth_issuer = https://issuer.example.test
oauth_audience = smtp

[listener mx]
role = mx
listen = 127.0.0.1:2525

[listener submission]
role = submission
listen = 127.0.0.1:2587
require_tls = yes
mechanisms = SCRAM-SHA-256 PLAIN
""")
put("config", "minimal", "hostname = mx.example.test\n")
put("config", "bad", "[listener a]\nrole = nope\nlisten = [::1]:99999\n")
put("config", "ipv6", "[listener s]\nrole = submissions\nlisten = [::1]:4465\n")
put("config", "mechs", "legacy_verifiers = ntlm, cram-md5\nauth_mechanisms = SCRAM-SHA-256 PLAIN NTLM\n"
    "channel_binding = no\n[listener s]\nrole = submission\nchannel_binding = yes\n"
    "[listener t]\nauth_mechanisms = SCRAM-SHA-1-PLUS,CRAM-MD5\n")

# ---- jwt: flags + token
def jws(header, claims, alg_sign):
    h = b64u(json.dumps(header, separators=(",", ":")).encode())
    c = b64u(json.dumps(claims, separators=(",", ":")).encode())
    si = (h + "." + c).encode()
    return h + "." + c + "." + b64u(alg_sign(si))


def hs(si):
    return hmac.new(HS256_KEY, si, hashlib.sha256).digest()


def openssl_sign(key, si):
    p = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=si,
                       capture_output=True, check=True)
    return p.stdout


def der_to_raw(der):
    # SEQUENCE { INTEGER r, INTEGER s } -> r || s (32 octets each)
    assert der[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        ln = der[i + 1]
        v = der[i + 2:i + 2 + ln].lstrip(b"\x00")
        out += v.rjust(32, b"\x00")
        i += 2 + ln
    return out


claims = {"sub": "alice", "email": "alice@example.test", "iss": "https://issuer.example.test",
          "aud": "smtp", "iat": FUZZ_NOW - 10, "exp": FUZZ_NOW + 3600}
put("jwt", "hs256", b"\x00" + jws({"alg": "HS256", "typ": "JWT"}, claims, hs).encode())
put("jwt", "hs256_email", b"\x01" + jws({"alg": "HS256"}, claims, hs).encode())
put("jwt", "hs256_aud_array", b"\x00" + jws({"alg": "HS256"}, dict(claims, aud=["x", "smtp"]), hs).encode())
put("jwt", "expired", b"\x00" + jws({"alg": "HS256"}, dict(claims, exp=FUZZ_NOW - 3600), hs).encode())
put("jwt", "none", b"\x02" + (b64u(b'{"alg":"none"}') + "." + b64u(json.dumps(claims).encode()) + ".").encode())
put("jwt", "crit", b"\x00" + jws({"alg": "HS256", "crit": ["x"]}, claims, hs).encode())
# sign mode (bit 2): header NUL claims, signed by the target
for n, (h, c) in {"sign_basic": ({"alg": "HS256"}, claims),
                  "sign_aud_array": ({"alg": "HS256", "typ": "JWT"}, dict(claims, aud=["a", "smtp"], nbf=FUZZ_NOW)),
                  "sign_float_exp": ({"alg": "HS256"}, dict(claims, exp=1.8e9)),
                  "sign_no_exp": ({"alg": "HS256"}, {k: v for k, v in claims.items() if k != "exp"}),
                  "sign_email": ({"alg": "HS256"}, dict(claims, email="Alice@Example.TEST")),
                  # issue 10 item 22: dates whose difference with "now" overflowed
                  "sign_exp_int64_min": ({"alg": "HS256"}, dict(claims, exp=-2**63)),
                  "sign_nbf_negative": ({"alg": "HS256"}, dict(claims, nbf=-1)),
                  "sign_iat_int64_max": ({"alg": "HS256"}, dict(claims, iat=2**63 - 1))}.items():
    put("jwt", n, bytes([4 | (1 if "email" in n else 0)]) + json.dumps(h).encode() + b"\x00" + json.dumps(c).encode())
keys = os.path.join(HERE, "keys")
if os.path.exists(os.path.join(keys, "rsa.pem")):
    put("jwt", "rs256", b"\x00" + jws({"alg": "RS256", "kid": "rsa1"}, claims,
                                      lambda si: openssl_sign(os.path.join(keys, "rsa.pem"), si)).encode())
    put("jwt", "es256", b"\x00" + jws({"alg": "ES256", "kid": "ec1"}, claims,
                                      lambda si: der_to_raw(openssl_sign(os.path.join(keys, "ec.pem"), si))).encode())
    put("jwt", "rs_as_hs", b"\x00" + jws({"alg": "HS256", "kid": "rsa1"}, claims, hs).encode())

# ---- mechanisms. Raw mode: flags, then split2(msg1, msg2). Pair: 0x80|bits, step, patch.
PAIR_CLEAN = b"\x00"
def pair(flags, step=0, patch=b""):
    return bytes([0x80 | flags, step]) + patch

put("mech_plain", "ok", b"\x00" + split2(b"\x00alice\x00s3cret"))
put("mech_plain", "authzid", b"\x00" + split2(b"alice\x00alice\x00s3cret"))
put("mech_plain", "wrong", b"\x00" + split2(b"\x00alice\x00wrong"))
put("mech_plain", "nofirst", b"\x01" + split2(b"\x00alice\x00s3cret"))
put("mech_plain", "many_nuls", b"\x00" + split2(b"\x00" * 40 + b"alice\x00s3cret"))
put("mech_plain", "pair", pair(0))
put("mech_plain", "pair_patch", pair(0, 0, b"\x00\x00\x01"))

put("mech_login", "ir", b"\x00" + split2("alice", "s3cret"))
put("mech_login", "prompt", b"\x01" + split2("alice", "s3cret"))
put("mech_login", "wrong", b"\x01" + split2("alice", "nope"))
put("mech_login", "pair", pair(0))

put("mech_cram_md5", "resp", b"\x01" + split2("alice 0123456789abcdef0123456789abcdef"))
put("mech_cram_md5", "ir", b"\x00" + split2("alice 0123456789abcdef0123456789abcdef"))
put("mech_cram_md5", "pair", pair(0))
put("mech_cram_md5", "pair_patch", pair(0, 0, b"\x00" * 10 + b"\x01"))

# SCRAM: RFC 7677 section 3 and RFC 5802 section 5 messages (user "user"),
# and the same shape for alice; %N = the server's nonce.
put("mech_scram", "rfc7677", b"\x00" + split2(
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
put("mech_scram", "rfc5802", b"\x02" + split2(
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="))
put("mech_scram", "alice_nonce", b"\x00" + split2(
    "n,,n=alice,r=rOprNGfwEbeRWgbNEkqO",
    "c=biws,r=%N,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
put("mech_scram", "authzid", b"\x00" + split2(
    "n,a=alice,n=alice,r=abc", "c=bixhPWFsaWNlLA==,r=%N,p=AAAA"))
cb = base64.b64encode(b"p=tls-exporter,," + b"fuzz-channel-binding-data-32oct\x00").decode()
put("mech_scram", "plus", b"\x04" + split2(
    "p=tls-exporter,,n=alice,r=rOprNGfwEbeRWgbNEkqO", "c=" + cb + ",r=%N,p=AAAA"))
put("mech_scram", "downgrade_y", b"\x00" + split2("y,,n=alice,r=abc"))
put("mech_scram", "ext_m", b"\x00" + split2("n,,m=ext,n=alice,r=abc"))
put("mech_scram", "escaped", b"\x00" + split2("n,,n=al=2Cice=3D,r=abc"))
for i, name in enumerate(["sha256", "sha1", "sha256_plus", "sha1_plus"]):
    put("mech_scram", "pair_" + name, pair(i << 1))
    put("mech_scram", "pair_" + name + "_final", pair(i << 1, 1, b"\x00" * 12 + b"\x04"))

put("mech_xoauth2", "ok", b"\x00" + split2("user=alice\x01auth=Bearer %T\x01\x01"))
put("mech_xoauth2", "bad_token", b"\x00" + split2("user=alice\x01auth=Bearer abc.def.ghi\x01\x01", ""))
put("mech_xoauth2", "wrong_user", b"\x00" + split2("user=bob\x01auth=Bearer %T\x01\x01"))
put("mech_xoauth2", "pair", pair(0))
put("mech_oauthbearer", "ok", b"\x00" + split2(
    "n,a=alice,\x01host=mx.example.test\x01port=587\x01auth=Bearer %T\x01\x01"))
put("mech_oauthbearer", "no_authzid", b"\x00" + split2("n,,\x01auth=Bearer %T\x01\x01"))
put("mech_oauthbearer", "error_ack", b"\x00" + split2("n,,\x01auth=Bearer x.y.z\x01\x01", "\x01"))
put("mech_oauthbearer", "dup_keys", b"\x00" + split2("n,,\x01auth=Bearer %T\x01auth=x\x01\x01"))
put("mech_oauthbearer", "pair", pair(0))

# NTLM: NEGOTIATE (curl's), AUTHENTICATE with an NTLMv2 blob and NTLMv1.
NTLMSSP = b"NTLMSSP\x00"
negotiate = NTLMSSP + struct.pack("<II", 1, 0xa2088207) + struct.pack("<HHI", 0, 0, 0) * 2 + b"\x0a\x00\x63\x45\x00\x00\x00\x0f"  # VERSION


def authenticate(nt_resp, lm_resp=b"\x00" * 24, domain="EXAMPLE", user="alice",
                 ws="WS", flags=0xa2888205):
    d, u, w = (s.encode("utf-16-le") for s in (domain, user, ws))
    off = 64 + 8 + 16  # header, version, MIC
    fields = [lm_resp, nt_resp, d, u, w, b""]
    hdr = NTLMSSP + struct.pack("<I", 3)
    body = b""
    for f in fields:
        hdr += struct.pack("<HHI", len(f), len(f), off + len(body))
        body += f
    hdr += struct.pack("<I", flags)
    return hdr + b"\x06\x01\xb1\x1d\x00\x00\x00\x0f" + b"\x00" * 16 + body


av = (struct.pack("<HH", 2, 14) + "EXAMPLE".encode("utf-16-le") +
      struct.pack("<HH", 7, 8) + b"\x00" * 8 + struct.pack("<HHI", 6, 4, 2) + struct.pack("<HH", 0, 0))
blob = b"\x01\x01\x00\x00\x00\x00\x00\x00" + b"\x00" * 8 + b"\xaa" * 8 + b"\x00" * 4 + av + b"\x00" * 4
auth2 = authenticate(b"\x11" * 16 + blob)
auth1 = authenticate(b"\x22" * 24, flags=0xa2888205)
assert len(negotiate) < 255
put("mech_ntlm", "v2", b"\x00" + split2(negotiate, auth2))
put("mech_ntlm", "v1_allowed", b"\x02" + split2(negotiate, auth1))
put("mech_ntlm", "v1_refused", b"\x00" + split2(negotiate, auth1))
put("mech_ntlm", "bare_auth", b"\x01" + split2(negotiate, auth2))
bad = bytearray(auth2)
struct.pack_into("<HHI", bad, 20, 0xffff, 0xffff, 0xfffffff0)  # NtChallengeResponse out of range
put("mech_ntlm", "bad_offset", b"\x00" + split2(negotiate, bytes(bad)))
put("mech_ntlm", "pair", pair(0))
put("mech_ntlm", "pair_auth", pair(0, 1, b"\x00" * 30 + b"\x01"))

put("mech_external", "empty", b"\x00" + split2(""))
put("mech_external", "authzid", b"\x00" + split2("alice"))
put("mech_external", "wrong_authzid", b"\x00" + split2("bob"))
put("mech_external", "no_cert", b"\x02" + split2(""))
put("mech_external", "address", b"\x04" + split2(""))
put("mech_external", "nul", b"\x00" + split2("al\x00ice"))
put("mech_external", "pair", pair(0))
put("mech_external", "pair_authzid", pair(8))
# GSSAPI (fuzz_mech_gssapi.c): flags + the layer message plaintext (bit 0 set:
# fed without wrapping; bit 1 set: the first accept token instead).
for n, v in {"none": b"\x00\x01\x00\x00\x00", "authzid": b"\x00\x01\x00\x00\x00alice",
             "authzid_realm": b"\x04\x01\x00\x00\x00alice", "maxbuf": b"\x00\x01\x01\x00\x00",
             "integ_layer": b"\x00\x02\x00\x10\x00", "short": b"\x00\x01\x00",
             "nul_authzid": b"\x00\x01\x00\x00\x00al\x00ice", "other_authzid": b"\x00\x01\x00\x00\x00bob",
             "raw_layer": b"\x01\x05\x04\x00\xff\x00\x0c\x00\x00",
             "raw_token": b"\x02\x60\x82\x02\x00\x06\x09\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01\x00"}.items():
    put("mech_gssapi", n, v)
# DKIM (fuzz_dkim.c): flags (bit 0: RSA key, bit 1: canonicalisation only) + message.
for n, v in {"simple": b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n",
             "folded": b"From: \"A\"\r\n <a@example.org>\r\nTo: b@x,\r\n\tc@x\r\nSubject:  a \t b  \r\n"
                       b"List-Id: <l.x>\r\nTo: d@x\r\n\r\n\r\n x  \t y \r\n\r\n\r\nlast",
             "no_body": b"From: a@example.org",
             "no_from": b"To: b@x\r\n\r\nFrom: in the body\r\n",
             "two_from": b"From: a@x\r\nFROM : b@x\r\n\r\n",
             "bare_lf": b"From: a@x\nSubject: s\n\nl1 \nl2\r\r\n\n",
             "garbage": b"no colon line\r\n continuation\r\nFrom: a@x\r\n\r\n\x00\xff\r"}.items():
    put("dkim", n, b"\x00" + v)
put("dkim", "rsa", b"\x01From: a@example.org\r\nSubject: rsa\r\n\r\nbody\r\n")
put("dkim", "canon_only", b"\x02B : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
# DSN (fuzz_dsn.c): flags (bit 0 RET=HDRS, bits 1-2 recipients - 1) + NUL-separated fields
# reporting_mta, envid, from, postmaster, orcpt, final_rcpt, action, status, remote_mta,
# diagnostic, then the original message.
ORIG = b"From: a@example.org\r\nSubject: s\r\n\r\nbody\r\n"
def dsn(flags, *fields):
    return bytes([flags]) + b"\x00".join(f.encode() if isinstance(f, str) else f for f in fields)
put("dsn", "failed", dsn(0, "mx.example.org", "ENV+2B1", "a@example.org", "MAILER-DAEMON@mx",
                         "rfc822;b+2Bx@example.net", "b+x@example.net", "failed", "5.1.1",
                         "smarthost.example.net", "smtp; 550 5.1.1 unknown", ORIG))
put("dsn", "delayed_hdrs", dsn(3, "mx", "", "a@x", "pm@mx", "", "b@x", "delayed", "4.4.1", "",
                               "451 later", ORIG))
put("dsn", "utf8", dsn(4, "mx", "", "δ@παράδειγμα", "pm@mx", "utf-8;用户@例子", "用户@例子.广告",
                       "failed", "5.1.1", "h", "smtp; 550", "Subject: Grüße\r\n\r\nx"))
put("dsn", "inject", dsn(0, "mx\r\nBcc: x", "e\r\n", "a@x\r\nBcc: v@x", "pm\n", "x\r\n--b",
                         "b\r\n\r\n--=_sg-dsn-", "failed", "5.0.0", "r\rX", "d\r\nX-Evil: 1",
                         ORIG))
put("dsn", "bad_status", dsn(0, "mx", "", "a@x", "pm", "", "b@x", "failed", "5.1", "", "", ""))
put("dsn", "null_sender", dsn(0, "mx", "", "", "pm", "", "b@x", "failed", "5.1.1", "", "", ""))
# PROXY protocol header (fuzz_proxy.c): what the load balancer sends first.
PP2_SIG = bytes([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])


def pp2(vc, fam, body):
    return PP2_SIG + bytes([vc, fam]) + struct.pack(">H", len(body)) + body


for n, v in {"v1_tcp4": b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nEHLO x\r\n",
             "v1_tcp6": b"PROXY TCP6 2001:db8::1 ::1 65535 25\r\n",
             "v1_unknown": b"PROXY UNKNOWN\r\n",
             "v1_unknown_long": b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n",
             "v2_tcp4_tlv": pp2(0x21, 0x11, bytes([127, 0, 0, 5, 127, 0, 0, 1, 0x9c, 0x40, 0, 25, 1, 0, 2])
                                + b"h2" + bytes([4, 0, 0])) + b"\x16\x03\x01",
             "v2_tcp6": pp2(0x21, 0x21, bytes(15) + b"\x01" + bytes(15) + b"\x01" + b"\x01\x00\x00\x19"),
             "v2_local": pp2(0x20, 0x00, b""),
             "v2_unix": pp2(0x21, 0x31, bytes(216)),
             "v2_trunc_tlv": pp2(0x21, 0x11, bytes(12) + b"\x01\x00\x09ab")}.items():
    put("proxy", n, v)
print("seeds written under", CORPUS)
