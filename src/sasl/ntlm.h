/*
 * ntlm.h: NTLM cryptography (MS-NLMP 3.3 and 3.4.5), pure functions over
 * byte strings. Every function returns 0, or -1 when OpenSSL cannot provide
 * the primitive (MD5, HMAC-MD5; DES only for NTLMv1). Outputs are secrets:
 * callers wipe them.
 *
 * The NT hash itself (NTOWFv1 = MD4(UNICODE(password))) is sg_nt_hash() in
 * core/md4.h; the store keeps only that hash (SG_CRED_NT).
 *
 * DES (NTLMv1 only) lives in OpenSSL 3's legacy provider. It is loaded into a
 * private library context (OSSL_LIB_CTX_new + OSSL_PROVIDER_load(ctx,
 * "legacy")) once, on first use, rather than into the default context:
 * loading any provider into the default context stops OpenSSL from loading
 * the default provider implicitly, which would break TLS and every other
 * digest in the process.
 */
#ifndef SG_NTLM_H
#define SG_NTLM_H

#include <stddef.h>
#include <stdint.h>

/* NTLMv2 (MS-NLMP 3.3.2):
 *   NTOWFv2 = HMAC-MD5(NT hash, UNICODE(Uppercase(User) || UserDom))
 * user16 and dom16 are UTF-16LE; the user is upper-cased on a copy. */
int sg_ntlm_ntowfv2(const uint8_t nt_hash[16], const uint8_t *user16, size_t user_len,
		    const uint8_t *dom16, size_t dom_len, uint8_t out[16]);
/*   NTProofStr = HMAC-MD5(NTOWFv2, ServerChallenge || temp), where temp is
 *   the blob after the first 16 octets of NtChallengeResponse. */
int sg_ntlm_v2_proof(const uint8_t ntowfv2[16], const uint8_t server_challenge[8],
		     const uint8_t *blob, size_t blob_len, uint8_t out[16]);
/*   SessionBaseKey = HMAC-MD5(NTOWFv2, NTProofStr) */
int sg_ntlm_v2_session_key(const uint8_t ntowfv2[16], const uint8_t proof[16], uint8_t out[16]);

/* NTLMv1 (MS-NLMP 3.3.1): DESL(NT hash, challenge), 24 octets. */
int sg_ntlm_v1_response(const uint8_t nt_hash[16], const uint8_t challenge[8], uint8_t out[24]);
/* NTLM2 session response (v1 with NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY):
 * the challenge DESL uses is MD5(ServerChallenge || ClientChallenge)[0..7]. */
int sg_ntlm_ess_challenge(const uint8_t server_challenge[8], const uint8_t client_challenge[8],
			  uint8_t out[8]);
/* Is DES available (legacy provider loaded)? 1 / 0. */
int sg_ntlm_des_available(void);

/* MIC (MS-NLMP 3.1.5.1.2): HMAC-MD5(ExportedSessionKey, NEGOTIATE ||
 * CHALLENGE || AUTHENTICATE with the MIC field zeroed). */
int sg_ntlm_mic(const uint8_t key[16], const uint8_t *neg, size_t neg_len, const uint8_t *chal,
		size_t chal_len, const uint8_t *auth, size_t auth_len, size_t mic_offset,
		uint8_t out[16]);
/* RC4 (for NTLMSSP_NEGOTIATE_KEY_EXCH: ExportedSessionKey =
 * RC4(KeyExchangeKey, EncryptedRandomSessionKey)); in may equal out. */
void sg_ntlm_rc4(const uint8_t *key, size_t key_len, const uint8_t *in, size_t n, uint8_t *out);

#endif
