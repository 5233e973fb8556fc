/* Verifier derivation, text form and use (see cred.h and verifier.h). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "store/verifier.h"

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>

#include "core/b64.h"
#include "core/md4.h"
#include "core/secret.h"
#include "core/util.h"

const char *sg_cred_kind_name(enum sg_cred_kind kind)
{
	switch (kind) {
	case SG_CRED_PASSWORD_HASH: return "password_hash";
	case SG_CRED_CRAM_MD5: return "cram_md5";
	case SG_CRED_SCRAM_SHA1: return "scram_sha1";
	case SG_CRED_SCRAM_SHA256: return "scram_sha256";
	case SG_CRED_NT: return "nt";
	default: return NULL;
	}
}

bool sg_cred_params_want(const struct sg_cred_params *p, enum sg_cred_kind kind)
{
	unsigned legacy = p != NULL ? p->legacy : 0;
	switch (kind) {
	case SG_CRED_NT:
		return (legacy & SG_LEGACY_NTLM) != 0;
	case SG_CRED_CRAM_MD5:
		return (legacy & SG_LEGACY_CRAM_MD5) != 0;
	case SG_CRED_PASSWORD_HASH:
	case SG_CRED_SCRAM_SHA1:
	case SG_CRED_SCRAM_SHA256:
		return true;
	default:
		return false;
	}
}

int sg_cred_legacy_parse(const char *text, unsigned *bits_r, const char **bad_r)
{
	static _Thread_local char word[64];
	unsigned bits = 0;
	*bad_r = NULL;
	for (const char *p = text; *p != '\0';) {
		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		size_t n = strcspn(p, " ,\t");
		if (n == 0)
			break;
		if (n == 4 && strncasecmp(p, "ntlm", 4) == 0)
			bits |= SG_LEGACY_NTLM;
		else if (n == 8 && strncasecmp(p, "cram-md5", 8) == 0)
			bits |= SG_LEGACY_CRAM_MD5;
		else if (!(n == 4 && strncasecmp(p, "none", 4) == 0)) {
			size_t k = n < sizeof(word) - 1 ? n : sizeof(word) - 1;
			memcpy(word, p, k);
			word[k] = '\0';
			*bad_r = word;
			return -1;
		}
		p += n;
	}
	*bits_r = bits;
	return 0;
}

size_t sg_verifier_scram_key_len(enum sg_cred_kind kind)
{
	return kind == SG_CRED_SCRAM_SHA1 ? 20 : kind == SG_CRED_SCRAM_SHA256 ? 32 : 0;
}

static const EVP_MD *scram_md(enum sg_cred_kind kind)
{
	return kind == SG_CRED_SCRAM_SHA1 ? EVP_sha1() : EVP_sha256();
}

/* yescrypt with libxcrypt's default cost; libxcrypt draws the salt itself. */
static int derive_crypt(const char *password, struct sg_verifier *v)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting)) == NULL)
		return -1;
	struct crypt_data *cd = sg_calloc(1, sizeof(*cd));
	int ret = -1;
	const char *h = crypt_rn(password, setting, cd, sizeof(*cd));
	if (h != NULL && h[0] != '*' && strlen(h) < sizeof(v->u.crypt)) {
		sg_strlcpy(v->u.crypt, h, sizeof(v->u.crypt));
		ret = 0;
	}
	sg_wipe(cd, sizeof(*cd));
	free(cd);
	return ret;
}

int sg_verifier_check_crypt(const char *hash, const char *password)
{
	if (hash == NULL || password == NULL || hash[0] != '$')
		return 0;
	struct crypt_data *cd = sg_calloc(1, sizeof(*cd));
	int ret = 0;
	const char *h = crypt_rn(password, hash, cd, sizeof(*cd));
	if (h == NULL) {
		ret = -1;
	} else if (h[0] != '*') {
		size_t n = strlen(hash);
		ret = (strlen(h) == n && sg_ct_eq(h, hash, n)) ? 1 : 0;
	}
	sg_wipe(cd, sizeof(*cd));
	free(cd);
	return ret;
}

