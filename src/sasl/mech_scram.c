/*
 * mech_scram.c: SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants
 * (RFC 5802, RFC 7677), server and client, on top of the engine in scram.c.
 *
 * Server exchange (PROTOCOL.md):
 *   C: client-first           S: 334 server-first
 *   C: client-final           S: 334 v=<ServerSignature>   C: ""   S: 235
 *                 wrong proof S: 535 5.7.8 (no e=invalid-proof: GNU SASL
 *                             clients cannot parse it and hide the 535)
 *          channel-binding    S: 334 e=channel-bindings-dont-match
 *          mismatch           C: any  S: 535
 * No user enumeration: an unknown login (or one without a SCRAM verifier, or
 * a disabled one) gets a server-first with a salt derived from a random key
 * and the login, so repeated attempts see a stable salt, and then the same
 * 535 as a wrong password; the log reason says what really happened.
 * Client-first policy failures (channel-binding downgrade, RFC 5802
 * section 6) end the exchange at once: the server-first grammar has no e=.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/secret.h"
#include "core/util.h"
#include "sasl/jwt.h"
#include "sasl/mech.h"
#include "sasl/mechs.h"
#include "sasl/scram.h"

#define SCRAM_DEFAULT_ITERATIONS 4096

/* The key of the fake salts: from <data_dir>/scram-fake-salt.key when the
 * server loaded it (sg_scram_fake_key_load, at start, before any session),
 * else random per process (unit tests, the fuzzers). A per-process key would
 * change every fake salt at each restart while real salts never change,
 * which tells accounts from non-accounts across a restart (issue 10 item 18). */
static uint8_t scram_fake_key[32];
static bool scram_fake_loaded;
static pthread_once_t scram_fake_once = PTHREAD_ONCE_INIT;

static void scram_fake_init(void)
{
	if (!scram_fake_loaded)
		sg_random(scram_fake_key, sizeof(scram_fake_key));
}

int sg_scram_fake_key_load(const char *data_dir, const char **error_r)
{
	uint8_t *key = NULL;
	size_t len = 0;
	if (sg_key_file_load_or_create(data_dir, SG_SCRAM_FAKE_KEY_FILE, sizeof(scram_fake_key), &key,
				       &len, error_r) < 0)
		return -1;
	memcpy(scram_fake_key, key, sizeof(scram_fake_key)); /* len >= 32: checked on read */
	sg_oauth_secret_free(&key, len);
	scram_fake_loaded = true;
	return 0;
}

/* Stable fake salt for a login that has no verifier. */
static void scram_fake_salt(const char *login, uint8_t salt[SG_SCRAM_SALT_LEN])
{
	uint8_t mac[32];
	unsigned maclen = 0;
	pthread_once(&scram_fake_once, scram_fake_init);
	if (HMAC(EVP_sha256(), scram_fake_key, sizeof(scram_fake_key), (const uint8_t *)login, strlen(login), mac,
		 &maclen) == NULL)
		sg_fatal("scram: HMAC failed");
	memcpy(salt, mac, SG_SCRAM_SALT_LEN);
	sg_wipe(mac, sizeof(mac));
}

enum scram_phase { PH_FIRST, PH_FINAL, PH_ACK, PH_PENDING_FAIL, PH_DONE };

struct scram_server_state {
	const struct sg_sasl_server_env *env;
	enum sg_cred_kind kind;
	enum scram_phase phase;
	const char *fail_reason;       /* set when the verdict is already known */
	char login[SG_LOGIN_MAX + 1];  /* canonical login from the store */
	struct sg_scram_server eng;
};

static bool scram_plus_available(const struct sg_sasl_server_env *env)
{
	return env->cb_type != NULL && env->cb_data != NULL && env->cb_len > 0;
}

