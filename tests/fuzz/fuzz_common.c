/* fuzz_common.c: see fuzz_common.h. */
#include "fuzz_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"
#include "sasl/jwt.h"
#include "store/cred.h"

const uint8_t sg_fuzz_hs256_key[32] = "smtpgate-fuzz-hs256-key-32-bytes";

const char sg_fuzz_jwks_json[] = "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"alg\":\"RS256\",\"use\":\"sig\",\"n\":\"o2VlE-1WPrXNz0--Ux9bgv9srnTDw76GG7USuwbc8QcOo_2dn5B5FaRTQyl2aQPox7NfpOQ9FSxkvASQwjAJ6DBMMQsNBjbnTYGFjoyDVftr5RsfwBYE9Na4-QBoJtHsZpuMxcvmoT_bq9gK8vpaphRpVSD8lZn8I1Bao1J4yVY5jNAADRXwzi6PeAz-eB-5UpiVNhzb6Yii_P3rPijgIgTjMIM5MmX1Wg5xZhAcwE0ASQYkH78GujkrtxFN_AbBYenYK4VchU7__uIGuiGk6RUTH3HDEPwDYjvMJPlFXtH0trFh9HKUkk60vMlvePiCdyWEr1lKJM9Dis_LNK8hww\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\",\"alg\":\"ES256\",\"x\":\"2iC_MyhLyeGsMe8QK8pQAqqql5Al0hM9Zh-4KfCP7oA\",\"y\":\"JpApsFmY_G96SzTb439qcgdiXy5olVUfvX01JaLH-To\"}]}";

static bool fz_ready;
static char fz_path[64];
static struct sg_cred_store *fz_store;
static struct sg_sasl_config fz_cfg;
static void *fz_jwks;
static char *fz_token;
static bool fz_strict, fz_debug;

