/*
 * mech_plain.c: PLAIN (RFC 4616), server and client.
 *
 *   message = [authzid] UTF8NUL authcid UTF8NUL passwd   (RFC 4616 section 2)
 *
 * We do not support proxy authorisation: the authzid must be empty or equal
 * to the authcid (reason "bad_authzid"). The password is checked against the
 * stored crypt(3) hash by the store; it is wiped as soon as that returns.
 */
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"

struct plain_server {
	const struct sg_sasl_server_env *env;
	bool done;
};

static void *plain_server_start(const struct sg_sasl_server_env *env)
{
	struct plain_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static enum sg_mech_status plain_server_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, struct sg_mech_result *res)
{
	struct plain_server *st = vst;
	if (st->done) {
		res->reason = "protocol";
		return SG_MECH_MALFORMED;
	}
	if (in == NULL)
		return SG_MECH_CONTINUE; /* no initial response: "334 " */
	st->done = true;

	/* RFC 4616 section 2: exactly two NULs. */
	const uint8_t *nul1 = memchr(in, '\0', inlen);
	if (nul1 == NULL)
		goto malformed;
	const uint8_t *p2 = nul1 + 1;
	const uint8_t *nul2 = memchr(p2, '\0', inlen - (size_t)(p2 - in));
	if (nul2 == NULL)
		goto malformed;
	const uint8_t *pw = nul2 + 1;
	size_t zlen = (size_t)(nul1 - in);
	size_t clen = (size_t)(nul2 - p2);
	size_t pwlen = inlen - (size_t)(pw - in);
	if (memchr(pw, '\0', pwlen) != NULL)
		goto malformed;
	/* "authcid ... 1*SAFE", "passwd 1*SAFE", each at most 255 octets.
	 * Empty fields are malformed; overlong ones cannot match any account,
	 * so they fail like a wrong password (same reply, same delay). */
	if (clen == 0 || pwlen == 0)
		goto malformed;
	if (clen > SG_LOGIN_MAX || pwlen > 255 || zlen > SG_LOGIN_MAX) {
		res->reason = "too_long";
		return SG_MECH_FAIL;
	}

	memcpy(res->login, p2, clen);
	res->login[clen] = '\0';
	if (zlen != 0 && (zlen != clen || memcmp(in, p2, clen) != 0)) {
		res->reason = "bad_authzid";
		return SG_MECH_FAIL;
	}

	char pwbuf[256];
	memcpy(pwbuf, pw, pwlen);
	pwbuf[pwlen] = '\0';
	struct sg_account acct;
	const char *reason = NULL;
	char login[SG_LOGIN_MAX + 1];
	memcpy(login, res->login, clen + 1);
	int r = sg_cred_check_password(st->env->creds, login, pwbuf, &acct, &reason);
	sg_wipe(pwbuf, sizeof(pwbuf));
	if (r < 0) {
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	if (r == 0) {
		res->reason = reason != NULL ? reason : "wrong_password";
		return SG_MECH_FAIL;
	}
	sg_strlcpy(res->login, acct.login, sizeof(res->login));
	return SG_MECH_OK;

malformed:
	res->reason = "malformed";
	return SG_MECH_MALFORMED;
}

static void plain_server_free(void *st)
{
	free(st);
}

struct plain_client {
	const struct sg_sasl_client_env *env;
	bool sent;
};

static void *plain_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->authcid == NULL || env->authcid[0] == '\0' || env->password == NULL ||
	    env->password[0] == '\0') {
		*error_r = "PLAIN needs a login and a password";
		return NULL;
	}
	if (strlen(env->authcid) > SG_LOGIN_MAX || strlen(env->password) > 255 ||
	    (env->authzid != NULL && strlen(env->authzid) > SG_LOGIN_MAX)) {
		*error_r = "PLAIN: login or password longer than 255 octets";
		return NULL;
	}
	struct plain_client *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static enum sg_mech_status plain_client_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, const char **error_r)
{
	struct plain_client *st = vst;
	if (st->sent) {
		*error_r = "unexpected challenge after PLAIN response";
		return SG_MECH_FAIL;
	}
	if (in != NULL && inlen != 0) {
		*error_r = "non-empty PLAIN challenge";
		return SG_MECH_FAIL;
	}
	st->sent = true;
	const char *z = st->env->authzid != NULL ? st->env->authzid : "";
	if (sg_buf_append_str(out, z) < 0 || sg_buf_append(out, "", 1) < 0 ||
	    sg_buf_append_str(out, st->env->authcid) < 0 || sg_buf_append(out, "", 1) < 0 ||
	    sg_buf_append_str(out, st->env->password) < 0) {
		*error_r = "PLAIN response too long";
		return SG_MECH_FAIL;
	}
	return SG_MECH_OK; /* send out; nothing more to check */
}

static void plain_client_free(void *st)
{
	free(st);
}

const struct sg_mech sg_mech_plain = {
	.name = "PLAIN",
	.flags = SG_MECH_F_PLAINTEXT,
	.strength = 20,
	.cred = SG_CRED_PASSWORD_HASH,
	.server_start = plain_server_start,
	.server_step = plain_server_step,
	.server_free = plain_server_free,
	.client_start = plain_client_start,
	.client_step = plain_client_step,
	.client_free = plain_client_free,
};