static void *scram_server_start_common(const struct sg_sasl_server_env *env,
				       enum sg_scram_hash h, bool plus)
{
	struct scram_server_state *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	st->kind = h == SG_SCRAM_H_SHA1 ? SG_CRED_SCRAM_SHA1 : SG_CRED_SCRAM_SHA256;
	struct sg_scram_cb cb = {
		.plus = plus,
		.plus_offered = env->plus_offered,
		.type = env->cb_type,
		.data = env->cb_data,
		.len = env->cb_len,
	};
	sg_scram_server_init(&st->eng, h, &cb);
	return st;
}

static void *scram_sha1_server_start(const struct sg_sasl_server_env *env)
{
	return scram_server_start_common(env, SG_SCRAM_H_SHA1, false);
}
static void *scram_sha256_server_start(const struct sg_sasl_server_env *env)
{
	return scram_server_start_common(env, SG_SCRAM_H_SHA256, false);
}
static void *scram_sha1_plus_server_start(const struct sg_sasl_server_env *env)
{
	return scram_server_start_common(env, SG_SCRAM_H_SHA1, true);
}
static void *scram_sha256_plus_server_start(const struct sg_sasl_server_env *env)
{
	return scram_server_start_common(env, SG_SCRAM_H_SHA256, true);
}

static enum sg_mech_status scram_server_first(struct scram_server_state *st, const uint8_t *in,
					      size_t inlen, struct sg_buf *out,
					      struct sg_mech_result *res)
{
	const char *reason = NULL;
	st->phase = PH_DONE;
	enum sg_mech_status r = sg_scram_server_parse_first(&st->eng, in, inlen, &reason);
	sg_strlcpy(res->login, st->eng.user, sizeof(res->login));
	if (r != SG_MECH_OK) {
		res->reason = reason;
		return r;
	}

	struct sg_account acct;
	struct sg_verifier v;
	memset(&acct, 0, sizeof(acct));
	memset(&v, 0, sizeof(v));
	int found = sg_cred_lookup(st->env->creds, st->eng.user, st->kind, &acct, &v);
	if (found < 0) {
		sg_wipe(&v, sizeof(v));
		res->reason = "store_error";
		return SG_MECH_TEMPFAIL;
	}
	size_t hlen = sg_scram_hash_len(st->eng.hash);
	int mr;
	if (found == 1 && v.kind == st->kind && v.u.scram.key_len == hlen && !acct.disabled) {
		sg_strlcpy(st->login, acct.login, sizeof(st->login));
		mr = sg_scram_server_make_first(&st->eng, v.u.scram.salt, v.u.scram.salt_len,
						v.u.scram.iterations, v.u.scram.stored_key,
						v.u.scram.server_key, out);
	} else {
		if (found == 0)
			st->fail_reason = "unknown_account";
		else if (v.kind != st->kind || v.u.scram.key_len != hlen)
			st->fail_reason = "no_verifier";
		else
			st->fail_reason = "disabled";
		uint8_t salt[SG_SCRAM_SALT_LEN];
		uint8_t fake[SG_SCRAM_KEY_MAX];
		scram_fake_salt(st->eng.user, salt);
		sg_random(fake, sizeof(fake));
		/* A disabled account keeps its real salt and count: no tell. */
		bool real = found == 1 && v.kind == st->kind && v.u.scram.key_len == hlen;
		unsigned iter = st->env->cfg != NULL && st->env->cfg->scram_iterations != 0
					? st->env->cfg->scram_iterations
					: SCRAM_DEFAULT_ITERATIONS;
		mr = sg_scram_server_make_first(&st->eng, real ? v.u.scram.salt : salt,
						real ? v.u.scram.salt_len : sizeof(salt),
						real ? v.u.scram.iterations : iter, fake, fake, out);
	}
	sg_wipe(&v, sizeof(v));
	if (mr < 0) {
		res->reason = "internal";
		return SG_MECH_TEMPFAIL;
	}
	st->phase = PH_FINAL;
	return SG_MECH_CONTINUE;
}

