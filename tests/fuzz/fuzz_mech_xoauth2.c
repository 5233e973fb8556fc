/*
 * fuzz_mech_xoauth2: the server side of XOAUTH2 through the sg_mech interface.
 * Input (fuzz_common.h, sg_fuzz_mech_input): data[0] flags (bit 0: a step
 * with in == NULL first; bit 7: pair mode with the mechanism's own client),
 * then data[1] = length of the first client message and the rest the second
 * (raw mode), or data[1] = which client message to patch and the XOR patch
 * (pair mode).
 * In raw mode "%T" stands for a valid bearer token for alice.
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
	cenv.token = sg_fuzz_token();
	if (size < 1)
		return 0;
	if ((data[0] & SG_FUZZ_F_PAIR) != 0) {
		(void)sg_fuzz_mech_input(&sg_mech_xoauth2, &env, &cenv, data, size, true);
		return 0;
	}
	/* split first, then "%T" -> the token in each message */
	struct sg_fuzz_msg msgs[3];
	uint8_t *bufs[2] = {NULL, NULL};
	size_t n = sg_fuzz_split(data + 1, size - 1, msgs);
	for (size_t i = 0; i < n; i++) {
		size_t len = 0;
		sg_fuzz_subst(msgs[i].p, msgs[i].n, "%T", sg_fuzz_token(), &bufs[i], &len);
		msgs[i] = (struct sg_fuzz_msg){bufs[i], len};
	}
	msgs[n++] = (struct sg_fuzz_msg){(const uint8_t *)"", 0};
	(void)sg_fuzz_run_mech(&sg_mech_xoauth2, &env, (data[0] & SG_FUZZ_F_NULL_FIRST) != 0, msgs, n);
	free(bufs[0]);
	free(bufs[1]);
	return 0;
}
