/*
 * fuzz_mech_login: the server side of LOGIN through the sg_mech interface.
 * Input (fuzz_common.h, sg_fuzz_mech_input): data[0] flags (bit 0: a step
 * with in == NULL first; bit 7: pair mode with the mechanism's own client),
 * then data[1] = length of the first client message and the rest the second
 * (raw mode), or data[1] = which client message to patch and the XOR patch
 * (pair mode).
 */
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
	(void)sg_fuzz_mech_input(&sg_mech_login, &env, &cenv, data, size, true);
	return 0;
}
