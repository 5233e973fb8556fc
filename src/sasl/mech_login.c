/*
 * mech_login.c: LOGIN (draft-murchison-sasl-login-00), server and client.
 *
 *   S: 334 VXNlcm5hbWU6 ("Username:")   C: base64(user)
 *   S: 334 UGFzc3dvcmQ6 ("Password:")   C: base64(password)
 *
 * "AUTH LOGIN <b64 user>" gives the username as an initial response and
 * skips the first prompt (SG_MECH_F_IR_OK). Both fields: 1..255 octets, no NUL.
 */
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"

#define LOGIN_PROMPT_USER "Username:"
#define LOGIN_PROMPT_PASS "Password:"

enum login_state { LOGIN_USER, LOGIN_PASS, LOGIN_DONE };

struct login_server {
	const struct sg_sasl_server_env *env;
	enum login_state state;
	char user[SG_LOGIN_MAX + 1];
};

static void *login_server_start(const struct sg_sasl_server_env *env)
{
	struct login_server *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

static bool login_field_ok(const uint8_t *in, size_t inlen)
{
	return inlen > 0 && inlen <= 255 && memchr(in, '\0', inlen) == NULL;
}

static enum sg_mech_status login_server_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, struct sg_mech_result *res)
{
	struct login_server *st = vst;
	switch (st->state) {
	case LOGIN_USER:
		if (in == NULL) {
			if (sg_buf_append_str(out, LOGIN_PROMPT_USER) < 0)
				return SG_MECH_TEMPFAIL;
			return SG_MECH_CONTINUE;
		}
		if (!login_field_ok(in, inlen)) {
			st->state = LOGIN_DONE;
			res->reason = "malformed";
			return SG_MECH_MALFORMED;
		}
		memcpy(st->user, in, inlen);
		st->user[inlen] = '\0';
		sg_strlcpy(res->login, st->user, sizeof(res->login));
		if (sg_buf_append_str(out, LOGIN_PROMPT_PASS) < 0)
			return SG_MECH_TEMPFAIL;
		st->state = LOGIN_PASS;
		return SG_MECH_CONTINUE;
	case LOGIN_PASS: {
		st->state = LOGIN_DONE;
		sg_strlcpy(res->login, st->user, sizeof(res->login));
		if (in == NULL || !login_field_ok(in, inlen)) {
			res->reason = "malformed";
			return SG_MECH_MALFORMED;
		}
		char pw[256];
		memcpy(pw, in, inlen);
		pw[inlen] = '\0';
		struct sg_account acct;
		const char *reason = NULL;
		int r = sg_cred_check_password(st->env->creds, st->user, pw, &acct, &reason);
		sg_wipe(pw, sizeof(pw));
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
	}
	case LOGIN_DONE:
		break;
	}
	res->reason = "protocol";
	return SG_MECH_MALFORMED;
}

static void login_server_free(void *vst)
{
	struct login_server *st = vst;
	if (st == NULL)
		return;
	sg_wipe(st, sizeof(*st));
	free(st);
}

struct login_client {
	const struct sg_sasl_client_env *env;
	enum login_state state;
};

static void *login_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	if (env->authcid == NULL || env->password == NULL || env->authcid[0] == '\0' ||
	    env->password[0] == '\0' || strlen(env->authcid) > 255 || strlen(env->password) > 255) {
		*error_r = "LOGIN needs a login and a password of 1 to 255 octets";
		return NULL;
	}
	struct login_client *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	return st;
}

/* Answers by position (servers word the prompts differently). */
static enum sg_mech_status login_client_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, const char **error_r)
{
	struct login_client *st = vst;
	switch (st->state) {
	case LOGIN_USER:
		if (sg_buf_append_str(out, st->env->authcid) < 0)
			break;
		st->state = LOGIN_PASS;
		return SG_MECH_CONTINUE;
	case LOGIN_PASS:
		if (sg_buf_append_str(out, st->env->password) < 0)
			break;
		st->state = LOGIN_DONE;
		return SG_MECH_OK;
	case LOGIN_DONE:
		*error_r = "unexpected challenge after LOGIN password";
		return SG_MECH_FAIL;
	}
	*error_r = "LOGIN response too long";
	return SG_MECH_FAIL;
}

static void login_client_free(void *st)
{
	free(st);
}

const struct sg_mech sg_mech_login = {
	.name = "LOGIN",
	.flags = SG_MECH_F_PLAINTEXT | SG_MECH_F_SERVER_FIRST | SG_MECH_F_IR_OK,
	.strength = 10,
	.cred = SG_CRED_PASSWORD_HASH,
	.server_start = login_server_start,
	.server_step = login_server_step,
	.server_free = login_server_free,
	.client_start = login_client_start,
	.client_step = login_client_step,
	.client_free = login_client_free,
};