static enum sg_mech_status scram_server_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, struct sg_mech_result *res)
{
	struct scram_server_state *st = vst;
	const char *reason = NULL;
	enum sg_mech_status r;
	if (st->eng.user[0] != '\0')
		sg_strlcpy(res->login, st->eng.user, sizeof(res->login));
	switch (st->phase) {
	case PH_FIRST:
		if (in == NULL)
			return SG_MECH_CONTINUE; /* no initial response: "334 " */
		return scram_server_first(st, in, inlen, out, res);
	case PH_FINAL:
		st->phase = PH_DONE;
		r = sg_scram_server_final(&st->eng, in, inlen, out, &reason);
		if (r == SG_MECH_MALFORMED) {
			res->reason = reason;
			return r;
		}
		if (r == SG_MECH_FAIL) {
			/* A channel-binding mismatch is reported to the client
			 * first (it must learn that its TLS channel is not ours);
			 * the cb check comes before the proof, so an unknown login
			 * looks the same. */
			bool tell = out->len > 0 && strcmp(reason, "cb_mismatch") == 0;
			st->fail_reason = st->fail_reason != NULL ? st->fail_reason : reason;
			res->reason = st->fail_reason;
			if (!tell) {
				sg_buf_reset(out);
				return SG_MECH_FAIL; /* 535 at once */
			}
			/* Send e=..., fail on the client's next line. */
			st->phase = PH_PENDING_FAIL;
			return SG_MECH_CONTINUE; /* an error challenge (mech.h) */
		}
		if (st->fail_reason != NULL) { /* cannot happen: fake keys are random */
			res->reason = st->fail_reason;
			return SG_MECH_FAIL;
		}
		st->phase = PH_ACK;
		return SG_MECH_CONTINUE; /* v=... */
	case PH_ACK:
		st->phase = PH_DONE;
		if (in == NULL || inlen != 0) {
			res->reason = "protocol";
			return SG_MECH_MALFORMED;
		}
		sg_strlcpy(res->login, st->login, sizeof(res->login));
		return SG_MECH_OK;
	case PH_PENDING_FAIL:
		st->phase = PH_DONE;
		res->reason = st->fail_reason;
		return SG_MECH_FAIL;
	case PH_DONE:
		break;
	}
	res->reason = "protocol";
	return SG_MECH_MALFORMED;
}

static void scram_server_free(void *vst)
{
	struct scram_server_state *st = vst;
	if (st == NULL)
		return;
	sg_scram_server_clear(&st->eng);
	sg_wipe(st, sizeof(*st));
	free(st);
}

/* ---- client ---- */

struct scram_client_state {
	const struct sg_sasl_client_env *env;
	enum sg_scram_hash hash;
	bool plus;
	int phase; /* 0 first, 1 final, 2 verify, 3 done */
	struct sg_scram_client eng;
};

static void *scram_client_start_common(const struct sg_sasl_client_env *env, const char **error_r,
				       enum sg_scram_hash h, bool plus)
{
	if (env->authcid == NULL || env->authcid[0] == '\0' || env->password == NULL) {
		*error_r = "SCRAM needs a login and a password";
		return NULL;
	}
	if (plus && (env->cb_type == NULL || env->cb_data == NULL || env->cb_len == 0)) {
		*error_r = "SCRAM-PLUS needs TLS channel-binding data";
		return NULL;
	}
	struct scram_client_state *st = sg_calloc(1, sizeof(*st));
	st->env = env;
	st->hash = h;
	st->plus = plus;
	return st;
}

static void *scram_sha1_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	return scram_client_start_common(env, error_r, SG_SCRAM_H_SHA1, false);
}
static void *scram_sha256_client_start(const struct sg_sasl_client_env *env, const char **error_r)
{
	return scram_client_start_common(env, error_r, SG_SCRAM_H_SHA256, false);
}
static void *scram_sha1_plus_client_start(const struct sg_sasl_client_env *env,
					  const char **error_r)
{
	return scram_client_start_common(env, error_r, SG_SCRAM_H_SHA1, true);
}
static void *scram_sha256_plus_client_start(const struct sg_sasl_client_env *env,
					    const char **error_r)
{
	return scram_client_start_common(env, error_r, SG_SCRAM_H_SHA256, true);
}

