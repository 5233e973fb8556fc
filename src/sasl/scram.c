/*
 * scram.c: the SCRAM engine; see scram.h for the contract.
 *
 * RFC 5802 section 3:
 *   SaltedPassword  := Hi(Normalize(password), salt, i)
 *   ClientKey       := HMAC(SaltedPassword, "Client Key")
 *   StoredKey       := H(ClientKey)
 *   AuthMessage     := client-first-message-bare + "," +
 *                      server-first-message + "," +
 *                      client-final-message-without-proof
 *   ClientSignature := HMAC(StoredKey, AuthMessage)
 *   ClientProof     := ClientKey XOR ClientSignature
 *   ServerKey       := HMAC(SaltedPassword, "Server Key")
 *   ServerSignature := HMAC(ServerKey, AuthMessage)
 */
#include "sasl/scram.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/b64.h"
#include "core/secret.h"
#include "core/util.h"

#define SCRAM_MSG_MAX 4096
#define SCRAM_AUTH_MESSAGE_MAX (3 * SCRAM_MSG_MAX)

/* Server and client state values. */
enum { SCRAM_S_FIRST = 0, SCRAM_S_MAKE_FIRST = 1, SCRAM_S_DONE = 2, SCRAM_S_FINAL = 3 };
enum { SCRAM_C_START = 0, SCRAM_C_SERVER_FIRST = 1, SCRAM_C_SERVER_FINAL = 2, SCRAM_C_DONE = 3 };

const char *sg_scram_test_server_nonce;
const char *sg_scram_test_client_nonce;

size_t sg_scram_hash_len(enum sg_scram_hash h)
{
	return h == SG_SCRAM_H_SHA1 ? 20 : 32;
}

static const EVP_MD *scram_md(enum sg_scram_hash h)
{
	return h == SG_SCRAM_H_SHA1 ? EVP_sha1() : EVP_sha256();
}

static void scram_hmac(enum sg_scram_hash h, const uint8_t *key, size_t klen, const void *data,
		       size_t n, uint8_t *out)
{
	unsigned outlen = 0;
	if (HMAC(scram_md(h), key, (int)klen, data, n, out, &outlen) == NULL ||
	    outlen != sg_scram_hash_len(h))
		sg_fatal("scram: HMAC failed");
}

static void scram_hash(enum sg_scram_hash h, const uint8_t *in, size_t n, uint8_t *out)
{
	unsigned outlen = 0;
	if (EVP_Digest(in, n, out, &outlen, scram_md(h), NULL) != 1 ||
	    outlen != sg_scram_hash_len(h))
		sg_fatal("scram: digest failed");
}

/* Printable nonce without ',' (RFC 5802 section 7 "printable"): base64 of
 * 18 random bytes, 24 characters. */
static void scram_make_nonce(char *out, size_t size, const char *fixed)
{
	if (fixed != NULL) {
		sg_strlcpy(out, fixed, size);
		return;
	}
	uint8_t rnd[18];
	sg_random(rnd, sizeof(rnd));
	char tmp[SG_B64_ENCODED_LEN(18) + 1];
	sg_b64_encode(rnd, sizeof(rnd), tmp);
	sg_strlcpy(out, tmp, size);
}

/* printable = %x21-2B / %x2D-7E */
static bool scram_nonce_ok(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x21 || c > 0x7e || c == ',')
			return false;
	}
	return true;
}

/* saslname = 1*(value-safe-char / "=2C" / "=3D") (RFC 5802 section 7);
 * unescape into out (1..SG_LOGIN_MAX octets). */
