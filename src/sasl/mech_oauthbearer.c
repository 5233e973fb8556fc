/*
 * mech_oauthbearer.c: OAUTHBEARER (RFC 7628), server and client, plus the
 * helpers XOAUTH2 shares (declared in jwt.h).
 *
 *   client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep   (section 3.1)
 *   e.g. "n,a=user@example.com,\x01host=mx\x01port=587\x01auth=Bearer T\x01\x01"
 *
 * Server: the token must verify (jwt.h), its subject must equal the authzid
 * when one is given, and the account must exist and be enabled. host= and
 * port=, when present, must name us (section 3.1: "the server SHOULD verify");
 * host= is checked leniently: our hostname, "localhost", "127.0.0.1" or "::1".
 * Any failure after the message parsed is answered with the section 3.2.2
 * error JSON as a challenge; the client's answer (section 3.2.3 says 0x01,
 * some clients send an empty line) is not examined and the next step fails.
 * Channel binding is not supported: gs2 flag "p" fails; "y" (the client could
 * bind but we offer no -PLUS variant) is accepted, as RFC 5801 section 5
 * intends.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/jwt.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"

/* ---- shared by the two OAuth mechanisms --------------------------------------- */

bool sg_oauth_subject_eq(const char *a, const char *b)
{
	if (strchr(a, '@') != NULL || strchr(b, '@') != NULL)
		return strcasecmp(a, b) == 0;
	return strcmp(a, b) == 0;
}

static bool is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int sg_oauth_kvpairs(char *s, size_t len, struct sg_oauth_kv *kv, size_t *n_r)
{
	size_t i = 0, n = 0;
	*n_r = 0;
	for (;;) {
		if (i >= len)
			return -1;
		if (s[i] == 0x01) /* the closing kvsep */
			break;
		size_t k = i;
		while (i < len && is_alpha(s[i]))
			i++;
		if (i == k || i >= len || s[i] != '=')
			return -1;
		s[i++] = '\0';
		size_t v = i;
		while (i < len && s[i] != 0x01) {
			unsigned char c = (unsigned char)s[i];
			if (!((c >= 0x21 && c <= 0x7e) || c == ' ' || c == '\t' || c == '\r' ||
			      c == '\n'))
				return -1;
			i++;
		}
		if (i >= len)
			return -1;
		s[i++] = '\0';
		if (n >= SG_OAUTH_KV_MAX || sg_oauth_kv_get(kv, n, s + k) != NULL)
			return -1;
		kv[n].key = s + k;
		kv[n].value = s + v;
		n++;
	}
	if (i + 1 != len)
		return -1;
	s[i] = '\0';
	*n_r = n;
	return 0;
}

