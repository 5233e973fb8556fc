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

static enum sg_mech_status xoauth2_check(struct sg_oauth_server *st, char *msg, size_t len,
					 struct sg_mech_result *res)
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
	return s == SG_MECH_FAIL ? SG_MECH_CONTINUE /* the error challenge */ : s;
}

static void *xoauth2_server_start(const struct sg_sasl_server_env *env)
{
	return sg_oauth_server_new(env, false, xoauth2_check);
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
	.server_step = sg_oauth_server_step,
	.server_free = sg_oauth_server_free,
	.client_start = xoauth2_client_start,
	.client_step = sg_oauth_client_step,
	.client_free = sg_oauth_client_free,
};