static enum sg_mech_status scram_client_step(void *vst, const uint8_t *in, size_t inlen,
					     struct sg_buf *out, const char **error_r)
{
	struct scram_client_state *st = vst;
	const struct sg_sasl_client_env *env = st->env;
	switch (st->phase) {
	case 0: {
		if (in != NULL && inlen != 0) {
			*error_r = "SCRAM: non-empty first challenge";
			return SG_MECH_FAIL;
		}
		/* RFC 5802 section 6: 'y' = we could bind but the server did
		 * not offer -PLUS; 'n' = we cannot (or chose not to). */
		char flag = 'n';
		if (st->plus)
			flag = 'p';
		else if (env->cb_data != NULL && env->cb_len > 0 && !env->server_offers_plus)
			flag = 'y';
		st->phase = 3;
		if (sg_scram_client_first(&st->eng, st->hash, env->authcid, env->authzid, flag,
					  env->cb_type, env->cb_data, env->cb_len, out, error_r) < 0)
			return SG_MECH_FAIL;
		st->phase = 1;
		return SG_MECH_CONTINUE;
	}
	case 1:
		st->phase = 3;
		if (sg_scram_client_final(&st->eng, env->password, in, inlen, out, error_r) < 0)
			return SG_MECH_FAIL;
		st->phase = 2;
		return SG_MECH_CONTINUE;
	case 2:
		st->phase = 3;
		if (sg_scram_client_verify(&st->eng, in, inlen, error_r) < 0)
			return SG_MECH_FAIL;
		return SG_MECH_OK; /* answer the v= with an empty line */
	default:
		*error_r = "SCRAM: unexpected challenge";
		return SG_MECH_FAIL;
	}
}

static void scram_client_free(void *vst)
{
	struct scram_client_state *st = vst;
	if (st == NULL)
		return;
	sg_scram_client_clear(&st->eng);
	free(st);
}

#define SCRAM_MECH(var, mname, fl, str, kind, avail, sstart, cstart)                     \
	const struct sg_mech var = {                                                      \
		.name = mname,                                                            \
		.flags = fl,                                                              \
		.strength = str,                                                          \
		.cred = kind,                                                             \
		.server_available = avail,                                                \
		.server_start = sstart,                                                   \
		.server_step = scram_server_step,                                         \
		.server_free = scram_server_free,                                         \
		.client_start = cstart,                                                   \
		.client_step = scram_client_step,                                         \
		.client_free = scram_client_free,                                         \
	}

SCRAM_MECH(sg_mech_scram_sha256_plus, "SCRAM-SHA-256-PLUS", SG_MECH_F_CHANNEL_BINDING, 140,
	   SG_CRED_SCRAM_SHA256, scram_plus_available, scram_sha256_plus_server_start,
	   scram_sha256_plus_client_start);
SCRAM_MECH(sg_mech_scram_sha1_plus, "SCRAM-SHA-1-PLUS", SG_MECH_F_CHANNEL_BINDING, 130,
	   SG_CRED_SCRAM_SHA1, scram_plus_available, scram_sha1_plus_server_start,
	   scram_sha1_plus_client_start);
SCRAM_MECH(sg_mech_scram_sha256, "SCRAM-SHA-256", 0, 120, SG_CRED_SCRAM_SHA256, NULL,
	   scram_sha256_server_start, scram_sha256_client_start);
SCRAM_MECH(sg_mech_scram_sha1, "SCRAM-SHA-1", 0, 110, SG_CRED_SCRAM_SHA1, NULL,
	   scram_sha1_server_start, scram_sha1_client_start);