static int scram_unescape(const char *in, size_t n, char *out, size_t outsize)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c == ',' || c == '\0')
			return -1;
		if (c == '=') {
			if (n - i < 3)
				return -1;
			if (in[i + 1] == '2' && (in[i + 2] == 'C'))
				c = ',';
			else if (in[i + 1] == '3' && (in[i + 2] == 'D'))
				c = '=';
			else
				return -1;
			i += 2;
		}
		if (o + 1 >= outsize)
			return -1;
		out[o++] = c;
	}
	if (o == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

static int scram_escape(const char *in, struct sg_buf *out)
{
	for (const char *p = in; *p != '\0'; p++) {
		int r;
		if (*p == ',')
			r = sg_buf_append_str(out, "=2C");
		else if (*p == '=')
			r = sg_buf_append_str(out, "=3D");
		else
			r = sg_buf_append(out, p, 1);
		if (r < 0)
			return -1;
	}
	return 0;
}

/* Length of the attribute value starting at p: up to ',' or the end. */
static size_t scram_value_len(const char *p)
{
	const char *e = strchr(p, ',');
	return e != NULL ? (size_t)(e - p) : strlen(p);
}

static bool scram_cb_name_ok(const char *p, size_t n)
{
	if (n == 0 || n > SG_SCRAM_CB_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* Copy a wire message into a NUL-terminated string; no NUL inside. */
static char *scram_copy_msg(const uint8_t *in, size_t inlen)
{
	if (in == NULL || inlen == 0 || inlen > SCRAM_MSG_MAX || memchr(in, '\0', inlen) != NULL)
		return NULL;
	return sg_strndup((const char *)in, inlen);
}

/* ---- server ---- */

void sg_scram_server_init(struct sg_scram_server *s, enum sg_scram_hash h,
			  const struct sg_scram_cb *cb)
{
	memset(s, 0, sizeof(*s));
	s->hash = h;
	s->hlen = sg_scram_hash_len(h);
	if (cb != NULL)
		s->cb = *cb;
	sg_buf_init(&s->auth_message, SCRAM_AUTH_MESSAGE_MAX);
}

void sg_scram_server_clear(struct sg_scram_server *s)
{
	sg_buf_free(&s->auth_message);
	sg_wipe(s, sizeof(*s));
}

enum sg_mech_status sg_scram_server_parse_first(struct sg_scram_server *s, const uint8_t *in,
						size_t inlen, const char **reason_r)
{
	enum sg_mech_status ret = SG_MECH_MALFORMED;
	*reason_r = "malformed";
	if (s->state != SCRAM_S_FIRST)
		return SG_MECH_MALFORMED;
	s->state = SCRAM_S_DONE;
	char *msg = scram_copy_msg(in, inlen);
	if (msg == NULL)
		return SG_MECH_MALFORMED;
	char *p = msg;
	char cb_name[SG_SCRAM_CB_NAME_MAX + 1] = "";

	/* gs2-cbind-flag = ("p=" cb-name) / "n" / "y" */
	if ((p[0] == 'n' || p[0] == 'y') && p[1] == ',') {
		s->gs2_flag = p[0];
		p += 2;
	} else if (p[0] == 'p' && p[1] == '=') {
		size_t n = scram_value_len(p + 2);
		if (!scram_cb_name_ok(p + 2, n) || p[2 + n] != ',')
			goto out;
		memcpy(cb_name, p + 2, n);
		cb_name[n] = '\0';
		s->gs2_flag = 'p';
		p += 2 + n + 1;
	} else {
		goto out;
	}
	/* [ authzid ] "," with authzid = "a=" saslname */
	if (p[0] == 'a' && p[1] == '=') {
		size_t n = scram_value_len(p + 2);
		if (p[2 + n] != ',' ||
		    scram_unescape(p + 2, n, s->authzid, sizeof(s->authzid)) < 0) {
			*reason_r = "invalid_username_encoding";
			goto out;
		}
		p += 2 + n;
	}
	if (p[0] != ',')
		goto out;
	p++;
	size_t gs2_len = (size_t)(p - msg);
	if (gs2_len >= sizeof(s->gs2_header))
		goto out;
	memcpy(s->gs2_header, msg, gs2_len);
	s->gs2_header[gs2_len] = '\0';

	/* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
	const char *bare = p;
	if (p[0] == 'm' && p[1] == '=') {
		/* RFC 5802 section 7: m= is reserved; we support no extension. */
		*reason_r = "extensions_not_supported";
		goto out;
	}
	if (p[0] != 'n' || p[1] != '=')
		goto out;
	size_t n = scram_value_len(p + 2);
	if (p[2 + n] != ',' || scram_unescape(p + 2, n, s->user, sizeof(s->user)) < 0) {
		*reason_r = "invalid_username_encoding";
		goto out;
	}
	p += 2 + n + 1;
	if (p[0] != 'r' || p[1] != '=')
		goto out;
	n = scram_value_len(p + 2);
	if (n > SG_SCRAM_NONCE_MAX || !scram_nonce_ok(p + 2, n))
		goto out;
	memcpy(s->nonce, p + 2, n);
	s->nonce[n] = '\0';
	s->cnonce_len = n;
	/* Extensions after the nonce are ignored. */

	/* Channel binding policy, RFC 5802 section 6. */
	if (s->gs2_flag == 'p' && !s->cb.plus) {
		*reason_r = "cb_not_supported"; /* p= on a non-PLUS mechanism */
		goto out;
	}
	ret = SG_MECH_FAIL;
	if (s->cb.plus && s->gs2_flag != 'p') {
		*reason_r = "cb_required";
		goto out;
	}
	if (s->gs2_flag == 'p' &&
	    (s->cb.type == NULL || s->cb.data == NULL || strcmp(cb_name, s->cb.type) != 0)) {
		*reason_r = "cb_unsupported_type";
		goto out;
	}
	/* "If the flag is set to "y" and the server supports channel binding,
	 * the server MUST fail authentication": a downgrade attack. */
	if (s->gs2_flag == 'y' && s->cb.plus_offered) {
		*reason_r = "cb_downgrade";
		goto out;
	}
	if (s->authzid[0] != '\0' && strcmp(s->authzid, s->user) != 0) {
		*reason_r = "bad_authzid";
		goto out;
	}
	if (sg_buf_append_str(&s->auth_message, bare) < 0)
		goto out;
	s->state = SCRAM_S_MAKE_FIRST;
	*reason_r = NULL;
	ret = SG_MECH_OK;
out:
	free(msg);
	return ret;
}

int sg_scram_server_make_first(struct sg_scram_server *s, const uint8_t *salt, size_t salt_len,
			       unsigned iterations, const uint8_t *stored_key,
			       const uint8_t *server_key, struct sg_buf *out)
{
	if (s->state != SCRAM_S_MAKE_FIRST || salt_len == 0 || salt_len > SG_SCRAM_SALT_MAX || iterations == 0)
		return -1;
	char snonce[SG_SCRAM_NONCE_MAX + 1];
	scram_make_nonce(snonce, sizeof(snonce), sg_scram_test_server_nonce);
	size_t sn = strlen(snonce);
	if (!scram_nonce_ok(snonce, sn) || s->cnonce_len + sn >= sizeof(s->nonce))
		return -1;
	memcpy(s->nonce + s->cnonce_len, snonce, sn + 1);
	memcpy(s->stored_key, stored_key, s->hlen);
	memcpy(s->server_key, server_key, s->hlen);

	char salt64[SG_B64_ENCODED_LEN(SG_SCRAM_SALT_MAX) + 1];
	sg_b64_encode(salt, salt_len, salt64);
	size_t start = out->len;
	if (sg_buf_printf(out, "r=%s,s=%s,i=%u", s->nonce, salt64, iterations) < 0)
		return -1;
	if (sg_buf_append_str(&s->auth_message, ",") < 0 ||
	    sg_buf_append(&s->auth_message, out->data + start, out->len - start) < 0 ||
	    sg_buf_append_str(&s->auth_message, ",") < 0)
		return -1;
	s->state = SCRAM_S_FINAL;
	return 0;
}

enum sg_mech_status sg_scram_server_final(struct sg_scram_server *s, const uint8_t *in,
					  size_t inlen, struct sg_buf *out, const char **reason_r)
{
	enum sg_mech_status ret = SG_MECH_MALFORMED;
	*reason_r = "malformed";
	if (s->state != SCRAM_S_FINAL)
		return SG_MECH_MALFORMED;
	s->state = SCRAM_S_DONE;
	char *msg = scram_copy_msg(in, inlen);
	uint8_t *cbuf = NULL;
	size_t cbuf_size = 0;
	uint8_t proof[SG_SCRAM_KEY_MAX + 3], sig[SG_SCRAM_KEY_MAX], key[SG_SCRAM_KEY_MAX],
		h[SG_SCRAM_KEY_MAX];
	if (msg == NULL)
		return SG_MECH_MALFORMED;

	/* client-final-message = channel-binding "," nonce ["," extensions] "," proof */
	char *pp = strstr(msg, ",p=");
	if (pp == NULL)
		goto out;
	for (char *q = strstr(pp + 1, ",p="); q != NULL; q = strstr(q + 1, ",p="))
		pp = q;
	*pp = '\0'; /* msg is now client-final-message-without-proof */
	const char *proof64 = pp + 3;
	size_t plen64 = strlen(proof64);
	size_t plen = 0;
	if (plen64 != SG_B64_ENCODED_LEN(s->hlen) ||
	    sg_b64_decode(proof64, plen64, proof, &plen) < 0 || plen != s->hlen)
		goto out;
	if (msg[0] != 'c' || msg[1] != '=')
		goto out;
	size_t clen64 = scram_value_len(msg + 2);
	const char *rp = msg + 2 + clen64;
	if (rp[0] != ',' || rp[1] != 'r' || rp[2] != '=')
		goto out;
	rp += 3;
	size_t rlen = scram_value_len(rp);
	if (rlen != strlen(s->nonce) || memcmp(rp, s->nonce, rlen) != 0) {
		*reason_r = "nonce_mismatch";
		goto out;
	}
	cbuf_size = SG_B64_DECODED_MAX(clen64) + 1;
	cbuf = sg_malloc(cbuf_size);
	size_t cblen = 0;
	if (sg_b64_decode(msg + 2, clen64, cbuf, &cblen) < 0)
		goto out;

	/* c= is base64(gs2-header [ cbind-data ]), RFC 5802 section 7 */
	ret = SG_MECH_FAIL;
	size_t glen = strlen(s->gs2_header);
	size_t extra = s->gs2_flag == 'p' ? s->cb.len : 0;
	if (cblen != glen + extra || memcmp(cbuf, s->gs2_header, glen) != 0 ||
	    (extra > 0 && !sg_ct_eq(cbuf + glen, s->cb.data, extra))) {
		*reason_r = "cb_mismatch";
		if (sg_buf_append_str(out, "e=channel-bindings-dont-match") < 0)
			ret = SG_MECH_MALFORMED;
		goto out;
	}

	if (sg_buf_append_str(&s->auth_message, msg) < 0) {
		ret = SG_MECH_MALFORMED;
		goto out;
	}
	const uint8_t *am = s->auth_message.data;
	size_t amlen = s->auth_message.len;
	scram_hmac(s->hash, s->stored_key, s->hlen, am, amlen, sig);
	for (size_t i = 0; i < s->hlen; i++)
		key[i] = proof[i] ^ sig[i]; /* ClientKey */
	scram_hash(s->hash, key, s->hlen, h);
	if (!sg_ct_eq(h, s->stored_key, s->hlen)) {
		/* No "e=invalid-proof": RFC 5802 section 7 allows the server to
		 * end the exchange with a failure instead, which is what Dovecot
		 * and Cyrus do; GNU SASL (msmtp, gsasl) cannot parse e= and
		 * would hide the 535 from the user. out stays empty. */
		*reason_r = "wrong_password";
		goto out;
	}
	scram_hmac(s->hash, s->server_key, s->hlen, am, amlen, sig); /* ServerSignature */
	char v64[SG_B64_ENCODED_LEN(SG_SCRAM_KEY_MAX) + 1];
	sg_b64_encode(sig, s->hlen, v64);
	if (sg_buf_printf(out, "v=%s", v64) < 0) {
		ret = SG_MECH_MALFORMED;
		goto out;
	}
	*reason_r = NULL;
	ret = SG_MECH_OK;
out:
	sg_wipe(proof, sizeof(proof));
	sg_wipe(sig, sizeof(sig));
	sg_wipe(key, sizeof(key));
	sg_wipe(h, sizeof(h));
	free(cbuf);
	free(msg);
	return ret;
}

/* ---- client ---- */

int sg_scram_client_first(struct sg_scram_client *c, enum sg_scram_hash h, const char *user,
			  const char *authzid, char gs2_flag, const char *cb_name,
			  const uint8_t *cb_data, size_t cb_len, struct sg_buf *out,
			  const char **error_r)
{
	memset(c, 0, sizeof(*c));
	c->hash = h;
	c->hlen = sg_scram_hash_len(h);
	sg_buf_init(&c->auth_message, SCRAM_AUTH_MESSAGE_MAX);
	if (user == NULL || user[0] == '\0' || strlen(user) > SG_LOGIN_MAX ||
	    (authzid != NULL && strlen(authzid) > SG_LOGIN_MAX)) {
		*error_r = "SCRAM: login missing or too long";
		return -1;
	}
	struct sg_buf hdr;
	sg_buf_init(&hdr, sizeof(c->gs2_header) - 1);
	int r = 0;
	if (gs2_flag == 'p') {
		if (cb_name == NULL || !scram_cb_name_ok(cb_name, strlen(cb_name)) ||
		    cb_data == NULL || cb_len == 0) {
			sg_buf_free(&hdr);
			*error_r = "SCRAM: channel binding data missing";
			return -1;
		}
		r |= sg_buf_printf(&hdr, "p=%s,", cb_name);
		c->cb_data = cb_data;
		c->cb_len = cb_len;
	} else if (gs2_flag == 'n' || gs2_flag == 'y') {
		r |= sg_buf_printf(&hdr, "%c,", gs2_flag);
	} else {
		sg_buf_free(&hdr);
		*error_r = "SCRAM: bad gs2 flag";
		return -1;
	}
	if (authzid != NULL && authzid[0] != '\0') {
		r |= sg_buf_append_str(&hdr, "a=");
		r |= scram_escape(authzid, &hdr);
	}
	r |= sg_buf_append_str(&hdr, ",");
	if (r != 0) {
		sg_buf_free(&hdr);
		*error_r = "SCRAM: header too long";
		return -1;
	}
	sg_strlcpy(c->gs2_header, sg_buf_str(&hdr), sizeof(c->gs2_header));
	sg_buf_free(&hdr);

	scram_make_nonce(c->cnonce, sizeof(c->cnonce), sg_scram_test_client_nonce);
	if (!scram_nonce_ok(c->cnonce, strlen(c->cnonce))) {
		*error_r = "SCRAM: bad client nonce";
		return -1;
	}
	r = sg_buf_append_str(out, c->gs2_header);
	size_t bare = out->len;
	r |= sg_buf_append_str(out, "n=");
	r |= scram_escape(user, out);
	r |= sg_buf_printf(out, ",r=%s", c->cnonce);
	if (r != 0 || sg_buf_append(&c->auth_message, out->data + bare, out->len - bare) < 0) {
		*error_r = "SCRAM: client-first too long";
		return -1;
	}
	c->state = SCRAM_C_SERVER_FIRST;
	return 0;
}

int sg_scram_client_final(struct sg_scram_client *c, const char *password, const uint8_t *in,
			  size_t inlen, struct sg_buf *out, const char **error_r)
{
	int ret = -1;
	if (c->state != SCRAM_C_SERVER_FIRST) {
		*error_r = "SCRAM: unexpected server-first";
		return -1;
	}
	c->state = SCRAM_C_DONE;
	char *msg = scram_copy_msg(in, inlen);
	uint8_t salt[128 + 3];
	uint8_t salted[SG_SCRAM_KEY_MAX], ckey[SG_SCRAM_KEY_MAX], skey[SG_SCRAM_KEY_MAX],
		stored[SG_SCRAM_KEY_MAX], sig[SG_SCRAM_KEY_MAX];
	uint8_t *cbind = NULL;
	char *cbind64 = NULL;
	const char *e = "SCRAM: malformed server-first";
	if (msg == NULL || password == NULL)
		goto out;
	const char *p = msg;
	if (p[0] == 'm' && p[1] == '=') {
		e = "SCRAM: server requires an unsupported extension";
		goto out;
	}
	if (p[0] != 'r' || p[1] != '=')
		goto out;
	size_t nlen = scram_value_len(p + 2);
	size_t cn = strlen(c->cnonce);
	const char *nonce = p + 2;
	if (nlen <= cn || nlen > 2 * SG_SCRAM_NONCE_MAX || memcmp(nonce, c->cnonce, cn) != 0 ||
	    !scram_nonce_ok(nonce, nlen)) {
		e = "SCRAM: server nonce does not extend ours";
		goto out;
	}
	p = nonce + nlen;
	if (strncmp(p, ",s=", 3) != 0)
		goto out;
	p += 3;
	size_t slen64 = scram_value_len(p);
	size_t salt_len = 0;
	if (slen64 == 0 || slen64 > SG_B64_ENCODED_LEN(128) ||
	    sg_b64_decode(p, slen64, salt, &salt_len) < 0 || salt_len == 0)
		goto out;
	p += slen64;
	if (strncmp(p, ",i=", 3) != 0)
		goto out;
	p += 3;
	size_t ilen = scram_value_len(p);
	char ibuf[16];
	uint64_t iter;
	if (ilen == 0 || ilen >= sizeof(ibuf))
		goto out;
	memcpy(ibuf, p, ilen);
	ibuf[ilen] = '\0';
	if (sg_parse_u64(ibuf, 1, SG_SCRAM_ITER_LIMIT, &iter) < 0) {
		e = "SCRAM: iteration count out of range";
		goto out;
	}

	/* c= base64(gs2-header [cbind-data]) */
	size_t glen = strlen(c->gs2_header);
	size_t cblen = glen + c->cb_len;
	cbind = sg_malloc(cblen);
	memcpy(cbind, c->gs2_header, glen);
	if (c->cb_len > 0)
		memcpy(cbind + glen, c->cb_data, c->cb_len);
	cbind64 = sg_malloc(SG_B64_ENCODED_LEN(cblen) + 1);
	sg_b64_encode(cbind, cblen, cbind64);

	size_t start = out->len;
	if (sg_buf_printf(out, "c=%s,r=%.*s", cbind64, (int)nlen, nonce) < 0) {
		e = "SCRAM: client-final too long";
		goto out;
	}
	if (sg_buf_append_str(&c->auth_message, ",") < 0 ||
	    sg_buf_append(&c->auth_message, in, inlen) < 0 ||
	    sg_buf_append_str(&c->auth_message, ",") < 0 ||
	    sg_buf_append(&c->auth_message, out->data + start, out->len - start) < 0) {
		e = "SCRAM: AuthMessage too long";
		goto out;
	}

	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, (int)iter,
			      scram_md(c->hash), (int)c->hlen, salted) != 1)
		sg_fatal("scram: PBKDF2 failed");
	scram_hmac(c->hash, salted, c->hlen, "Client Key", 10, ckey);
	scram_hash(c->hash, ckey, c->hlen, stored);
	const uint8_t *am = c->auth_message.data;
	size_t amlen = c->auth_message.len;
	scram_hmac(c->hash, stored, c->hlen, am, amlen, sig);
	for (size_t i = 0; i < c->hlen; i++)
		ckey[i] ^= sig[i]; /* ClientProof */
	scram_hmac(c->hash, salted, c->hlen, "Server Key", 10, skey);
	scram_hmac(c->hash, skey, c->hlen, am, amlen, c->server_signature);
	char proof64[SG_B64_ENCODED_LEN(SG_SCRAM_KEY_MAX) + 1];
	sg_b64_encode(ckey, c->hlen, proof64);
	if (sg_buf_printf(out, ",p=%s", proof64) < 0) {
		e = "SCRAM: client-final too long";
		goto out;
	}
	sg_wipe(proof64, sizeof(proof64));
	c->state = SCRAM_C_SERVER_FINAL;
	ret = 0;
out:
	if (ret < 0)
		*error_r = e;
	sg_wipe(salted, sizeof(salted));
	sg_wipe(ckey, sizeof(ckey));
	sg_wipe(skey, sizeof(skey));
	sg_wipe(stored, sizeof(stored));
	sg_wipe(sig, sizeof(sig));
	free(cbind);
	free(cbind64);
	free(msg);
	return ret;
}