const char *sg_oauth_kv_get(const struct sg_oauth_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

/* b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool b64token_ok(const char *v)
{
	size_t i = 0;
	while (v[i] != '\0' && (is_alpha(v[i]) || (v[i] >= '0' && v[i] <= '9') ||
				strchr("-._~+/", v[i]) != NULL))
		i++;
	if (i == 0)
		return false;
	while (v[i] == '=')
		i++;
	return v[i] == '\0';
}

const char *sg_oauth_bearer_token(const char *v)
{
	if (strncasecmp(v, "Bearer", 6) != 0 || v[6] != ' ')
		return NULL;
	v += 6;
	while (*v == ' ')
		v++;
	return b64token_ok(v) ? v : NULL;
}

enum sg_mech_status sg_oauth_authenticate(const struct sg_sasl_server_env *env, const char *user,
					  const char *token, struct sg_mech_result *res)
{
	char subject[SG_LOGIN_MAX + 1];
	const char *reason = NULL;
	if (user != NULL)
		sg_strlcpy(res->login, user, sizeof(res->login));
	int r = sg_jwt_verify(env->cfg, token, sg_time(), subject, sizeof(subject), &reason);
	if (r < 0) {
		res->reason = reason != NULL ? reason : "internal_error";
		return SG_MECH_TEMPFAIL;
	}
	if (r == 0) {
		res->reason = reason != NULL ? reason : "malformed_token";
		return SG_MECH_FAIL;
	}
	if (user == NULL)
		sg_strlcpy(res->login, subject, sizeof(res->login));
	else if (!sg_oauth_subject_eq(subject, user)) {
		res->reason = "wrong_subject";
		return SG_MECH_FAIL;
	}
	struct sg_account acct;
	struct sg_verifier v;
	memset(&acct, 0, sizeof(acct));
	r = sg_cred_lookup(env->creds, subject, SG_CRED_NONE, &acct, &v);
	if (r < 0) {
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	if (r == 0) {
		res->reason = "unknown_account";
		return SG_MECH_FAIL;
	}
	if (acct.disabled) {
		res->reason = "disabled";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	res->reason = NULL;
	return SG_MECH_OK;
}

int sg_oauth_error_json(const struct sg_sasl_config *cfg, bool oauthbearer, struct sg_buf *out)
{
	const char *scope = cfg != NULL && cfg->oauth_scope != NULL && cfg->oauth_scope[0] != '\0'
				    ? cfg->oauth_scope
				    : "smtp";
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string(oauthbearer ? "invalid_token" : "401"));
	if (!oauthbearer)
		json_object_set_new(o, "schemes", json_string("bearer"));
	json_object_set_new(o, "scope", json_string(scope));
	const char *iss = cfg != NULL ? cfg->oauth_issuer : NULL;
	if (oauthbearer && iss != NULL &&
	    (strncmp(iss, "https://", 8) == 0 || strncmp(iss, "http://", 7) == 0)) {
		size_t n = strlen(iss);
		while (n > 0 && iss[n - 1] == '/')
			n--;
		char *url = sg_asprintf("%.*s/.well-known/openid-configuration", (int)n, iss);
		json_object_set_new(o, "openid-configuration", json_string(url));
		free(url);
	}
	char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	int r = text != NULL ? sg_buf_append_str(out, text) : -1;
	free(text);
	return r;
}

char *sg_oauth_error_text(const uint8_t *in, size_t inlen)
{
	size_t n = inlen < 512 ? inlen : 512;
	char *s = sg_malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = in[i] >= 0x20 && in[i] < 0x7f ? (char)in[i] : '?';
	s[n] = '\0';
	return s;
}

/* ---- server ------------------------------------------------------------------ */

void *sg_oauth_server_new(const struct sg_sasl_server_env *env, bool oauthbearer,
			  enum sg_mech_status (*check)(struct sg_oauth_server *st, char *msg, size_t len,
						       struct sg_mech_result *res))
{
	struct sg_oauth_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	st->oauthbearer = oauthbearer;
	st->check = check;
	return st;
}

void sg_oauth_server_free(void *st)
{
	if (st != NULL)
		sg_wipe(st, sizeof(struct sg_oauth_server));
	free(st);
}

enum sg_mech_status sg_oauth_server_step(void *vst, const uint8_t *in, size_t inlen,
					 struct sg_buf *out, struct sg_mech_result *res)
{
	struct sg_oauth_server *st = vst;
	switch (st->stage) {
	case 0:
		if (in == NULL)
			return SG_MECH_CONTINUE; /* no initial response: "334 " */
		break;
	case 1:
		/* RFC 7628 3.2.3: the client acknowledges the error (0x01, an
		 * empty line, or anything): the exchange fails. */
		st->stage = 2;
		res->reason = st->reason;
		sg_strlcpy(res->login, st->login, sizeof(res->login));
		return SG_MECH_FAIL;
	default:
		res->reason = "protocol";
		return SG_MECH_MALFORMED;
	}
	st->stage = 2;
	if (inlen == 0 || inlen > SG_JWT_MAX + 1024 || memchr(in, '\0', inlen) != NULL) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	char *msg = sg_malloc(inlen + 1);
	memcpy(msg, in, inlen);
	msg[inlen] = '\0';
	enum sg_mech_status s = st->check(st, msg, inlen, res);
	sg_wipe(msg, inlen);
	free(msg);
	if (s != SG_MECH_CONTINUE)
		return s;
	st->reason = res->reason;
	sg_strlcpy(st->login, res->login, sizeof(st->login));
	if (sg_oauth_error_json(st->env->cfg, st->oauthbearer, out) < 0)
		return SG_MECH_FAIL;
	st->stage = 1;
	return SG_MECH_CONTINUE;
}

bool sg_oauth_server_available(const struct sg_sasl_server_env *env)
{
	const struct sg_sasl_config *c = env->cfg;
	if (c == NULL)
		return false;
	return (c->oauth_hs256_secret != NULL && c->oauth_hs256_secret_len > 0) ||
	       c->oauth_jwks != NULL || (c->oauth_jwks_file != NULL && c->oauth_jwks_file[0] != '\0');
}

/* RFC 5801 section 4: saslname escapes ',' as "=2C" and '=' as "=3D". */
static int saslname_decode(const char *in, size_t n, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		if (c == '=') {
			if (n - i < 3)
				return -1;
			if (in[i + 1] == '2' && (in[i + 2] == 'C' || in[i + 2] == 'c'))
				c = ',';
			else if (in[i + 1] == '3' && (in[i + 2] == 'D' || in[i + 2] == 'd'))
				c = '=';
			else
				return -1;
			i += 2;
		} else if ((unsigned char)c < 0x20 || c == 0x7f) {
			return -1;
		}
		if (o + 1 >= size)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return 0;
}

static bool host_is_us(const struct sg_sasl_server_env *env, const char *host)
{
	char h[256];
	size_t n = strlen(host);
	/* An IPv6 literal may come in brackets (RFC 3986 host syntax). */
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(h))
		return false;
	memcpy(h, host, n);
	h[n] = '\0';
	if (n > 1 && h[n - 1] == '.') /* absolute DNS name */
		h[n - 1] = '\0';
	static const char *const local[] = {"localhost", "127.0.0.1", "::1"};
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		if (strcasecmp(h, local[i]) == 0)
			return true;
	return env->hostname != NULL && strcasecmp(h, env->hostname) == 0;
}

