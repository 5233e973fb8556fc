/* NTLM: MS-NLMP 4.2 vectors, malformed-message tables, and full client <->
 * server exchanges against a temporary credential store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/md4.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "sasl/ntlm.h"
#include "sasl/ntlm_msg.h"
#include "store/cred.h"

static void unhex(const char *h, uint8_t *out, size_t n)
{
	assert_int_equal(strlen(h), 2 * n);
	assert_int_equal(sg_unhex(h, out, n), 0);
}

static void assert_hex(const uint8_t *p, size_t n, const char *want)
{
	char h[256];
	assert_true(2 * n < sizeof(h));
	sg_hex(p, n, h);
	assert_string_equal(h, want);
}

static size_t u16(const char *s, uint8_t *out, size_t size)
{
	long n = sg_utf8_to_utf16le(s, strlen(s), out, size);
	assert_true(n >= 0);
	return (size_t)n;
}

/* ---- MS-NLMP 4.2 vectors ---- */

static void test_nt_hash(void **state)
{
	uint8_t h[16];
	assert_int_equal(sg_nt_hash("Password", h), 0);
	assert_hex(h, 16, "a4f49c406510bdcab6824ee7c30fd852"); /* 4.2.2.1.2 */
}

static void test_v2_vectors(void **state)
{
	/* MS-NLMP 4.2.4: User "User", UserDom "Domain", Password "Password",
	 * ServerChallenge 0123456789abcdef, ClientChallenge aa*8, Time 0,
	 * AV pairs NbDomainName "Domain", NbComputerName "Server". */
	uint8_t nt[16], user[32], dom[32], key[16], proof[16], sk[16], sc[8];
	assert_int_equal(sg_nt_hash("Password", nt), 0);
	size_t ul = u16("User", user, sizeof(user)), dl = u16("Domain", dom, sizeof(dom));
	assert_int_equal(sg_ntlm_ntowfv2(nt, user, ul, dom, dl, key), 0);
	assert_hex(key, 16, "0c868a403bfd7a93a3001ef22ef02e3f"); /* 4.2.4.1.1 */

	struct sg_buf ti;
	sg_buf_init(&ti, 1024);
	assert_int_equal(sg_ntlm_av_add_str(&ti, SG_MSV_AV_NB_DOMAIN_NAME, "Domain"), 0);
	assert_int_equal(sg_ntlm_av_add_str(&ti, SG_MSV_AV_NB_COMPUTER_NAME, "Server"), 0);
	assert_int_equal(sg_ntlm_av_add(&ti, SG_MSV_AV_EOL, NULL, 0), 0);
	assert_hex(ti.data, ti.len,
		   "02000c0044006f006d00610069006e00"
		   "01000c005300650072007600650072000000"
		   "0000");
	assert_int_equal(sg_ntlm_av_check(ti.data, ti.len), 0);

	uint8_t blob[256];
	size_t bl = 0;
	static const uint8_t head[8] = {1, 1, 0, 0, 0, 0, 0, 0};
	memcpy(blob, head, 8);
	bl = 8;
	memset(blob + bl, 0, 8); /* time 0 */
	bl += 8;
	memset(blob + bl, 0xaa, 8);
	bl += 8;
	memset(blob + bl, 0, 4);
	bl += 4;
	memcpy(blob + bl, ti.data, ti.len);
	bl += ti.len;
	memset(blob + bl, 0, 4);
	bl += 4;
	unhex("0123456789abcdef", sc, 8);
	assert_int_equal(sg_ntlm_v2_proof(key, sc, blob, bl, proof), 0);
	assert_hex(proof, 16, "68cd0ab851e51c96aabc927bebef6a1c"); /* 4.2.4.2.2 */
	assert_int_equal(sg_ntlm_v2_session_key(key, proof, sk), 0);
	assert_hex(sk, 16, "8de40ccadbc14a82f15cb0ad0de95ca3"); /* 4.2.4.1.2 */

	/* LMv2 (4.2.4.2.1): HMAC-MD5(NTOWFv2, SC || CC) || CC */
	uint8_t cc[8], lm[16];
	memset(cc, 0xaa, 8);
	assert_int_equal(sg_ntlm_v2_proof(key, sc, cc, 8, lm), 0);
	assert_hex(lm, 16, "86c35097ac9cec102554764a57cccc19");

	/* The user name is upper-cased, the domain is not. */
	size_t ul2 = u16("uSeR", user, sizeof(user));
	assert_int_equal(sg_ntlm_ntowfv2(nt, user, ul2, dom, dl, key), 0);
	assert_hex(key, 16, "0c868a403bfd7a93a3001ef22ef02e3f");
	sg_buf_free(&ti);
}

static void test_v1_vectors(void **state)
{
	uint8_t nt[16], sc[8], cc[8], ch[8], resp[24];
	if (!sg_ntlm_des_available())
		skip();
	assert_int_equal(sg_nt_hash("Password", nt), 0);
	unhex("0123456789abcdef", sc, 8);
	/* 4.2.2.2.1 NTLMv1 response */
	assert_int_equal(sg_ntlm_v1_response(nt, sc, resp), 0);
	assert_hex(resp, 24, "67c43011f30298a2ad35ece64f16331c44bdbed927841f94");
	/* 4.2.3.2.2 NTLM2 session response (extended session security) */
	memset(cc, 0xaa, 8);
	assert_int_equal(sg_ntlm_ess_challenge(sc, cc, ch), 0);
	assert_int_equal(sg_ntlm_v1_response(nt, ch, resp), 0);
	assert_hex(resp, 24, "7537f803ae367128ca458204bde7caf81e97ed2683267232");
}