/* RFC 2104: K padded to 64 bytes (MD5 of it first when longer than 64);
 * the states after one block of K^ipad and K^opad are what we keep. */
static void derive_cram(const char *password, struct sg_verifier *v)
{
	uint8_t key[64] = {0}, block[64];
	size_t n = strlen(password);
	if (n > 64)
		MD5((const unsigned char *)password, n, key);
	else
		memcpy(key, password, n);
	MD5_CTX c;
	for (int i = 0; i < 64; i++)
		block[i] = key[i] ^ 0x36;
	MD5_Init(&c);
	MD5_Update(&c, block, 64);
	v->u.cram.inner[0] = c.A;
	v->u.cram.inner[1] = c.B;
	v->u.cram.inner[2] = c.C;
	v->u.cram.inner[3] = c.D;
	for (int i = 0; i < 64; i++)
		block[i] = key[i] ^ 0x5c;
	MD5_Init(&c);
	MD5_Update(&c, block, 64);
	v->u.cram.outer[0] = c.A;
	v->u.cram.outer[1] = c.B;
	v->u.cram.outer[2] = c.C;
	v->u.cram.outer[3] = c.D;
	sg_wipe(&c, sizeof(c));
	sg_wipe(key, sizeof(key));
	sg_wipe(block, sizeof(block));
}

static void md5_resume(MD5_CTX *c, const uint32_t st[4])
{
	MD5_Init(c);
	c->A = st[0];
	c->B = st[1];
	c->C = st[2];
	c->D = st[3];
	c->Nl = 512; /* one 64-byte block already processed */
	c->Nh = 0;
	c->num = 0;
}

void sg_cram_md5_response(const struct sg_verifier *v, const uint8_t *challenge, size_t n,
			  uint8_t out[16])
{
	MD5_CTX c;
	uint8_t inner[16];
	md5_resume(&c, v->u.cram.inner);
	MD5_Update(&c, challenge, n);
	MD5_Final(inner, &c);
	md5_resume(&c, v->u.cram.outer);
	MD5_Update(&c, inner, sizeof(inner));
	MD5_Final(out, &c);
	sg_wipe(&c, sizeof(c));
	sg_wipe(inner, sizeof(inner));
}

int sg_verifier_derive_scram(enum sg_cred_kind kind, const char *password, const uint8_t *salt,
			     size_t salt_len, unsigned iterations, struct sg_verifier *v)
{
	size_t klen = sg_verifier_scram_key_len(kind);
	if (klen == 0 || password == NULL || salt_len == 0 || salt_len > SG_SCRAM_SALT_MAX ||
	    iterations == 0 || iterations > SG_SCRAM_ITER_MAX)
		return -1;
	const EVP_MD *md = scram_md(kind);
	uint8_t salted[SG_SCRAM_KEY_MAX], client_key[SG_SCRAM_KEY_MAX];
	unsigned int outl = 0;
	int ret = -1;
	memset(v, 0, sizeof(*v));
	/* RFC 5802 section 3: SaltedPassword := Hi(Normalize(password), salt, i).
	 * SASLprep is not applied: passwords are used as given (UTF-8). */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
			      (int)iterations, md, (int)klen, salted) != 1)
		goto out;
	if (HMAC(md, salted, (int)klen, (const unsigned char *)"Client Key", 10, client_key,
		 &outl) == NULL || outl != klen)
		goto out;
	if (EVP_Digest(client_key, klen, v->u.scram.stored_key, &outl, md, NULL) != 1 ||
	    outl != klen)
		goto out;
	if (HMAC(md, salted, (int)klen, (const unsigned char *)"Server Key", 10,
		 v->u.scram.server_key, &outl) == NULL || outl != klen)
		goto out;
	v->kind = kind;
	v->u.scram.iterations = iterations;
	memcpy(v->u.scram.salt, salt, salt_len);
	v->u.scram.salt_len = salt_len;
	v->u.scram.key_len = klen;
	ret = 0;
out:
	sg_wipe(salted, sizeof(salted));
	sg_wipe(client_key, sizeof(client_key));
	if (ret != 0)
		sg_wipe(v, sizeof(*v));
	return ret;
}

