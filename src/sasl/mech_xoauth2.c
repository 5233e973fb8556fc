/*
 * mech_xoauth2.c: XOAUTH2 (Google's and Microsoft's SASL profile for OAuth
 * 2.0 bearer tokens, the predecessor of RFC 7628), server and client.
 *
 *   message = "user=" user 0x01 "auth=Bearer " token 0x01 0x01
 *
 * sent as an initial response or after an empty "334 ". The token must
 * verify (jwt.h), its subject must equal user (case-insensitively for
 * addresses), and the account must exist and be enabled. On any such failure
 * the server sends {"status":"401","schemes":"bearer","scope":...} as a 334
 * challenge; the client answers with an empty line (or anything) and the
 * next step fails (535). The pair parser is OAUTHBEARER's (kvpairs, RFC 7628
 * section 3.1), so unknown keys are ignored and duplicates refused.
 */
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/jwt.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"

enum xoauth2_stage { XO_START, XO_ERROR_SENT, XO_DONE };

struct xoauth2_server {
	const struct sg_sasl_server_env *env;
	enum xoauth2_stage stage;
	const char *reason;
	char login[SG_LOGIN_MAX + 1];
};

static void *xoauth2_server_start(const struct sg_sasl_server_env *env)
{
	struct xoauth2_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static enum sg_mech_status xoauth2_check(struct xoauth2_server *st, char *msg, size_t len,
					 struct sg_buf *out, struct sg_mech_result *res)
{
	struct sg_oauth_kv kv[SG_OAUTH_KV_MAX];
	size_t n;
	if (sg_oauth_kvpairs(msg, len, kv, &n) < 0) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	const char *user = sg_oauth_kv_get(kv, n, "user");
	const char *auth = sg_oauth_kv_get(kv, n, "auth");
	const char *token = auth != NULL ? sg_oauth_bearer_token(auth) : NULL;
	if (user == NULL || user[0] == '\0' || strlen(user) > SG_LOGIN_MAX || token == NULL) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	enum sg_mech_status s = sg_oauth_authenticate(st->env, user, token, res);
	if (s != SG_MECH_FAIL)
		return s;
	st->reason = res->reason;
	sg_strlcpy(st->login, res->login, sizeof(st->login));
	if (sg_oauth_error_json(st->env->cfg, false, out) < 0)
		return SG_MECH_FAIL;
	st->stage = XO_ERROR_SENT;
	return SG_MECH_CONTINUE;
}

static enum sg_mech_status xoauth2_server_step(void *vst, const uint8_t *in, size_t inlen,
					       struct sg_buf *out, struct sg_mech_result *res)
{
	struct xoauth2_server *st = vst;
	switch (st->stage) {
	case XO_START:
		if (in == NULL)
			return SG_MECH_CONTINUE; /* no initial response: "334 " */
		break;
	case XO_ERROR_SENT:
		/* Whatever the client answers to the error JSON, it has failed. */
		st->stage = XO_DONE;
		res->reason = st->reason;
		sg_strlcpy(res->login, st->login, sizeof(res->login));
		return SG_MECH_FAIL;
	case XO_DONE:
	default:
		res->reason = "protocol";
		return SG_MECH_MALFORMED;
	}
	st->stage = XO_DONE;
	if (inlen == 0 || inlen > SG_JWT_MAX + 1024 || memchr(in, '\0', inlen) != NULL) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	char *msg = sg_malloc(inlen + 1);
	memcpy(msg, in, inlen);
	msg[inlen] = '\0';
	enum sg_mech_status s = xoauth2_check(st, msg, inlen, out, res);
	sg_wipe(msg, inlen);
	free(msg);
	return s;
}

static void xoauth2_server_free(void *st)
{
	if (st != NULL)
		sg_wipe(st, sizeof(struct xoauth2_server));
	free(st);
}

static void *xoauth2_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	return sg_oauth_client_start(env, false, error_r);
}

const struct sg_mech sg_mech_xoauth2 = {
	.name = "XOAUTH2",
	/* A replayable bearer token: only over TLS. */
	.flags = SG_MECH_F_PLAINTEXT,
	.strength = 45,
	.cred = SG_CRED_NONE,
	.server_available = sg_oauth_server_available,
	.server_start = xoauth2_server_start,
	.server_step = xoauth2_server_step,
	.server_free = xoauth2_server_free,
	.client_start = xoauth2_client_start,
	.client_step = sg_oauth_client_step,
	.client_free = sg_oauth_client_free,
};