static void test_strings(void **state)
{
	char out[64];
	uint8_t w[64];
	size_t n = u16("J\xc3\xbcrgen\xf0\x9f\x98\x80", w, sizeof(w));
	assert_int_equal(sg_ntlm_utf16_to_utf8(w, n, out, sizeof(out)), 0);
	assert_string_equal(out, "J\xc3\xbcrgen\xf0\x9f\x98\x80");
	assert_int_equal(sg_ntlm_utf16_to_utf8(w, n - 1, out, sizeof(out)), -1); /* odd */
	assert_int_equal(sg_ntlm_utf16_to_utf8(w, n - 2, out, sizeof(out)), -1); /* lone surrogate */
	assert_int_equal(sg_ntlm_utf16_to_utf8(w, n, out, 5), -1);               /* too small */
	static const uint8_t nul[2] = {0, 0};
	assert_int_equal(sg_ntlm_utf16_to_utf8(nul, 2, out, sizeof(out)), -1);
	static const uint8_t latin1[] = {'J', 0xfc, 'r'};
	assert_int_equal(sg_ntlm_oem_to_utf8(latin1, 3, out, sizeof(out)), 0);
	assert_string_equal(out, "J\xc3\xbcr");
	n = u16("alice\xc3\xbc\xd0\xb6", w, sizeof(w));
	sg_ntlm_upper_utf16(w, n);
	assert_int_equal(sg_ntlm_utf16_to_utf8(w, n, out, sizeof(out)), 0);
	assert_string_equal(out, "ALICE\xc3\x9c\xd0\x96");
}

/* ---- malformed messages ---- */

static void put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A valid Unicode AUTHENTICATE: lm 24 @64, nt 48 @88, dom 4 @136, user 10 @140, ws 0. */
static size_t good_authenticate(uint8_t *m)
{
	memset(m, 0, 160);
	memcpy(m, "NTLMSSP", 8);
	put32(m + 8, 3);
	put16(m + 12, 24), put16(m + 14, 24), put32(m + 16, 64);
	put16(m + 20, 48), put16(m + 22, 48), put32(m + 24, 88);
	put16(m + 28, 4), put16(m + 30, 4), put32(m + 32, 136);
	put16(m + 36, 10), put16(m + 38, 10), put32(m + 40, 140);
	put16(m + 44, 0), put16(m + 46, 0), put32(m + 48, 150);
	put16(m + 52, 0), put16(m + 54, 0), put32(m + 56, 150);
	put32(m + 60, SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_NTLM);
	memcpy(m + 136, "D\0O\0", 4);
	memcpy(m + 140, "a\0l\0i\0c\0e\0", 10);
	return 150;
}