int sg_verifier_derive(enum sg_cred_kind kind, const char *password, unsigned scram_iterations,
		       struct sg_verifier *v)
{
	if (password == NULL)
		return -1;
	memset(v, 0, sizeof(*v));
	switch (kind) {
	case SG_CRED_PASSWORD_HASH:
		if (derive_crypt(password, v) != 0)
			return -1;
		break;
	case SG_CRED_CRAM_MD5:
		derive_cram(password, v);
		break;
	case SG_CRED_SCRAM_SHA1:
	case SG_CRED_SCRAM_SHA256: {
		uint8_t salt[SG_SCRAM_SALT_LEN];
		sg_random(salt, sizeof(salt));
		return sg_verifier_derive_scram(kind, password, salt, sizeof(salt),
						scram_iterations != 0 ? scram_iterations
								      : SG_SCRAM_ITER_DEFAULT,
						v);
	}
	case SG_CRED_NT:
		if (sg_nt_hash(password, v->u.nt) != 0)
			return -1;
		break;
	default:
		return -1;
	}
	v->kind = kind;
	return 0;
}

static void put_le32(uint8_t *p, uint32_t w)
{
	p[0] = (uint8_t)w;
	p[1] = (uint8_t)(w >> 8);
	p[2] = (uint8_t)(w >> 16);
	p[3] = (uint8_t)(w >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const char *scram_prefix(enum sg_cred_kind kind)
{
	return kind == SG_CRED_SCRAM_SHA1 ? "scram-sha-1:" : "scram-sha-256:";
}

int sg_verifier_format(const struct sg_verifier *v, char *out, size_t size)
{
	int n;
	switch (v->kind) {
	case SG_CRED_PASSWORD_HASH:
		if (v->u.crypt[0] != '$' || !sg_strlcpy(out, v->u.crypt, size))
			return -1;
		return 0;
	case SG_CRED_CRAM_MD5: {
		uint8_t raw[32];
		char hex[65];
		for (int i = 0; i < 4; i++) {
			put_le32(raw + 4 * i, v->u.cram.outer[i]);
			put_le32(raw + 16 + 4 * i, v->u.cram.inner[i]);
		}
		sg_hex(raw, sizeof(raw), hex);
		n = snprintf(out, size, "cram-md5:%s", hex);
		sg_wipe(raw, sizeof(raw));
		sg_wipe(hex, sizeof(hex));
		break;
	}
	case SG_CRED_SCRAM_SHA1:
	case SG_CRED_SCRAM_SHA256: {
		size_t klen = sg_verifier_scram_key_len(v->kind);
		if (v->u.scram.key_len != klen || v->u.scram.salt_len == 0 ||
		    v->u.scram.salt_len > SG_SCRAM_SALT_MAX)
			return -1;
		char salt[SG_B64_ENCODED_LEN(SG_SCRAM_SALT_MAX) + 1];
		char sk[SG_B64_ENCODED_LEN(SG_SCRAM_KEY_MAX) + 1];
		char svk[SG_B64_ENCODED_LEN(SG_SCRAM_KEY_MAX) + 1];
		sg_b64_encode(v->u.scram.salt, v->u.scram.salt_len, salt);
		sg_b64_encode(v->u.scram.stored_key, klen, sk);
		sg_b64_encode(v->u.scram.server_key, klen, svk);
		n = snprintf(out, size, "%s%u:%s:%s:%s", scram_prefix(v->kind),
			     v->u.scram.iterations, salt, sk, svk);
		sg_wipe(sk, sizeof(sk));
		sg_wipe(svk, sizeof(svk));
		break;
	}
	case SG_CRED_NT: {
		char hex[33];
		sg_hex(v->u.nt, 16, hex);
		n = snprintf(out, size, "nt:%s", hex);
		sg_wipe(hex, sizeof(hex));
		break;
	}
	default:
		return -1;
	}
	if (n < 0 || (size_t)n >= size) {
		if (size > 0)
			sg_wipe(out, size);
		return -1;
	}
	return 0;
}

/* Decode one base64 field of exactly want bytes (want = 0: 1..max bytes). */
static int b64_field(const char *s, size_t n, uint8_t *out, size_t max, size_t want,
		     size_t *len_r)
{
	uint8_t tmp[SG_B64_DECODED_MAX(SG_B64_ENCODED_LEN(SG_SCRAM_SALT_MAX)) + 1];
	size_t len;
	if (n == 0 || n > SG_B64_ENCODED_LEN(max) || sg_b64_decode(s, n, tmp, &len) != 0)
		return -1;
	if (len == 0 || len > max || (want != 0 && len != want)) {
		sg_wipe(tmp, sizeof(tmp));
		return -1;
	}
	memcpy(out, tmp, len);
	sg_wipe(tmp, sizeof(tmp));
	*len_r = len;
	return 0;
}

static int parse_scram(enum sg_cred_kind kind, const char *text, struct sg_verifier *v)
{
	const char *prefix = scram_prefix(kind);
	size_t plen = strlen(prefix), klen = sg_verifier_scram_key_len(kind);
	if (strncmp(text, prefix, plen) != 0)
		return -1;
	const char *f[4];
	size_t flen[4];
	const char *p = text + plen;
	for (int i = 0; i < 4; i++) {
		const char *c = strchr(p, ':');
		if ((c == NULL) != (i == 3))
			return -1;
		f[i] = p;
		flen[i] = c != NULL ? (size_t)(c - p) : strlen(p);
		p = c != NULL ? c + 1 : NULL;
	}
	char num[16];
	uint64_t iter;
	if (flen[0] == 0 || flen[0] >= sizeof(num))
		return -1;
	memcpy(num, f[0], flen[0]);
	num[flen[0]] = '\0';
	if (sg_parse_u64(num, 1, SG_SCRAM_ITER_MAX, &iter) != 0)
		return -1;
	size_t len;
	if (b64_field(f[1], flen[1], v->u.scram.salt, SG_SCRAM_SALT_MAX, 0, &len) != 0)
		return -1;
	v->u.scram.salt_len = len;
	if (b64_field(f[2], flen[2], v->u.scram.stored_key, klen, klen, &len) != 0 ||
	    b64_field(f[3], flen[3], v->u.scram.server_key, klen, klen, &len) != 0)
		return -1;
	v->u.scram.iterations = (unsigned)iter;
	v->u.scram.key_len = klen;
	return 0;
}

int sg_verifier_parse(enum sg_cred_kind kind, const char *text, struct sg_verifier *v)
{
	int ret = -1;
	if (text == NULL)
		return -1;
	memset(v, 0, sizeof(*v));
	switch (kind) {
	case SG_CRED_PASSWORD_HASH:
		if (text[0] == '$' && strlen(text) > 1 && sg_strlcpy(v->u.crypt, text, sizeof(v->u.crypt)))
			ret = 0;
		break;
	case SG_CRED_CRAM_MD5: {
		uint8_t raw[32];
		if (strncmp(text, "cram-md5:", 9) == 0 && strlen(text + 9) == 64 &&
		    sg_unhex(text + 9, raw, sizeof(raw)) == 0) {
			for (int i = 0; i < 4; i++) {
				v->u.cram.outer[i] = get_le32(raw + 4 * i);
				v->u.cram.inner[i] = get_le32(raw + 16 + 4 * i);
			}
			ret = 0;
		}
		sg_wipe(raw, sizeof(raw));
		break;
	}
	case SG_CRED_SCRAM_SHA1:
	case SG_CRED_SCRAM_SHA256:
		ret = parse_scram(kind, text, v);
		break;
	case SG_CRED_NT:
		if (strncmp(text, "nt:", 3) == 0 && strlen(text + 3) == 32 &&
		    sg_unhex(text + 3, v->u.nt, 16) == 0)
			ret = 0;
		break;
	default:
		break;
	}
	if (ret == 0)
		v->kind = kind;
	else
		sg_wipe(v, sizeof(*v));
	return ret;
}
