/*
 * fuzz_mech_scram: the server side of SCRAM-SHA-1/-256 and their -PLUS variants through the sg_mech interface.
 * Input (fuzz_common.h, sg_fuzz_mech_input): data[0] flags (bit 0: a step
 * with in == NULL first; bit 7: pair mode with the mechanism's own client),
 * then data[1] = length of the first client message and the rest the second
 * (raw mode), or data[1] = which client message to patch and the XOR patch
 * (pair mode).
 * data[0] bits 1-2 pick the mechanism (SHA-256, SHA-1, SHA-256-PLUS,
 * SHA-1-PLUS). In raw mode the two messages are client-first and
 * client-final; "%N" in client-final stands for the server's full nonce
 * (r= of server-first), so mutations get past the nonce check.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "sasl/mechs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	sg_fuzz_init();
	return 0;
}

struct nonce_ctx {
	uint8_t *buf;
};

/* After server-first ("r=<nonce>,s=...,i=..."), "%N" in the next message
 * becomes the nonce. */
static void nonce_hook(void *vctx, size_t step, const struct sg_buf *out, struct sg_fuzz_msg *next)
{
	struct nonce_ctx *ctx = vctx;
	if (out->len < 2 || memcmp(out->data, "r=", 2) != 0 || next->p == NULL)
		return;
	const char *r = (const char *)out->data + 2;
	const char *e = memchr(r, ',', out->len - 2);
	if (e == NULL)
		return;
	char nonce[600];
	size_t nl = (size_t)(e - r);
	if (nl >= sizeof(nonce))
		return;
	memcpy(nonce, r, nl);
	nonce[nl] = '\0';
	size_t n = 0;
	free(ctx->buf);
	sg_fuzz_subst(next->p, next->n, "%N", nonce, &ctx->buf, &n);
	next->p = ctx->buf;
	next->n = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_sasl_server_env env = sg_fuzz_env();
	struct sg_sasl_client_env cenv = {
		.authcid = SG_FUZZ_LOGIN,
		.password = SG_FUZZ_PASSWORD,
		.host = SG_FUZZ_HOST,
		.port = 587,
		.service = "smtp",
	};
	static const struct sg_mech *const mechs[4] = {
		&sg_mech_scram_sha256, &sg_mech_scram_sha1, &sg_mech_scram_sha256_plus,
		&sg_mech_scram_sha1_plus};
	if (size < 1)
		return 0;
	const struct sg_mech *m = mechs[(data[0] >> 1) & 3];
	cenv.cb_type = env.cb_type;
	cenv.cb_data = env.cb_data;
	cenv.cb_len = env.cb_len;
	cenv.server_offers_plus = true;
	if ((data[0] & SG_FUZZ_F_PAIR) != 0) {
		(void)sg_fuzz_mech_input(m, &env, &cenv, data, size, true);
		return 0;
	}
	struct sg_fuzz_msg msgs[3];
	size_t n = sg_fuzz_split(data + 1, size - 1, msgs);
	msgs[n++] = (struct sg_fuzz_msg){(const uint8_t *)"", 0};
	struct nonce_ctx ctx = {0};
	(void)sg_fuzz_run_mech_hook(m, &env, (data[0] & SG_FUZZ_F_NULL_FIRST) != 0, msgs, n,
				    nonce_hook, &ctx);
	free(ctx.buf);
	return 0;
}
