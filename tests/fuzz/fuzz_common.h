/*
 * fuzz_common.h: shared set-up for the libFuzzer targets (tests/fuzz).
 *
 * Every target is one fuzz_<name>.c defining LLVMFuzzerTestOneInput. The
 * mechanism targets share one credential store: a SQLite file under /tmp,
 * created once (sg_fuzz_init, called from LLVMFuzzerInitialize) with the
 * account alice / s3cret (scram_iterations 4096), removed at exit.
 *
 * Input conventions for multi-message exchanges:
 *  - sg_fuzz_split: data[0] is the length of the first message, which is
 *    data[1 .. 1+data[0]); the rest is the second message (absent when the
 *    input ends inside the first).
 *  - placeholders in fuzzer bytes, replaced before the message reaches the
 *    mechanism so that the fuzzer can get past random nonces and signatures:
 *    "%T" a valid HS256 bearer token for alice (sg_fuzz_subst).
 *
 * Invariants checked for every mechanism (sg_fuzz_run_mech): the status is a
 * known enum value, SG_MECH_OK only for the account "alice", res->login is
 * NUL-terminated, and the output never exceeds its cap. A violation aborts
 * (libFuzzer records a crash).
 */
#ifndef SG_FUZZ_COMMON_H
#define SG_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "sasl/mech.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define SG_FUZZ_LOGIN "alice"
#define SG_FUZZ_PASSWORD "s3cret"
#define SG_FUZZ_HOST "mx.example.test"
#define SG_FUZZ_OUT_MAX 65536
/* The fixed HS256 key (32 octets) of every OAuth target. */
extern const uint8_t sg_fuzz_hs256_key[32];
/* A JWKS with one RSA (kid "rsa1") and one P-256 (kid "ec1") key. */
extern const char sg_fuzz_jwks_json[];

/* Create the store and the env once; safe to call more than once. */
void sg_fuzz_init(void);
struct sg_cred_store *sg_fuzz_store(void);
/* A mutable copy of the default env (tls, hostname, creds, config). */
struct sg_sasl_server_env sg_fuzz_env(void);
/* The config: HS256 key, JWKS, issuer "https://issuer.example.test",
 * audience "smtp". */
const struct sg_sasl_config *sg_fuzz_cfg(void);
/* A valid HS256 token for alice that expires in ~100 years. */
const char *sg_fuzz_token(void);

/* Abort with a message (a finding). */
_Noreturn void sg_fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct sg_fuzz_msg {
	const uint8_t *p; /* NULL = no message (step called with in == NULL) */
	size_t n;
};
/* See the header comment. Returns the number of messages (1 or 2). */
size_t sg_fuzz_split(const uint8_t *data, size_t size, struct sg_fuzz_msg m[2]);
/* Replace every pat by rep; malloc'd result in *out_r (free it). */
void sg_fuzz_subst(const uint8_t *in, size_t n, const char *pat, const char *rep, uint8_t **out_r,
		   size_t *outn_r);

/* Start mech, run the messages in order while the mechanism says CONTINUE,
 * check the invariants, free. Each message is copied into an exact-size heap
 * buffer first, so a read past its end is caught. When first_null is true a
 * step with in == NULL comes before the messages (no initial response).
 * Returns the last status (or -1 when server_start refused). */
int sg_fuzz_run_mech(const struct sg_mech *m, const struct sg_sasl_server_env *env, bool first_null,
		     const struct sg_fuzz_msg *msgs, size_t nmsgs);
/* The same, with a hook called after each step (may rewrite the next
 * message, e.g. to fill in a nonce from the challenge in out). */
typedef void (*sg_fuzz_hook)(void *ctx, size_t step, const struct sg_buf *out,
			     struct sg_fuzz_msg *next);
int sg_fuzz_run_mech_hook(const struct sg_mech *m, const struct sg_sasl_server_env *env,
			  bool first_null, struct sg_fuzz_msg *msgs, size_t nmsgs, sg_fuzz_hook hook,
			  void *ctx);

/*
 * Pair mode: the mechanism's own client (client_start/client_step with
 * cenv) talks to its server side in memory; the client message number
 * patch_step (0 = the first the server sees) is XOR-ed with patch (bytes past
 * the end of the message are appended). With an all-zero patch no longer
 * than the message, the exchange must end in SG_MECH_OK (when expect_ok).
 * This gets the fuzzer past random nonces, challenges and MACs. Returns the
 * server's last status.
 */
int sg_fuzz_run_pair(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		     const struct sg_sasl_client_env *cenv, unsigned patch_step, const uint8_t *patch,
		     size_t plen, bool expect_ok);

/* The usual shape of a mechanism target: data[0] flags (bit 0: step with
 * in == NULL first; bit 7: pair mode), then in raw mode sg_fuzz_split of
 * the rest, in pair mode data[1] = patch_step and the rest the patch. */
#define SG_FUZZ_F_NULL_FIRST 0x01u
#define SG_FUZZ_F_PAIR 0x80u
int sg_fuzz_mech_input(const struct sg_mech *m, const struct sg_sasl_server_env *senv,
		       const struct sg_sasl_client_env *cenv, const uint8_t *data, size_t size,
		       bool expect_ok);

#endif