static void test_malformed_authenticate(void **state)
{
	uint8_t m[200];
	struct sg_ntlm_authenticate a;
	size_t n = good_authenticate(m);
	assert_int_equal(sg_ntlm_parse_authenticate(m, n, &a), 0);
	assert_int_equal(a.user.len, 10);
	assert_int_equal(a.nt.len, 48);
	assert_int_equal(a.payload_min, 64);

	struct {
		const char *what;
		size_t at; /* byte offset to patch, or SIZE_MAX to only shorten */
		int width;
		uint32_t value;
		size_t len; /* message length, 0 = n */
	} cases[] = {
		{"wrong signature", 0, 1, 'X', 0},
		{"wrong type", 8, 4, 1, 0},
		{"type 2", 8, 4, 2, 0},
		{"truncated header", SIZE_MAX, 0, 0, 63},
		{"only signature", SIZE_MAX, 0, 0, 8},
		{"empty", SIZE_MAX, 0, 0, 1},
		{"user offset past end", 40, 4, 151, 0},
		{"user offset far past end", 40, 4, 0xFFFFFFF0u, 0},
		{"user len+offset past end", 36, 2, 12, 0},
		{"user len+offset overflow", 40, 4, 0xFFFFFFFFu, 0},
		{"nt len past end", 20, 2, 0xFFFF, 0},
		{"nt offset inside header", 24, 4, 8, 0},
		{"user offset inside header", 40, 4, 60, 0},
		{"odd unicode user length", 36, 2, 9, 0},
		{"odd unicode domain length", 28, 2, 3, 0},
		{"lm longer than 24", 12, 2, 26, 0},
		{"empty buffer offset past end", 48, 4, 151, 0},
		{"session key too long", 52, 2, 17, 0},
		{"version flag without version room", 60, 4,
		 SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_VERSION, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t c[200];
		memcpy(c, m, n);
		size_t len = cases[i].len != 0 ? cases[i].len : n;
		if (cases[i].at != SIZE_MAX) {
			if (cases[i].width == 1)
				c[cases[i].at] = (uint8_t)cases[i].value;
			else if (cases[i].width == 2)
				put16(c + cases[i].at, cases[i].value);
			else
				put32(c + cases[i].at, cases[i].value);
		}
		if (sg_ntlm_parse_authenticate(c, len, &a) != -1)
			fail_msg("accepted: %s", cases[i].what);
	}
	/* MaxLen is ignored on receipt (MS-NLMP 2.2.1). */
	put16(m + 38, 0xFFFF);
	assert_int_equal(sg_ntlm_parse_authenticate(m, n, &a), 0);
	/* An empty buffer is never read: any offset up to the end. */
	put32(m + 48, 0);
	assert_int_equal(sg_ntlm_parse_authenticate(m, n, &a), 0);
	/* OEM: odd lengths are fine. */
	put32(m + 60, SG_NTLMSSP_NEGOTIATE_OEM);
	put16(m + 36, 9);
	assert_int_equal(sg_ntlm_parse_authenticate(m, n, &a), 0);
	/* Too big overall. */
	uint8_t *big = calloc(1, SG_NTLM_MSG_MAX + 1);
	memcpy(big, m, n);
	assert_int_equal(sg_ntlm_parse_authenticate(big, SG_NTLM_MSG_MAX + 1, &a), -1);
	free(big);
}

static void test_malformed_negotiate(void **state)
{
	uint8_t m[64];
	struct sg_ntlm_negotiate ng;
	struct sg_buf b;
	sg_buf_init(&b, 64);
	assert_int_equal(sg_ntlm_build_negotiate(SG_NTLMSSP_NEGOTIATE_UNICODE, &b), 0);
	assert_int_equal(b.len, 32);
	memcpy(m, b.data, 32);
	sg_buf_free(&b);
	assert_int_equal(sg_ntlm_parse_negotiate(m, 32, &ng), 0);
	assert_int_equal(ng.flags, SG_NTLMSSP_NEGOTIATE_UNICODE);
	assert_int_equal(sg_ntlm_parse_negotiate(m, 16, &ng), 0); /* minimal form */

	uint8_t c[64];
	/* truncated */
	assert_int_equal(sg_ntlm_parse_negotiate(m, 15, &ng), -1);
	assert_int_equal(sg_ntlm_parse_negotiate(m, 20, &ng), -1);
	assert_int_equal(sg_ntlm_parse_negotiate(m, 0, &ng), -1);
	/* signature, type */
	memcpy(c, m, 32);
	c[7] = 'x';
	assert_int_equal(sg_ntlm_parse_negotiate(c, 32, &ng), -1);
	memcpy(c, m, 32);
	put32(c + 8, 3);
	assert_int_equal(sg_ntlm_parse_negotiate(c, 32, &ng), -1);
	/* domain past the end, overlapping the header, overflowing */
	memcpy(c, m, 32);
	put16(c + 16, 4), put32(c + 20, 30);
	assert_int_equal(sg_ntlm_parse_negotiate(c, 32, &ng), -1);
	put32(c + 20, 0xFFFFFFFEu);
	assert_int_equal(sg_ntlm_parse_negotiate(c, 32, &ng), -1);
	memcpy(c, m, 32);
	memcpy(c + 32, "DOM", 3);
	put16(c + 16, 3), put32(c + 20, 32);
	assert_int_equal(sg_ntlm_parse_negotiate(c, 35, &ng), 0); /* OEM: odd ok */
	assert_int_equal(ng.domain.len, 3);
	assert_int_equal(sg_ntlm_parse_negotiate(c, 34, &ng), -1);
	put32(c + 28, 40); /* empty workstation, offset past end */
	assert_int_equal(sg_ntlm_parse_negotiate(c, 35, &ng), -1);
}

static void test_malformed_challenge(void **state)
{
	struct sg_buf ti, b;
	sg_buf_init(&ti, 256);
	sg_buf_init(&b, 512);
	assert_int_equal(sg_ntlm_av_add_str(&ti, SG_MSV_AV_NB_DOMAIN_NAME, "D"), 0);
	assert_int_equal(sg_ntlm_av_add(&ti, SG_MSV_AV_EOL, NULL, 0), 0);
	uint8_t sc[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tn[2] = {'D', 0};
	struct sg_ntlm_field tnf = {tn, 2}, tif = {ti.data, ti.len};
	assert_int_equal(sg_ntlm_build_challenge(SG_NTLMSSP_NEGOTIATE_UNICODE, sc, &tnf, &tif, &b), 0);
	struct sg_ntlm_challenge ch;
	assert_int_equal(sg_ntlm_parse_challenge(b.data, b.len, &ch), 0);
	assert_memory_equal(ch.server_challenge, sc, 8);
	assert_int_equal(ch.target_info.len, ti.len);

	uint8_t c[512];
	size_t n = b.len;
	/* truncated header and payload */
	assert_int_equal(sg_ntlm_parse_challenge(b.data, 47, &ch), -1);
	assert_int_equal(sg_ntlm_parse_challenge(b.data, n - 1, &ch), -1);
	/* odd unicode target name */
	memcpy(c, b.data, n);
	put16(c + 12, 1);
	assert_int_equal(sg_ntlm_parse_challenge(c, n, &ch), -1);
	/* target info offset past the end */
	memcpy(c, b.data, n);
	put32(c + 44, (uint32_t)n);
	assert_int_equal(sg_ntlm_parse_challenge(c, n, &ch), -1);
	/* an AV pair longer than the target info */
	memcpy(c, b.data, n);
	put16(c + 50 + 2, 200);
	assert_int_equal(sg_ntlm_parse_challenge(c, n, &ch), -1);
	/* target info without MsvAvEOL */
	memcpy(c, b.data, n);
	put16(c + 40, (uint16_t)(ti.len - 4));
	assert_int_equal(sg_ntlm_parse_challenge(c, n, &ch), -1);
	/* wrong type */
	memcpy(c, b.data, n);
	put32(c + 8, 1);
	assert_int_equal(sg_ntlm_parse_challenge(c, n, &ch), -1);
	sg_buf_free(&ti);
	sg_buf_free(&b);
}

/* ---- full exchanges ---- */

struct fixture {
	char path[64];
	struct sg_cred_store *store;
	struct sg_sasl_config cfg;
	struct sg_sasl_server_env env;
};

static int setup(void **state)
{
	struct fixture *f = sg_calloc(1, sizeof(*f));
	sg_strlcpy(f->path, "/tmp/sg_test_ntlm_XXXXXX", sizeof(f->path));
	int fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	unlink(f->path);
	const char *err = NULL;
	if (sg_cred_open(f->path, &f->store, &err) < 0)
		fail_msg("sg_cred_open: %s", err);
	struct sg_cred_params p = {.scram_iterations = 4096, .legacy = SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5};
	assert_int_equal(sg_cred_add(f->store, "alice", "s3cret", &p, &err), 0);
	assert_int_equal(sg_cred_add(f->store, "bob@example.org", "hunter2", &p, &err), 0);
	assert_int_equal(sg_cred_add(f->store, "carol", "pw", &p, &err), 0);
	assert_int_equal(sg_cred_set_disabled(f->store, "carol", true, &err), 0);
	f->env.creds = f->store;
	f->env.cfg = &f->cfg;
	f->env.hostname = "mail.example.org";
	f->env.service = "smtp";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	sg_cred_close(&f->store);
	unlink(f->path);
	char side[80];
	snprintf(side, sizeof(side), "%s-wal", f->path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", f->path);
	unlink(side);
	free(f);
	return 0;
}

/* Hook applied to the AUTHENTICATE before the server sees it. */
typedef void (*tamper_fn)(struct sg_buf *auth);

/* Run client against server. ir: NEGOTIATE as initial response (curl) or
 * bare AUTH NTLM first ("334 ntlm supported"). */
static enum sg_mech_status run(struct fixture *f, const char *login, const char *pw, bool ir,
			       tamper_fn tamper, struct sg_mech_result *res)
{
	const struct sg_mech *m = sg_mech_find("ntlm");
	assert_non_null(m);
	assert_ptr_equal(m, &sg_mech_ntlm);
	struct sg_sasl_client_env cenv = {.authcid = login, .password = pw, .host = "localhost"};
	const char *err = NULL;
	void *cst = m->client_start(&cenv, &err);
	assert_non_null(cst);
	void *sst = m->server_start(&f->env);
	struct sg_buf c2s, s2c;
	sg_buf_init(&c2s, SG_NTLM_MSG_MAX);
	sg_buf_init(&s2c, SG_NTLM_MSG_MAX);
	memset(res, 0, sizeof(*res));
	enum sg_mech_status st;

	assert_int_equal(m->client_step(cst, NULL, 0, &c2s, &err), SG_MECH_CONTINUE);
	if (!ir) {
		st = m->server_step(sst, NULL, 0, &s2c, res);
		assert_int_equal(st, SG_MECH_CONTINUE);
		assert_int_equal(s2c.len, 0); /* the driver sends "334 ntlm supported" */
	}
	st = m->server_step(sst, c2s.data, c2s.len, &s2c, res);
	assert_int_equal(st, SG_MECH_CONTINUE);
	assert_true(s2c.len > 48);
	sg_buf_reset(&c2s);
	assert_int_equal(m->client_step(cst, s2c.data, s2c.len, &c2s, &err), SG_MECH_OK);
	if (tamper != NULL)
		tamper(&c2s);
	sg_buf_reset(&s2c);
	st = m->server_step(sst, c2s.data, c2s.len, &s2c, res);
	assert_int_equal(s2c.len, 0);
	/* Nothing more after the verdict. */
	sg_buf_reset(&c2s);
	assert_int_equal(m->client_step(cst, (const uint8_t *)"x", 1, &c2s, &err), SG_MECH_FAIL);
	m->client_free(cst);
	m->server_free(sst);
	sg_buf_free(&c2s);
	sg_buf_free(&s2c);
	return st;
}

static void test_exchange(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	assert_true((sg_mech_ntlm.flags & SG_MECH_F_FAIL_573) != 0);
	assert_int_equal(sg_mech_ntlm.cred, SG_CRED_NT);

	assert_int_equal(run(f, "alice", "s3cret", true, NULL, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(run(f, "alice", "s3cret", false, NULL, &res), SG_MECH_OK);
	assert_int_equal(run(f, "alice", "wrong", true, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	assert_int_equal(run(f, "mallory", "s3cret", true, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
	assert_int_equal(run(f, "carol", "pw", true, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "disabled");
	/* The user name is upper-cased in NTOWFv2, but the login must match. */
	assert_int_equal(run(f, "ALICE", "s3cret", true, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
}

static void test_login_forms(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	/* DOMAIN\user from the client: domain field "EXAMPLE", user "alice". */
	assert_int_equal(run(f, "EXAMPLE\\alice", "s3cret", true, NULL, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	/* user@domain as a full login */
	assert_int_equal(run(f, "bob@example.org", "hunter2", true, NULL, &res), SG_MECH_OK);
	assert_string_equal(res.login, "bob@example.org");
	/* user@domain whose bare user part is the account */
	assert_int_equal(run(f, "alice@example.org", "s3cret", true, NULL, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(run(f, "EXAMPLE\\alice", "nope", true, NULL, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
}

/* ---- tampering ---- */

static void flip_mic(struct sg_buf *a)
{
	a->data[SG_NTLM_MIC_OFFSET + 3] ^= 1;
}

static void flip_flags(struct sg_buf *a)
{
	/* Strip ALWAYS_SIGN: only the MIC notices. */
	a->data[61] ^= (uint8_t)(SG_NTLMSSP_NEGOTIATE_ALWAYS_SIGN >> 8);
}

static void flip_proof(struct sg_buf *a)
{
	size_t off = sg_ntlm_get32(a->data + 24);
	a->data[off] ^= 0x80;
}

static void user_past_end(struct sg_buf *a)
{
	a->data[40] = 0xF0; /* user offset */
	a->data[41] = 0xFF;
}

static void test_tamper(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	assert_int_equal(run(f, "alice", "s3cret", true, flip_mic, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_mic");
	assert_int_equal(run(f, "alice", "s3cret", true, flip_flags, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "bad_mic");
	assert_int_equal(run(f, "alice", "s3cret", true, flip_proof, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	assert_int_equal(run(f, "alice", "s3cret", true, user_past_end, &res), SG_MECH_MALFORMED);
}

/* ---- server steps with hand-made messages ---- */

static void *start_negotiated(struct fixture *f, uint32_t nflags, struct sg_ntlm_challenge *ch,
			      struct sg_buf *chal)
{
	struct sg_mech_result res;
	memset(&res, 0, sizeof(res));
	void *sst = sg_mech_ntlm.server_start(&f->env);
	struct sg_buf neg;
	sg_buf_init(&neg, 64);
	assert_int_equal(sg_ntlm_build_negotiate(nflags, &neg), 0);
	sg_buf_init(chal, SG_NTLM_MSG_MAX);
	assert_int_equal(sg_mech_ntlm.server_step(sst, neg.data, neg.len, chal, &res), SG_MECH_CONTINUE);
	assert_int_equal(sg_ntlm_parse_challenge(chal->data, chal->len, ch), 0);
	sg_buf_free(&neg);
	return sst;
}

static void test_challenge_content(void **state)
{
	struct fixture *f = *state;
	struct sg_ntlm_challenge ch;
	struct sg_buf chal;
	void *sst = start_negotiated(f, SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_NTLM |
						SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY |
						SG_NTLMSSP_NEGOTIATE_SEAL | SG_NTLMSSP_NEGOTIATE_KEY_EXCH,
				     &ch, &chal);
	uint32_t want = SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_NTLM |
			SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | SG_NTLMSSP_NEGOTIATE_TARGET_INFO;
	assert_int_equal(ch.flags & want, want);
	assert_int_equal(ch.flags & (SG_NTLMSSP_NEGOTIATE_SEAL | SG_NTLMSSP_NEGOTIATE_KEY_EXCH |
				     SG_NTLMSSP_NEGOTIATE_OEM), 0);
	char s[64];
	assert_int_equal(sg_ntlm_utf16_to_utf8(ch.target_name.p, ch.target_name.len, s, sizeof(s)), 0);
	assert_string_equal(s, "SMTPGATE");
	struct sg_ntlm_field v;
	assert_int_equal(sg_ntlm_av_find(ch.target_info.p, ch.target_info.len,
					 SG_MSV_AV_NB_COMPUTER_NAME, &v), 1);
	assert_int_equal(sg_ntlm_utf16_to_utf8(v.p, v.len, s, sizeof(s)), 0);
	assert_string_equal(s, "MAIL");
	assert_int_equal(sg_ntlm_av_find(ch.target_info.p, ch.target_info.len,
					 SG_MSV_AV_DNS_COMPUTER_NAME, &v), 1);
	assert_int_equal(sg_ntlm_utf16_to_utf8(v.p, v.len, s, sizeof(s)), 0);
	assert_string_equal(s, "mail.example.org");
	assert_int_equal(sg_ntlm_av_find(ch.target_info.p, ch.target_info.len,
					 SG_MSV_AV_NB_DOMAIN_NAME, &v), 1);
	assert_int_equal(sg_ntlm_av_find(ch.target_info.p, ch.target_info.len,
					 SG_MSV_AV_TIMESTAMP, &v), 1);
	assert_int_equal(v.len, 8);
	sg_mech_ntlm.server_free(sst);
	sg_buf_free(&chal);

	/* Configured domain, OEM-only client. */
	f->cfg.ntlm_domain = "CORP";
	sst = start_negotiated(f, SG_NTLMSSP_NEGOTIATE_OEM | SG_NTLMSSP_NEGOTIATE_NTLM, &ch, &chal);
	assert_int_equal(ch.flags & (SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_OEM),
			 SG_NTLMSSP_NEGOTIATE_OEM);
	assert_int_equal(ch.target_name.len, 4);
	assert_memory_equal(ch.target_name.p, "CORP", 4);
	f->cfg.ntlm_domain = NULL;
	sg_mech_ntlm.server_free(sst);
	sg_buf_free(&chal);
}

static void test_server_protocol(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	struct sg_buf out;
	sg_buf_init(&out, SG_NTLM_MSG_MAX);
	/* Garbage NEGOTIATE, as initial response and after "ntlm supported". */
	static const uint8_t junk[] = "NTLMSSP\0\x03\0\0\0";
	void *sst = sg_mech_ntlm.server_start(&f->env);
	memset(&res, 0, sizeof(res));
	assert_int_equal(sg_mech_ntlm.server_step(sst, junk, sizeof(junk) - 1, &out, &res),
			 SG_MECH_MALFORMED);
	sg_mech_ntlm.server_free(sst);
	sst = sg_mech_ntlm.server_start(&f->env);
	assert_int_equal(sg_mech_ntlm.server_step(sst, NULL, 0, &out, &res), SG_MECH_CONTINUE);
	assert_int_equal(out.len, 0);
	assert_int_equal(sg_mech_ntlm.server_step(sst, (const uint8_t *)"", 0, &out, &res),
			 SG_MECH_MALFORMED);
	sg_mech_ntlm.server_free(sst);

	/* Each malformed AUTHENTICATE from the table, through the mechanism. */
	uint8_t m[200];
	size_t n = good_authenticate(m);
	size_t bad_at[] = {40, 24, 36};
	uint32_t bad_val[] = {151, 8, 9};
	for (size_t i = 0; i < 3; i++) {
		struct sg_ntlm_challenge ch;
		struct sg_buf chal;
		sst = start_negotiated(f, SG_NTLMSSP_NEGOTIATE_UNICODE, &ch, &chal);
		uint8_t c[200];
		memcpy(c, m, n);
		if (i == 2)
			put16(c + bad_at[i], bad_val[i]);
		else
			put32(c + bad_at[i], bad_val[i]);
		sg_buf_reset(&out);
		assert_int_equal(sg_mech_ntlm.server_step(sst, c, n, &out, &res), SG_MECH_MALFORMED);
		/* and nothing after */
		assert_int_equal(sg_mech_ntlm.server_step(sst, c, n, &out, &res), SG_MECH_MALFORMED);
		sg_mech_ntlm.server_free(sst);
		sg_buf_free(&chal);
	}
	/* A well-formed message with a 48-octet but junk NTLMv2 response. */
	{
		struct sg_ntlm_challenge ch;
		struct sg_buf chal;
		sst = start_negotiated(f, SG_NTLMSSP_NEGOTIATE_UNICODE, &ch, &chal);
		assert_int_equal(sg_mech_ntlm.server_step(sst, m, n, &out, &res), SG_MECH_FAIL);
		assert_string_equal(res.reason, "wrong_password");
		sg_mech_ntlm.server_free(sst);
		sg_buf_free(&chal);
	}
	sg_buf_free(&out);
}

/* An NTLMv1 AUTHENTICATE, as libntlm (msmtp) and Authen::NTLM (swaks) send. */
static enum sg_mech_status run_v1(struct fixture *f, const char *user, const char *pw, bool ess,
				  struct sg_mech_result *res)
{
	struct sg_ntlm_challenge ch;
	struct sg_buf chal, auth;
	uint32_t nf = SG_NTLMSSP_NEGOTIATE_UNICODE | SG_NTLMSSP_NEGOTIATE_NTLM |
		      (ess ? SG_NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY : 0);
	void *sst = start_negotiated(f, nf, &ch, &chal);
	uint8_t hash[16], lm[24], nt[24], c8[8];
	assert_int_equal(sg_nt_hash(pw, hash), 0);
	memset(lm, 0, sizeof(lm));
	memcpy(c8, ch.server_challenge, 8);
	if (ess) {
		memset(lm, 0x5a, 8);
		assert_int_equal(sg_ntlm_ess_challenge(ch.server_challenge, lm, c8), 0);
	}
	assert_int_equal(sg_ntlm_v1_response(hash, c8, nt), 0);
	if (!ess)
		memcpy(lm, nt, 24); /* some clients repeat the NT response */
	uint8_t u[64], d[64];
	size_t ul = u16(user, u, sizeof(u)), dl = u16("SMTPGATE", d, sizeof(d));
	struct sg_ntlm_field lmf = {lm, 24}, ntf = {nt, 24}, df = {d, dl}, uf = {u, ul}, wf = {NULL, 0};
	sg_buf_init(&auth, SG_NTLM_MSG_MAX);
	assert_int_equal(sg_ntlm_build_authenticate(nf, &lmf, &ntf, &df, &uf, &wf, false, &auth, NULL), 0);
	struct sg_buf out;
	sg_buf_init(&out, 64);
	memset(res, 0, sizeof(*res));
	enum sg_mech_status st = sg_mech_ntlm.server_step(sst, auth.data, auth.len, &out, res);
	sg_mech_ntlm.server_free(sst);
	sg_buf_free(&chal);
	sg_buf_free(&auth);
	sg_buf_free(&out);
	return st;
}

static void test_v1_policy(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	assert_int_equal(run_v1(f, "alice", "s3cret", false, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "ntlmv1_refused");
	assert_int_equal(run_v1(f, "alice", "s3cret", true, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "ntlmv1_refused");
	if (!sg_ntlm_des_available())
		skip();
	f->cfg.ntlm_allow_v1 = true;
	assert_int_equal(run_v1(f, "alice", "s3cret", false, &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(run_v1(f, "alice", "s3cret", true, &res), SG_MECH_OK);
	assert_int_equal(run_v1(f, "alice", "bad", false, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	assert_int_equal(run_v1(f, "alice", "bad", true, &res), SG_MECH_FAIL);
	assert_int_equal(run_v1(f, "nobody", "bad", true, &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
	f->cfg.ntlm_allow_v1 = false;
}

static void test_client_rejects_bad_challenge(void **state)
{
	struct sg_sasl_client_env cenv = {.authcid = "alice", .password = "s3cret"};
	const char *err = NULL;
	void *cst = sg_mech_ntlm.client_start(&cenv, &err);
	assert_non_null(cst);
	struct sg_buf out;
	sg_buf_init(&out, SG_NTLM_MSG_MAX);
	assert_int_equal(sg_mech_ntlm.client_step(cst, NULL, 0, &out, &err), SG_MECH_CONTINUE);
	size_t neglen = out.len;
	/* an empty challenge ("334 ntlm supported") resends the NEGOTIATE */
	sg_buf_reset(&out);
	assert_int_equal(sg_mech_ntlm.client_step(cst, (const uint8_t *)"", 0, &out, &err),
			 SG_MECH_CONTINUE);
	assert_int_equal(out.len, neglen);
	uint8_t bad[60];
	memset(bad, 0, sizeof(bad));
	memcpy(bad, "NTLMSSP", 8);
	bad[8] = 2;
	put16(bad + 40, 100), put32(bad + 44, 48); /* target info past the end */
	sg_buf_reset(&out);
	assert_int_equal(sg_mech_ntlm.client_step(cst, bad, sizeof(bad), &out, &err), SG_MECH_MALFORMED);
	sg_mech_ntlm.client_free(cst);
	sg_buf_free(&out);
	/* No password: refused at start. */
	struct sg_sasl_client_env none = {.authcid = "alice"};
	assert_null(sg_mech_ntlm.client_start(&none, &err));
}

/* A hand-made NTLMv2 AUTHENTICATE (no MIC): Unicode or OEM, the domain sent
 * and the domain used in NTOWFv2 chosen separately. */
static enum sg_mech_status run_v2(struct fixture *f, bool oem, const char *user, const char *pw,
				  const char *sent_dom, const char *hash_dom,
				  struct sg_mech_result *res)
{
	struct sg_ntlm_challenge ch;
	struct sg_buf chal, auth, blob;
	uint32_t nf = (oem ? SG_NTLMSSP_NEGOTIATE_OEM : SG_NTLMSSP_NEGOTIATE_UNICODE) |
		      SG_NTLMSSP_NEGOTIATE_NTLM;
	void *sst = start_negotiated(f, nf, &ch, &chal);
	assert_int_equal(ch.flags & (SG_NTLMSSP_NEGOTIATE_OEM | SG_NTLMSSP_NEGOTIATE_UNICODE),
			 oem ? SG_NTLMSSP_NEGOTIATE_OEM : SG_NTLMSSP_NEGOTIATE_UNICODE);
	uint8_t hash[16], key[16];
	assert_int_equal(sg_nt_hash(pw, hash), 0);
	/* names on the wire and as NTOWFv2 sees them */
	uint8_t uw[128], dw[128], u16w[256], d16w[256];
	size_t uwl, dwl, u16l, d16l;
	if (oem) {
		uwl = strlen(user), dwl = strlen(sent_dom);
		memcpy(uw, user, uwl), memcpy(dw, sent_dom, dwl);
		sg_ntlm_oem_to_utf16(uw, uwl, u16w);
		u16l = 2 * uwl;
		d16l = 2 * strlen(hash_dom);
		sg_ntlm_oem_to_utf16((const uint8_t *)hash_dom, strlen(hash_dom), d16w);
	} else {
		uwl = u16(user, uw, sizeof(uw)), dwl = u16(sent_dom, dw, sizeof(dw));
		u16l = u16(user, u16w, sizeof(u16w)), d16l = u16(hash_dom, d16w, sizeof(d16w));
	}
	assert_int_equal(sg_ntlm_ntowfv2(hash, u16w, u16l, d16w, d16l, key), 0);
	sg_buf_init(&blob, 4096);
	static const uint8_t head[28] = {1, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
					 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0};
	uint8_t proof[16], z4[4] = {0, 0, 0, 0};
	assert_int_equal(sg_buf_append(&blob, proof, 16), 0);
	assert_int_equal(sg_buf_append(&blob, head, sizeof(head)), 0);
	assert_int_equal(sg_buf_append(&blob, ch.target_info.p, ch.target_info.len), 0);
	assert_int_equal(sg_buf_append(&blob, z4, 4), 0);
	assert_int_equal(sg_ntlm_v2_proof(key, ch.server_challenge, blob.data + 16, blob.len - 16,
					  blob.data), 0);
	uint8_t lm[24];
	memset(lm, 0, sizeof(lm));
	struct sg_ntlm_field lmf = {lm, 24}, ntf = {blob.data, blob.len}, df = {dw, dwl},
			     uf = {uw, uwl}, wf = {(const uint8_t *)"WS", 2};
	sg_buf_init(&auth, SG_NTLM_MSG_MAX);
	assert_int_equal(sg_ntlm_build_authenticate(nf, &lmf, &ntf, &df, &uf, &wf, false, &auth, NULL), 0);
	struct sg_buf out;
	sg_buf_init(&out, 64);
	memset(res, 0, sizeof(*res));
	enum sg_mech_status st = sg_mech_ntlm.server_step(sst, auth.data, auth.len, &out, res);
	sg_mech_ntlm.server_free(sst);
	sg_buf_free(&chal);
	sg_buf_free(&auth);
	sg_buf_free(&blob);
	sg_buf_free(&out);
	return st;
}

static void test_v2_variants(void **state)
{
	struct fixture *f = *state;
	struct sg_mech_result res;
	/* domain as sent */
	assert_int_equal(run_v2(f, false, "alice", "s3cret", "SMTPGATE", "SMTPGATE", &res), SG_MECH_OK);
	/* NTOWFv2 over the empty domain although one was sent */
	assert_int_equal(run_v2(f, false, "alice", "s3cret", "SMTPGATE", "", &res), SG_MECH_OK);
	/* a third domain matches neither */
	assert_int_equal(run_v2(f, false, "alice", "s3cret", "SMTPGATE", "OTHER", &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "wrong_password");
	/* OEM strings (curl without Unicode) */
	assert_int_equal(run_v2(f, true, "alice", "s3cret", "CORP", "CORP", &res), SG_MECH_OK);
	assert_int_equal(run_v2(f, true, "EXAMPLE\\alice", "s3cret", "", "", &res), SG_MECH_OK);
	assert_string_equal(res.login, "alice");
	assert_int_equal(run_v2(f, true, "alice", "nope", "CORP", "CORP", &res), SG_MECH_FAIL);
	/* unknown and disabled */
	assert_int_equal(run_v2(f, false, "zed", "s3cret", "", "", &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "unknown_account");
	assert_int_equal(run_v2(f, false, "carol", "pw", "", "", &res), SG_MECH_FAIL);
	assert_string_equal(res.reason, "disabled");
}

/* Random damage to real messages: never a crash, never OK. */
static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

static void test_mutations(void **state)
{
	struct fixture *f = *state;
	struct sg_sasl_client_env cenv = {.authcid = "EXAMPLE\\alice", .password = "s3cret"};
	const char *err = NULL;
	void *cst = sg_mech_ntlm.client_start(&cenv, &err);
	struct sg_ntlm_challenge ch;
	struct sg_buf chal, c2s, out;
	sg_buf_init(&c2s, SG_NTLM_MSG_MAX);
	sg_buf_init(&out, SG_NTLM_MSG_MAX);
	assert_int_equal(sg_mech_ntlm.client_step(cst, NULL, 0, &c2s, &err), SG_MECH_CONTINUE);
	void *sst = start_negotiated(f, sg_ntlm_get32(c2s.data + 12), &ch, &chal);
	sg_buf_reset(&c2s);
	assert_int_equal(sg_mech_ntlm.client_step(cst, chal.data, chal.len, &c2s, &err), SG_MECH_OK);
	sg_mech_ntlm.client_free(cst);
	sg_mech_ntlm.server_free(sst);
	uint32_t seed = 42;
	uint8_t m[SG_NTLM_MSG_MAX];
	for (int i = 0; i < 3000; i++) {
		const struct sg_buf *src = (i % 3 == 0) ? &chal : &c2s;
		size_t n = src->len;
		memcpy(m, src->data, n);
		int k = 1 + (int)(lcg(&seed) % 4);
		for (int j = 0; j < k; j++) {
			size_t at = lcg(&seed) % n;
			/* favour the headers, where the lengths and offsets are */
			if (lcg(&seed) % 2 == 0)
				at %= 64;
			m[at] = (uint8_t)lcg(&seed);
		}
		if (lcg(&seed) % 8 == 0)
			n = lcg(&seed) % n;
		struct sg_ntlm_negotiate ng;
		struct sg_ntlm_challenge c;
		struct sg_ntlm_authenticate a;
		(void)sg_ntlm_parse_negotiate(m, n, &ng);
		(void)sg_ntlm_parse_challenge(m, n, &c);
		(void)sg_ntlm_parse_authenticate(m, n, &a);
		if (src == &c2s) {
			struct sg_ntlm_challenge ch2;
			struct sg_buf chal2;
			struct sg_mech_result res;
			memset(&res, 0, sizeof(res));
			sst = start_negotiated(f, SG_NTLMSSP_NEGOTIATE_UNICODE, &ch2, &chal2);
			sg_buf_reset(&out);
			assert_int_not_equal(sg_mech_ntlm.server_step(sst, m, n, &out, &res), SG_MECH_OK);
			sg_mech_ntlm.server_free(sst);
			sg_buf_free(&chal2);
		} else {
			void *c2 = sg_mech_ntlm.client_start(&cenv, &err);
			sg_buf_reset(&out);
			(void)sg_mech_ntlm.client_step(c2, NULL, 0, &out, &err);
			sg_buf_reset(&out);
			(void)sg_mech_ntlm.client_step(c2, m, n, &out, &err);
			sg_mech_ntlm.client_free(c2);
		}
	}
	sg_buf_free(&chal);
	sg_buf_free(&c2s);
	sg_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nt_hash),
		cmocka_unit_test(test_v2_vectors),
		cmocka_unit_test(test_v1_vectors),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_malformed_authenticate),
		cmocka_unit_test(test_malformed_negotiate),
		cmocka_unit_test(test_malformed_challenge),
		cmocka_unit_test_setup_teardown(test_exchange, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_challenge_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_variants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mutations, setup, teardown),
		cmocka_unit_test(test_client_rejects_bad_challenge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
