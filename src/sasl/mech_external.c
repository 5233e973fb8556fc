/*
 * mech_external.c: EXTERNAL (RFC 4422 appendix A), server and client side.
 *
 * The authentication happened outside SASL: the TLS layer verified a client
 * certificate and gives us its identity (env->cert_identity: the SAN email,
 * else the CN). The only message is the authorization identity:
 *
 *   external-resp = *( UTF8-char-no-nul )        (RFC 4422 appendix A.1)
 *
 * "If the client provides an empty authorization identity, the server is to
 * derive the authorization identity from the credentials it has" (A.1): the
 * account is the one whose login is the certificate identity, else the one
 * that owns exactly that address (sg_cred_find_exact_owner). Never an @domain
 * catch-all: owning @example.org to receive its mail does not make carol
 * every person of example.org (issue 10 item 8). A non-empty authzid must
 * equal that account's login: no proxy authorization. (The TLS layer checks
 * the certificate's purpose: an extended key usage without clientAuth fails
 * verification, so no identity reaches this file; core/tls.c.)
 *
 * Offered only when a verified certificate identity exists (server_available).
 * Reasons: "no_account_for_certificate", "bad_authzid", "disabled",
 * "store_error" (TEMPFAIL).
 */
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"

struct external_server {
	struct sg_cred_store *creds;
	char *identity;
	bool done;
};

static bool external_server_available(const struct sg_sasl_server_env *env)
{
	return env->cert_identity != NULL && env->cert_identity[0] != '\0';
}

static void *external_server_start(const struct sg_sasl_server_env *env)
{
	struct external_server *st = sg_calloc(1, sizeof(*st));
	st->creds = env->creds;
	if (env->cert_identity != NULL && env->cert_identity[0] != '\0')
		st->identity = sg_strdup(env->cert_identity);
	return st;
}

/* The certificate identity's account: 1 (acct filled), 0, -1. */
static int external_account(struct external_server *st, struct sg_account *acct)
{
	int r = sg_cred_lookup(st->creds, st->identity, SG_CRED_NONE, acct, NULL);
	if (r != 0)
		return r;
	char owner[SG_LOGIN_MAX + 1];
	r = sg_cred_find_exact_owner(st->creds, st->identity, owner, sizeof(owner));
	if (r <= 0)
		return r;
	return sg_cred_lookup(st->creds, owner, SG_CRED_NONE, acct, NULL);
}

static enum sg_mech_status external_server_step(void *vst, const uint8_t *in, size_t inlen,
						struct sg_buf *out, struct sg_mech_result *res)
{
	struct external_server *st = vst;
	if (st->done) {
		res->reason = "protocol";
		return SG_MECH_MALFORMED;
	}
	if (in == NULL)
		return SG_MECH_CONTINUE; /* no initial response: "334 ", then the authzid */
	st->done = true;
	if (memchr(in, '\0', inlen) != NULL) {
		res->reason = "malformed";
		return SG_MECH_MALFORMED;
	}
	if (st->identity == NULL) {
		res->reason = "no_account_for_certificate";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, st->identity, sizeof(res->login));
	struct sg_account acct;
	memset(&acct, 0, sizeof(acct));
	int r = external_account(st, &acct);
	if (r < 0) {
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	if (r == 0) {
		res->reason = "no_account_for_certificate";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	if (acct.disabled) {
		res->reason = "disabled";
		return SG_MECH_FAIL;
	}
	if (inlen != 0 && (inlen != strlen(acct.login) || memcmp(in, acct.login, inlen) != 0)) {
		res->reason = "bad_authzid";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK;
}

static void external_server_free(void *vst)
{
	struct external_server *st = vst;
	if (st == NULL)
		return;
	free(st->identity);
	free(st);
}

struct external_client {
	char *authzid;
	bool sent;
};

static void *external_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->authzid != NULL && strlen(env->authzid) > SG_LOGIN_MAX) {
		*error_r = "EXTERNAL: authzid longer than 255 octets";
		return NULL;
	}
	struct external_client *st = sg_calloc(1, sizeof(*st));
	st->authzid = sg_strdup(env->authzid != NULL ? env->authzid : "");
	return st;
}

static enum sg_mech_status external_client_step(void *vst, const uint8_t *in, size_t inlen,
						struct sg_buf *out, const char **error_r)
{
	struct external_client *st = vst;
	if (st->sent) {
		*error_r = "unexpected challenge after EXTERNAL response";
		return SG_MECH_FAIL;
	}
	if (in != NULL && inlen != 0) {
		*error_r = "non-empty EXTERNAL challenge";
		return SG_MECH_FAIL;
	}
	st->sent = true;
	if (sg_buf_append_str(out, st->authzid) < 0) {
		*error_r = "EXTERNAL response too long";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK; /* the TLS layer authenticated both sides */
}

static void external_client_free(void *vst)
{
	struct external_client *st = vst;
	if (st == NULL)
		return;
	free(st->authzid);
	free(st);
}

const struct sg_mech sg_mech_external = {
	.name = "EXTERNAL",
	.flags = 0,
	.strength = 100,
	.cred = SG_CRED_NONE,
	.server_available = external_server_available,
	.server_start = external_server_start,
	.server_step = external_server_step,
	.server_free = external_server_free,
	.client_start = external_client_start,
	.client_step = external_client_step,
	.client_free = external_client_free,
};
