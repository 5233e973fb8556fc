/*
 * fuzz_mech_external: the server side of EXTERNAL (TLS client certificate identity) through the sg_mech interface.
 * Input (fuzz_common.h, sg_fuzz_mech_input): data[0] flags (bit 0: a step
 * with in == NULL first; bit 7: pair mode with the mechanism's own client),
 * then data[1] = length of the first client message and the rest the second
 * (raw mode), or data[1] = which client message to patch and the XOR patch
 * (pair mode).
 * data[0] bits 1-2 pick the certificate identity: alice, none, an address,
 * an unknown name.
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
	static const char *const ids[4] = {SG_FUZZ_LOGIN, NULL, "alice@example.test", "mallory"};
	if (size < 1)
		return 0;
	env.cert_identity = ids[(data[0] >> 1) & 3];
	cenv.authzid = (data[0] & 8) != 0 ? SG_FUZZ_LOGIN : NULL;
	(void)sg_fuzz_mech_input(&sg_mech_external, &env, &cenv, data, size,
				 env.cert_identity == ids[0]);
	return 0;
}