int sg_scram_client_verify(struct sg_scram_client *c, const uint8_t *in, size_t inlen,
			   const char **error_r)
{
	if (c->state != SCRAM_C_SERVER_FINAL) {
		*error_r = "SCRAM: unexpected server-final";
		return -1;
	}
	c->state = SCRAM_C_DONE;
	char *msg = scram_copy_msg(in, inlen);
	int ret = -1;
	const char *e = "SCRAM: malformed server-final";
	if (msg == NULL) {
		*error_r = e;
		return -1;
	}
	if (msg[0] == 'e' && msg[1] == '=') {
		e = "SCRAM: the server refused the proof (e=)";
		goto out;
	}
	if (msg[0] != 'v' || msg[1] != '=')
		goto out;
	size_t vlen64 = scram_value_len(msg + 2); /* extensions after v= ignored */
	uint8_t v[SG_SCRAM_KEY_MAX + 3];
	size_t vlen = 0;
	if (vlen64 != SG_B64_ENCODED_LEN(c->hlen) || sg_b64_decode(msg + 2, vlen64, v, &vlen) < 0 ||
	    vlen != c->hlen)
		goto out;
	if (!sg_ct_eq(v, c->server_signature, c->hlen)) {
		e = "SCRAM: wrong server signature (the server does not know the verifier)";
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		*error_r = e;
	free(msg);
	return ret;
}

void sg_scram_client_clear(struct sg_scram_client *c)
{
	sg_buf_free(&c->auth_message);
	sg_wipe(c, sizeof(*c));
}