static enum sg_mech_status ob_parse_and_check(struct sg_oauth_server *st, char *msg, size_t len,
					      struct sg_mech_result *res)
{
	char authzid[SG_LOGIN_MAX + 1] = "";
	bool have_authzid = false;
	size_t i;

	/* gs2-cbind-flag (RFC 5801 section 4) */
	if (len >= 2 && (msg[0] == 'n' || msg[0] == 'y') && msg[1] == ',') {
		i = 2;
	} else if (len >= 2 && msg[0] == 'p' && msg[1] == '=') {
		res->reason = "channel_binding_unsupported";
		return SG_MECH_FAIL;
	} else {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	/* [gs2-authzid] "," */
	if (i + 1 < len && msg[i] == 'a' && msg[i + 1] == '=') {
		const char *a = msg + i + 2;
		const char *comma = memchr(a, ',', len - (i + 2));
		if (comma == NULL || comma == a ||
		    saslname_decode(a, (size_t)(comma - a), authzid, sizeof(authzid)) < 0) {
			res->reason = "malformed";
			return SG_MECH_MALFORMED;
		}
		have_authzid = true;
		i = (size_t)(comma - msg);
	}
	if (i >= len || msg[i] != ',') {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	i++;
	/* kvsep *kvpair kvsep */
	struct sg_oauth_kv kv[SG_OAUTH_KV_MAX];
	size_t n;
	if (i >= len || msg[i] != 0x01 || sg_oauth_kvpairs(msg + i + 1, len - i - 1, kv, &n) < 0) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	const char *auth = sg_oauth_kv_get(kv, n, "auth");
	const char *token = auth != NULL ? sg_oauth_bearer_token(auth) : NULL;
	if (token == NULL) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	if (have_authzid)
		sg_strlcpy(res->login, authzid, sizeof(res->login));
	/* Section 3.1: host and port "SHOULD" be checked; absent is fine. */
	const char *host = sg_oauth_kv_get(kv, n, "host");
	if (host != NULL && !host_is_us(st->env, host)) {
		res->reason = "wrong_host";
		return SG_MECH_CONTINUE; /* the error challenge */
	}
	const char *port = sg_oauth_kv_get(kv, n, "port");
	if (port != NULL) {
		uint64_t p;
		if (sg_parse_u64(port, 0, 65535, &p) < 0) {
			res->reason = "malformed";
			return SG_MECH_MALFORMED;
		}
		if (st->env->local_port != 0 && p != st->env->local_port) {
			res->reason = "wrong_port";
			return SG_MECH_CONTINUE; /* the error challenge */
		}
	}
	enum sg_mech_status s =
		sg_oauth_authenticate(st->env, have_authzid ? authzid : NULL, token, res);
	if (s == SG_MECH_FAIL)
		return SG_MECH_CONTINUE; /* the error challenge */
	return s;
}

static void *oauthbearer_server_start(const struct sg_sasl_server_env *env)
{
	return sg_oauth_server_new(env, true, ob_parse_and_check);
}

/* ---- client ------------------------------------------------------------------ */

struct oauth_client {
	const struct sg_sasl_client_env *env;
	bool oauthbearer;
	bool sent;
	bool failed;
	char *error;
};

static bool token_ok(const char *t)
{
	return t != NULL && t[0] != '\0' && strlen(t) <= SG_JWT_MAX;
}

void *sg_oauth_client_start(const struct sg_sasl_client_env *env, bool oauthbearer,
			    const char **error_r)
{
	if (!token_ok(env->token)) {
		*error_r = "OAuth mechanisms need a bearer token (at most 8192 octets)";
		return NULL;
	}
	if (!b64token_ok(env->token)) {
		*error_r = "the bearer token has characters outside the b64token set";
		return NULL;
	}
	const char *u = env->authcid;
	if (!oauthbearer && (u == NULL || u[0] == '\0')) {
		*error_r = "XOAUTH2 needs a login";
		return NULL;
	}
	if (u != NULL) {
		if (strlen(u) > SG_LOGIN_MAX) {
			*error_r = "login longer than 255 octets";
			return NULL;
		}
		for (const char *p = u; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				*error_r = "login with control characters";
				return NULL;
			}
		}
	}
	struct oauth_client *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	st->oauthbearer = oauthbearer;
	return st;
}

static int ob_build(const struct sg_sasl_client_env *env, struct sg_buf *out)
{
	int r = sg_buf_append_str(out, "n,");
	if (env->authcid != NULL && env->authcid[0] != '\0') {
		r |= sg_buf_append_str(out, "a=");
		for (const char *p = env->authcid; *p != '\0'; p++) {
			if (*p == ',')
				r |= sg_buf_append_str(out, "=2C");
			else if (*p == '=')
				r |= sg_buf_append_str(out, "=3D");
			else
				r |= sg_buf_append(out, p, 1);
		}
	}
	r |= sg_buf_append_str(out, ",\x01");
	if (env->host != NULL && env->host[0] != '\0')
		r |= sg_buf_printf(out, "host=%s\x01", env->host);
	if (env->port != 0)
		r |= sg_buf_printf(out, "port=%u\x01", env->port);
	r |= sg_buf_printf(out, "auth=Bearer %s\x01\x01", env->token);
	return r != 0 ? -1 : 0;
}

static int xo_build(const struct sg_sasl_client_env *env, struct sg_buf *out)
{
	return sg_buf_printf(out, "user=%s\x01" "auth=Bearer %s\x01\x01", env->authcid,
			     env->token) < 0
		       ? -1
		       : 0;
}

enum sg_mech_status sg_oauth_client_step(void *vst, const uint8_t *in, size_t inlen,
					 struct sg_buf *out, const char **error_r)
{
	struct oauth_client *st = vst;
	if (st->failed) {
		*error_r = st->error != NULL ? st->error : "OAuth exchange already failed";
		return SG_MECH_FAIL;
	}
	if (!st->sent) {
		if (in != NULL && inlen != 0) {
			*error_r = "unexpected non-empty challenge before the OAuth response";
			return SG_MECH_FAIL;
		}
		st->sent = true;
		int r = st->oauthbearer ? ob_build(st->env, out) : xo_build(st->env, out);
		if (r < 0) {
			*error_r = "OAuth response too long";
			return SG_MECH_FAIL;
		}
		/* Our part is complete (nothing of the server's to verify): the
		 * server answers 235, or a 334 with the error JSON, for which the
		 * driver calls us again (mechs.h). */
		return SG_MECH_OK;
	}
	/* A 334 after our response is the error JSON (RFC 7628 section 3.2.2).
	 * RFC 7628 section 3.2.3: OAUTHBEARER answers with a lone kvsep; XOAUTH2
	 * (Google's documentation) with an empty response. The server then
	 * sends 535: out holds the acknowledgement, and the status is FAIL. */
	st->failed = true;
	st->error = in != NULL && inlen > 0 ? sg_oauth_error_text(in, inlen)
					    : sg_strdup("server sent an empty challenge");
	if (st->oauthbearer)
		(void)sg_buf_append(out, "\x01", 1);
	*error_r = st->error;
	return SG_MECH_FAIL;
}

void sg_oauth_client_free(void *vst)
{
	struct oauth_client *st = vst;
	if (st == NULL)
		return;
	free(st->error);
	free(st);
}

static void *oauthbearer_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	return sg_oauth_client_start(env, true, error_r);
}

const struct sg_mech sg_mech_oauthbearer = {
	.name = "OAUTHBEARER",
	/* The bearer token is replayable: only over TLS (RFC 7628 section 5). */
	.flags = SG_MECH_F_PLAINTEXT,
	.strength = 50,
	.cred = SG_CRED_NONE,
	.server_available = sg_oauth_server_available,
	.server_start = oauthbearer_server_start,
	.server_step = sg_oauth_server_step,
	.server_free = sg_oauth_server_free,
	.client_start = oauthbearer_client_start,
	.client_step = sg_oauth_client_step,
	.client_free = sg_oauth_client_free,
};
