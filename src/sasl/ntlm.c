/*
 * ntlm.c: NTLM cryptography (contract in ntlm.h).
 */
#include "sasl/ntlm.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "core/secret.h"
#include "sasl/ntlm_msg.h"

struct part {
	const uint8_t *p;
	size_t n;
};

/* HMAC-MD5 over the concatenation of parts. */
static int hmac_md5(const uint8_t *key, size_t key_len, const struct part *parts, size_t nparts,
		    uint8_t out[16])
{
	int ret = -1;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	char digest[] = "MD5";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	size_t outl = 0;
	if (ctx == NULL || EVP_MAC_init(ctx, key, key_len, params) != 1)
		goto out;
	for (size_t i = 0; i < nparts; i++) {
		if (parts[i].n > 0 && EVP_MAC_update(ctx, parts[i].p, parts[i].n) != 1)
			goto out;
	}
	if (EVP_MAC_final(ctx, out, &outl, 16) != 1 || outl != 16)
		goto out;
	ret = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ret;
}

int sg_ntlm_ntowfv2(const uint8_t nt_hash[16], const uint8_t *user16, size_t user_len,
		    const uint8_t *dom16, size_t dom_len, uint8_t out[16])
{
	uint8_t upper[2 * SG_NTLM_NAME_MAX]; /* OEM names widen to twice their size */
	if (user_len > sizeof(upper))
		return -1;
	if (user_len > 0)
		memcpy(upper, user16, user_len);
	sg_ntlm_upper_utf16(upper, user_len);
	struct part parts[] = {{upper, user_len}, {dom16, dom_len}};
	int r = hmac_md5(nt_hash, 16, parts, 2, out);
	sg_wipe(upper, sizeof(upper));
	return r;
}

int sg_ntlm_v2_proof(const uint8_t ntowfv2[16], const uint8_t server_challenge[8],
		     const uint8_t *blob, size_t blob_len, uint8_t out[16])
{
	struct part parts[] = {{server_challenge, 8}, {blob, blob_len}};
	return hmac_md5(ntowfv2, 16, parts, 2, out);
}

int sg_ntlm_v2_session_key(const uint8_t ntowfv2[16], const uint8_t proof[16], uint8_t out[16])
{
	struct part parts[] = {{proof, 16}};
	return hmac_md5(ntowfv2, 16, parts, 1, out);
}

int sg_ntlm_mic(const uint8_t key[16], const uint8_t *neg, size_t neg_len, const uint8_t *chal,
		size_t chal_len, const uint8_t *auth, size_t auth_len, size_t mic_offset,
		uint8_t out[16])
{
	static const uint8_t zero[SG_NTLM_MIC_LEN];
	if (mic_offset > auth_len || auth_len - mic_offset < SG_NTLM_MIC_LEN)
		return -1;
	struct part parts[] = {
		{neg, neg_len},
		{chal, chal_len},
		{auth, mic_offset},
		{zero, SG_NTLM_MIC_LEN},
		{auth + mic_offset + SG_NTLM_MIC_LEN, auth_len - mic_offset - SG_NTLM_MIC_LEN},
	};
	return hmac_md5(key, 16, parts, 5, out);
}

int sg_ntlm_ess_challenge(const uint8_t server_challenge[8], const uint8_t client_challenge[8],
			  uint8_t out[8])
{
	uint8_t in[16], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	memcpy(in, server_challenge, 8);
	memcpy(in + 8, client_challenge, 8);
	if (EVP_Digest(in, sizeof(in), md, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16)
		return -1;
	memcpy(out, md, 8);
	sg_wipe(md, sizeof(md));
	return 0;
}

/* DES from the legacy provider, in a private library context. */
static pthread_once_t des_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *des_ecb;

static void des_init(void)
{
	OSSL_LIB_CTX *ctx = OSSL_LIB_CTX_new();
	if (ctx == NULL)
		return;
	if (OSSL_PROVIDER_load(ctx, "legacy") == NULL) {
		OSSL_LIB_CTX_free(ctx);
		return;
	}
	/* The context and the cipher live until exit. */
	des_ecb = EVP_CIPHER_fetch(ctx, "DES-ECB", NULL);
}

int sg_ntlm_des_available(void)
{
	pthread_once(&des_once, des_init);
	return des_ecb != NULL;
}

/* 56 key bits in 7 octets to a DES key in 8 (MS-NLMP 6, "DES"); the parity
 * bits are set although DES-ECB ignores them. */
static void des_key(const uint8_t in[7], uint8_t k[8])
{
	k[0] = in[0];
	k[1] = (uint8_t)((in[0] << 7) | (in[1] >> 1));
	k[2] = (uint8_t)((in[1] << 6) | (in[2] >> 2));
	k[3] = (uint8_t)((in[2] << 5) | (in[3] >> 3));
	k[4] = (uint8_t)((in[3] << 4) | (in[4] >> 4));
	k[5] = (uint8_t)((in[4] << 3) | (in[5] >> 5));
	k[6] = (uint8_t)((in[5] << 2) | (in[6] >> 6));
	k[7] = (uint8_t)(in[6] << 1);
	for (int i = 0; i < 8; i++) {
		uint8_t b = k[i] & 0xFE;
		uint8_t par = 1;
		for (int j = 1; j < 8; j++)
			par ^= (uint8_t)((b >> j) & 1u);
		k[i] = b | par;
	}
}

static int des_encrypt(const uint8_t key7[7], const uint8_t in[8], uint8_t out[8])
{
	uint8_t k[8];
	int outl = 0, ret = -1;
	des_key(key7, k);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	if (c != NULL && EVP_EncryptInit_ex2(c, des_ecb, k, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_set_padding(c, 0) == 1 && EVP_EncryptUpdate(c, out, &outl, in, 8) == 1 &&
	    outl == 8)
		ret = 0;
	EVP_CIPHER_CTX_free(c);
	sg_wipe(k, sizeof(k));
	return ret;
}

int sg_ntlm_v1_response(const uint8_t nt_hash[16], const uint8_t challenge[8], uint8_t out[24])
{
	/* DESL(K, D) = DES(K[0..6], D) || DES(K[7..13], D) || DES(K[14..15] || Z(5), D) */
	if (!sg_ntlm_des_available())
		return -1;
	uint8_t k[21];
	memset(k, 0, sizeof(k));
	memcpy(k, nt_hash, 16);
	int r = 0;
	for (int i = 0; i < 3 && r == 0; i++)
		r = des_encrypt(k + 7 * i, challenge, out + 8 * i);
	sg_wipe(k, sizeof(k));
	return r;
}

void sg_ntlm_rc4(const uint8_t *key, size_t key_len, const uint8_t *in, size_t n, uint8_t *out)
{
	uint8_t s[256];
	for (int i = 0; i < 256; i++)
		s[i] = (uint8_t)i;
	uint8_t j = 0;
	for (int i = 0; i < 256; i++) {
		j = (uint8_t)(j + s[i] + key[(size_t)i % key_len]);
		uint8_t t = s[i];
		s[i] = s[j];
		s[j] = t;
	}
	uint8_t a = 0, b = 0;
	for (size_t k = 0; k < n; k++) {
		a = (uint8_t)(a + 1);
		b = (uint8_t)(b + s[a]);
		uint8_t t = s[a];
		s[a] = s[b];
		s[b] = t;
		out[k] = in[k] ^ s[(uint8_t)(s[a] + s[b])];
	}
	sg_wipe(s, sizeof(s));
}