_Noreturn void sg_fuzz_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("FUZZ INVARIANT: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static void fz_cleanup(void)
{
	sg_cred_close(&fz_store);
	if (fz_path[0] != '\0') {
		char side[96];
		unlink(fz_path);
		(void)snprintf(side, sizeof(side), "%s-wal", fz_path);
		unlink(side);
		(void)snprintf(side, sizeof(side), "%s-shm", fz_path);
		unlink(side);
		(void)snprintf(side, sizeof(side), "%s-journal", fz_path);
		unlink(side);
	}
	sg_jwks_free(&fz_jwks);
	free(fz_token);
}

void sg_fuzz_init(void)
{
	if (fz_ready)
		return;
	fz_ready = true;
	fz_strict = getenv("SG_FUZZ_STRICT") != NULL;
	fz_debug = getenv("SG_FUZZ_DEBUG") != NULL;
	sg_log_open(false, SG_ERROR);
	const char *error = NULL;
	(void)snprintf(fz_path, sizeof(fz_path), "/tmp/sg-fuzz-%ld.db", (long)getpid());
	unlink(fz_path);
	if (sg_cred_open(fz_path, &fz_store, &error) < 0)
		sg_fuzz_fail("sg_cred_open %s: %s", fz_path, error != NULL ? error : "?");
	atexit(fz_cleanup);
	struct sg_cred_params p = {.scram_iterations = 4096, .legacy = SG_LEGACY_NTLM | SG_LEGACY_CRAM_MD5};
	if (sg_cred_add(fz_store, SG_FUZZ_LOGIN, SG_FUZZ_PASSWORD, &p, &error) < 0)
		sg_fuzz_fail("sg_cred_add: %s", error != NULL ? error : "?");
	if (sg_cred_add_address(fz_store, SG_FUZZ_LOGIN, "alice@example.test", &error) < 0)
		sg_fuzz_fail("sg_cred_add_address: %s", error != NULL ? error : "?");
	if (sg_jwks_parse(sg_fuzz_jwks_json, strlen(sg_fuzz_jwks_json), &fz_jwks, &error) < 0)
		sg_fuzz_fail("sg_jwks_parse: %s", error != NULL ? error : "?");
	fz_cfg = (struct sg_sasl_config){
		.scram_iterations = 4096,
		.ntlm_domain = "EXAMPLE",
		.oauth_hs256_secret = sg_fuzz_hs256_key,
		.oauth_hs256_secret_len = sizeof(sg_fuzz_hs256_key),
		.oauth_jwks = fz_jwks,
		.oauth_issuer = "https://issuer.example.test",
		.oauth_audience = "smtp",
		.oauth_login_claim = "sub",
		.oauth_scope = "smtp",
		.gss_service = "smtp",
	};
	fz_token = sg_jwt_mint_hs256(sg_fuzz_hs256_key, sizeof(sg_fuzz_hs256_key), SG_FUZZ_LOGIN,
				     fz_cfg.oauth_issuer, fz_cfg.oauth_audience, sg_time(),
				     100u * 365 * 86400);
	if (fz_token == NULL)
		sg_fuzz_fail("sg_jwt_mint_hs256");
}

struct sg_cred_store *sg_fuzz_store(void)
{
	sg_fuzz_init();
	return fz_store;
}

const struct sg_sasl_config *sg_fuzz_cfg(void)
{
	sg_fuzz_init();
	return &fz_cfg;
}

const char *sg_fuzz_token(void)
{
	sg_fuzz_init();
	return fz_token;
}

static const uint8_t fz_cb[32] = "fuzz-channel-binding-data-32oct";

struct sg_sasl_server_env sg_fuzz_env(void)
{
	sg_fuzz_init();
	return (struct sg_sasl_server_env){
		.creds = fz_store,
		.cfg = &fz_cfg,
		.hostname = SG_FUZZ_HOST,
		.service = "smtp",
		.tls = true,
		.cb_type = "tls-exporter",
		.cb_data = fz_cb,
		.cb_len = sizeof(fz_cb),
		.plus_offered = true,
		.cert_identity = NULL,
		.client_ip = "192.0.2.1",
		.local_port = 587,
	};
}

size_t sg_fuzz_split(const uint8_t *data, size_t size, struct sg_fuzz_msg m[2])
{
	m[0] = (struct sg_fuzz_msg){(const uint8_t *)"", 0};
	m[1] = (struct sg_fuzz_msg){NULL, 0};
	if (size == 0)
		return 1;
	size_t n1 = data[0];
	data++;
	size--;
	if (n1 >= size) {
		m[0] = (struct sg_fuzz_msg){data, size};
		return 1;
	}
	m[0] = (struct sg_fuzz_msg){data, n1};
	m[1] = (struct sg_fuzz_msg){data + n1, size - n1};
	return 2;
}

void sg_fuzz_subst(const uint8_t *in, size_t n, const char *pat, const char *rep, uint8_t **out_r,
		   size_t *outn_r)
{
	size_t pl = strlen(pat), rl = strlen(rep);
	size_t count = 0;
	for (size_t i = 0; i + pl <= n;) {
		if (memcmp(in + i, pat, pl) == 0) {
			count++;
			i += pl;
		} else {
			i++;
		}
	}
	size_t total = n - count * pl + count * rl;
	uint8_t *o = sg_malloc(total + 1);
	size_t j = 0;
	for (size_t i = 0; i < n;) {
		if (i + pl <= n && memcmp(in + i, pat, pl) == 0) {
			memcpy(o + j, rep, rl);
			j += rl;
			i += pl;
		} else {
			o[j++] = in[i++];
		}
	}
	o[j] = 0;
	*out_r = o;
	*outn_r = j;
}

static void check_result(const struct sg_mech *m, int st, const struct sg_mech_result *res,
			 const struct sg_buf *out)
{
	if (st < SG_MECH_CONTINUE || st > SG_MECH_MALFORMED)
		sg_fuzz_fail("%s: status %d out of range", m->name, st);
	if (memchr(res->login, '\0', sizeof(res->login)) == NULL)
		sg_fuzz_fail("%s: res->login not NUL-terminated", m->name);
	if (out->len > out->max || (out->data != NULL && out->data[out->len] != '\0'))
		sg_fuzz_fail("%s: out buffer contract broken", m->name);
	if (st == SG_MECH_OK && strcmp(res->login, SG_FUZZ_LOGIN) != 0)
		sg_fuzz_fail("%s: SG_MECH_OK for login \"%s\"", m->name, res->login);
	/* mech.h: "res->reason says why" (log only). Off by default: a missing
	 * reason is a logging gap, not a security finding. */
	if (fz_strict && st != SG_MECH_CONTINUE && st != SG_MECH_OK && res->reason == NULL)
		sg_fuzz_fail("%s: status %d without res->reason", m->name, st);
	if (fz_debug)
		fprintf(stderr, "%s: status %d login \"%s\" reason %s out %zu\n", m->name, st,
			res->login, res->reason != NULL ? res->reason : "-", out->len);
}

int sg_fuzz_run_mech_hook(const struct sg_mech *m, const struct sg_sasl_server_env *env,
			  bool first_null, struct sg_fuzz_msg *msgs, size_t nmsgs, sg_fuzz_hook hook,
			  void *ctx)
{
	void *st = m->server_start(env);
	if (st == NULL)
		return -1;
	struct sg_mech_result res;
	memset(&res, 0, sizeof(res));
	struct sg_buf out;
	sg_buf_init(&out, SG_FUZZ_OUT_MAX);
	int status = SG_MECH_CONTINUE;
	size_t step = 0;
	if (first_null) {
		status = m->server_step(st, NULL, 0, &out, &res);
		check_result(m, status, &res, &out);
		if (hook != NULL && nmsgs > 0)
			hook(ctx, step, &out, &msgs[0]);
		step++;
	}
	for (size_t i = 0; i < nmsgs && status == SG_MECH_CONTINUE; i++) {
		sg_buf_reset(&out);
		/* exact-size copy: ASan catches a read one past the end */
		uint8_t *copy = NULL;
		if (msgs[i].p != NULL) {
			copy = sg_malloc(msgs[i].n > 0 ? msgs[i].n : 1);
			if (msgs[i].n > 0)
				memcpy(copy, msgs[i].p, msgs[i].n);
		}
		status = m->server_step(st, msgs[i].p != NULL ? copy : NULL, msgs[i].n, &out, &res);
		free(copy);
		check_result(m, status, &res, &out);
		if (hook != NULL && i + 1 < nmsgs)
			hook(ctx, step, &out, &msgs[i + 1]);
		step++;
	}
	sg_buf_free(&out);
	m->server_free(st);
	return status;
}

int sg_fuzz_run_mech(const struct sg_mech *m, const struct sg_sasl_server_env *env, bool first_null,
		     const struct sg_fuzz_msg *msgs, size_t nmsgs)
{
	struct sg_fuzz_msg copy[8];
	if (nmsgs > 8)
		nmsgs = 8;
	memcpy(copy, msgs, nmsgs * sizeof(*msgs));
	return sg_fuzz_run_mech_hook(m, env, first_null, copy, nmsgs, NULL, NULL);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

int sg_fuzz_run_pair(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		     const struct sg_sasl_client_env *cenv, unsigned patch_step, const uint8_t *patch,
		     size_t plen, bool expect_ok)
{
	const char *error = NULL;
	void *cst = m->client_start(cenv, &error);
	if (cst == NULL)
		sg_fuzz_fail("%s: client_start: %s", m->name, error != NULL ? error : "?");
	void *sst = m->server_start(senv);
	if (sst == NULL) {
		m->client_free(cst);
		return -1;
	}
	struct sg_mech_result res;
	memset(&res, 0, sizeof(res));
	struct sg_buf cout, sout;
	sg_buf_init(&cout, SG_FUZZ_OUT_MAX);
	sg_buf_init(&sout, SG_FUZZ_OUT_MAX);
	bool clean = true; /* nothing was patched */
	int sstatus = SG_MECH_CONTINUE, cstatus = SG_MECH_CONTINUE;

	if ((m->flags & SG_MECH_F_SERVER_FIRST) != 0) {
		sstatus = m->server_step(sst, NULL, 0, &sout, &res);
		check_result(m, sstatus, &res, &sout);
		if (sstatus != SG_MECH_CONTINUE)
			goto done;
		cstatus = m->client_step(cst, sout.data != NULL ? sout.data : (const uint8_t *)"",
					 sout.len, &cout, &error);
	} else {
		cstatus = m->client_step(cst, NULL, 0, &cout, &error);
	}
	for (unsigned k = 0; k < 8; k++) {
		if (cstatus != SG_MECH_CONTINUE && cstatus != SG_MECH_OK) {
			if (clean && expect_ok)
				sg_fuzz_fail("%s: client step %u failed: %s", m->name, k,
					     error != NULL ? error : "?");
			break;
		}
		/* the client message k, patched, in an exact-size buffer */
		size_t n = cout.len;
		if (k == patch_step && plen > 0) {
			if (plen > n || !all_zero(patch, plen))
				clean = false;
			if (plen > n)
				n = plen;
		}
		uint8_t *msg = sg_malloc(n > 0 ? n : 1);
		if (cout.len > 0)
			memcpy(msg, cout.data, cout.len);
		if (n > cout.len)
			memset(msg + cout.len, 0, n - cout.len);
		if (k == patch_step)
			for (size_t i = 0; i < plen; i++)
				msg[i] ^= patch[i];
		sg_buf_reset(&sout);
		sstatus = m->server_step(sst, msg, n, &sout, &res);
		free(msg);
		check_result(m, sstatus, &res, &sout);
		if (sstatus != SG_MECH_CONTINUE)
			break;
		sg_buf_reset(&cout);
		cstatus = m->client_step(cst, sout.data != NULL ? sout.data : (const uint8_t *)"",
					 sout.len, &cout, &error);
	}
done:
	if (clean && expect_ok && sstatus != SG_MECH_OK)
		sg_fuzz_fail("%s: unpatched exchange ended with status %d (%s)", m->name, sstatus,
			     res.reason != NULL ? res.reason : "-");
	sg_buf_free(&cout);
	sg_buf_free(&sout);
	m->client_free(cst);
	m->server_free(sst);
	return sstatus;
}

int sg_fuzz_mech_input(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		       const struct sg_sasl_client_env *cenv, const uint8_t *data, size_t size,
		       bool expect_ok)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0];
	if ((flags & SG_FUZZ_F_PAIR) != 0 && cenv != NULL) {
		if (size < 2)
			return 0;
		return sg_fuzz_run_pair(m, senv, cenv, data[1] % 4, data + 2, size - 2, expect_ok);
	}
	struct sg_fuzz_msg msgs[3];
	size_t n = sg_fuzz_split(data + 1, size - 1, msgs);
	/* a last empty message: the client's answer to a final challenge */
	msgs[n++] = (struct sg_fuzz_msg){(const uint8_t *)"", 0};
	return sg_fuzz_run_mech(m, senv, (flags & SG_FUZZ_F_NULL_FIRST) != 0, msgs, n);
}
