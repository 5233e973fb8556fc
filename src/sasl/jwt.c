/* jwt.c: JWS compact verification (HS256, RS256, ES256), JWKS, HS256 minting. */
#include "sasl/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h> /* isfinite: a macro, no libm */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/b64.h"
#include "core/secret.h"
#include "core/util.h"

#define JWKS_FILE_MAX (1024 * 1024)
#define JWK_RSA_MIN_BITS 2048
#define JWK_RSA_MAX_BYTES 1024 /* 8192-bit modulus */
#define OAUTH_SECRET_FILE_MAX 1024
#define OAUTH_SECRET_CONFIGURED_MIN 16

enum jwk_type { JWK_RSA, JWK_EC };

struct sg_jwk {
	enum jwk_type type;
	char *kid;             /* NULL when the key has none */
	char *alg;             /* NULL when the key has none */
	EVP_PKEY *pkey;
};

struct sg_jwks {
	size_t count;
	struct sg_jwk *keys;
};

/* ---- base64url helpers ------------------------------------------------ */

static bool b64url_chars(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Decode into a fresh buffer (NUL-terminated, not counted). NULL if invalid. */
static uint8_t *b64url_dup(const char *s, size_t n, size_t *outlen)
{
	uint8_t *out = sg_malloc(n / 4 * 3 + 4);
	if (sg_b64url_decode(s, n, out, outlen) < 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* ---- JWKS ----------------------------------------------------------------- */

static uint8_t *jwk_member_bytes(json_t *key, const char *name, size_t max, size_t *len)
{
	const char *s = json_string_value(json_object_get(key, name));
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	if (n == 0 || n > (max / 3 + 1) * 4 || !b64url_chars(s, n))
		return NULL;
	uint8_t *b = b64url_dup(s, n, len);
	if (b != NULL && (*len == 0 || *len > max)) {
		free(b);
		return NULL;
	}
	return b;
}

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *jwk_rsa(json_t *key, const char **error_r)
{
	size_t nlen = 0, elen = 0;
	uint8_t *n = jwk_member_bytes(key, "n", JWK_RSA_MAX_BYTES, &nlen);
	uint8_t *e = jwk_member_bytes(key, "e", 8, &elen);
	EVP_PKEY *pkey = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	*error_r = "RSA key: bad or missing \"n\" or \"e\"";
	if (n == NULL || e == NULL)
		goto out;
	bn_n = BN_bin2bn(n, (int)nlen, NULL);
	bn_e = BN_bin2bn(e, (int)elen, NULL);
	if (bn_n == NULL || bn_e == NULL)
		goto out;
	if (BN_num_bits(bn_n) < JWK_RSA_MIN_BITS) {
		*error_r = "RSA key shorter than 2048 bits";
		goto out;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
		goto out;
	pkey = pkey_fromdata("RSA", bld);
	if (pkey == NULL)
		*error_r = "RSA key rejected by OpenSSL";
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return pkey;
}

static EVP_PKEY *jwk_ec(json_t *key, const char **error_r)
{
	const char *crv = json_string_value(json_object_get(key, "crv"));
	size_t xlen = 0, ylen = 0;
	uint8_t *x = NULL, *y = NULL;
	EVP_PKEY *pkey = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	if (crv == NULL || strcmp(crv, "P-256") != 0) {
		*error_r = "EC key: only crv P-256 is supported";
		return NULL;
	}
	/* RFC 7518 section 6.2.1.2: x and y are the full 32 octets. */
	*error_r = "EC key: bad or missing \"x\" or \"y\"";
	x = jwk_member_bytes(key, "x", 32, &xlen);
	y = jwk_member_bytes(key, "y", 32, &ylen);
	if (x == NULL || y == NULL || xlen != 32 || ylen != 32)
		goto out;
	uint8_t pub[65];
	pub[0] = 0x04;
	memcpy(pub + 1, x, 32);
	memcpy(pub + 33, y, 32);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)))
		goto out;
	pkey = pkey_fromdata("EC", bld);
	if (pkey != NULL) {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		if (ctx == NULL || EVP_PKEY_public_check(ctx) != 1) {
			EVP_PKEY_free(pkey);
			pkey = NULL;
		}
		EVP_PKEY_CTX_free(ctx);
	}
	if (pkey == NULL)
		*error_r = "EC key: point not on P-256";
out:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return pkey;
}

void sg_jwks_free(void **jwksp)
{
	struct sg_jwks *jwks = *jwksp;
	if (jwks == NULL)
		return;
	for (size_t i = 0; i < jwks->count; i++) {
		free(jwks->keys[i].kid);
		free(jwks->keys[i].alg);
		EVP_PKEY_free(jwks->keys[i].pkey);
	}
	free(jwks->keys);
	free(jwks);
	*jwksp = NULL;
}

int sg_jwks_parse(const char *text, size_t len, void **jwks_r, const char **error_r)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *keys = json_object_get(root, "keys");
	*jwks_r = NULL;
	if (root == NULL || !json_is_object(root) || !json_is_array(keys)) {
		*error_r = "JWKS: not a JSON object with a \"keys\" array";
		json_decref(root);
		return -1;
	}
	struct sg_jwks *jwks = sg_calloc(1, sizeof(*jwks));
	jwks->keys = sg_calloc(json_array_size(keys), sizeof(*jwks->keys));
	void *vj = jwks;
	size_t i;
	json_t *key;
	json_array_foreach(keys, i, key) {
		if (!json_is_object(key)) {
			*error_r = "JWKS: a key is not an object";
			goto fail;
		}
		const char *kty = json_string_value(json_object_get(key, "kty"));
		const char *use = json_string_value(json_object_get(key, "use"));
		json_t *jkid = json_object_get(key, "kid");
		json_t *jalg = json_object_get(key, "alg");
		if (kty == NULL) {
			*error_r = "JWKS: a key has no \"kty\"";
			goto fail;
		}
		if ((jkid != NULL && !json_is_string(jkid)) || (jalg != NULL && !json_is_string(jalg))) {
			*error_r = "JWKS: \"kid\" and \"alg\" must be strings";
			goto fail;
		}
		/* RFC 7517 section 4.2: keys meant for encryption are not ours. */
		if (use != NULL && strcmp(use, "sig") != 0)
			continue;
		const char *alg = json_string_value(jalg);
		struct sg_jwk *k = &jwks->keys[jwks->count];
		if (strcmp(kty, "RSA") == 0) {
			if (alg != NULL && strcmp(alg, "RS256") != 0)
				continue; /* RS384, PS256...: not supported, not an error */
			k->type = JWK_RSA;
			k->pkey = jwk_rsa(key, error_r);
		} else if (strcmp(kty, "EC") == 0) {
			if (alg != NULL && strcmp(alg, "ES256") != 0)
				continue;
			const char *crv = json_string_value(json_object_get(key, "crv"));
			if (crv != NULL && strcmp(crv, "P-256") != 0)
				continue; /* P-384, P-521: not supported */
			k->type = JWK_EC;
			k->pkey = jwk_ec(key, error_r);
		} else {
			continue; /* "oct", "OKP": skipped */
		}
		if (k->pkey == NULL)
			goto fail;
		if (jkid != NULL)
			k->kid = sg_strdup(json_string_value(jkid));
		if (alg != NULL)
			k->alg = sg_strdup(alg);
		jwks->count++;
	}
	if (jwks->count == 0) {
		*error_r = "JWKS: no usable RS256 or ES256 signing key";
		goto fail;
	}
	json_decref(root);
	*jwks_r = jwks;
	return 0;
fail:
	json_decref(root);
	sg_jwks_free(&vj);
	return -1;
}

static int read_small_file(const char *path, size_t max, char **data_r, size_t *len_r,
			   const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = errno == ENOENT ? "file not found" : "cannot open file";
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size > max) {
		*error_r = "not a regular file of a sensible size";
		close(fd);
		return -1;
	}
	size_t want = (size_t)st.st_size, got = 0;
	char *data = sg_malloc(want + 1);
	while (got < want) {
		ssize_t r = read(fd, data + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got != want) {
		*error_r = "short read";
		sg_wipe(data, want);
		free(data);
		return -1;
	}
	data[got] = '\0';
	*data_r = data;
	*len_r = got;
	return 0;
}

int sg_jwks_load(const char *path, void **jwks_r, const char **error_r)
{
	char *text;
	size_t len;
	*jwks_r = NULL;
	if (read_small_file(path, JWKS_FILE_MAX, &text, &len, error_r) < 0)
		return -1;
	int r = sg_jwks_parse(text, len, jwks_r, error_r);
	free(text);
	return r;
}

/* ---- verification ------------------------------------------------------- */

static int hs256_verify(const struct sg_sasl_config *cfg, const char *input, size_t inlen,
			const uint8_t *sig, size_t siglen, const char **reason_r)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	if (cfg->oauth_hs256_secret == NULL || cfg->oauth_hs256_secret_len == 0) {
		*reason_r = "no_key";
		return 0;
	}
	if (HMAC(EVP_sha256(), cfg->oauth_hs256_secret, (int)cfg->oauth_hs256_secret_len,
		 (const uint8_t *)input, inlen, mac, &maclen) == NULL || maclen != 32) {
		*reason_r = "internal_error";
		return -1;
	}
	bool ok = siglen == 32 && sg_ct_eq(mac, sig, 32);
	sg_wipe(mac, sizeof(mac));
	if (!ok)
		*reason_r = "bad_signature";
	return ok ? 1 : 0;
}

/* RFC 7518 section 3.4: the ES256 signature is R || S, 32 octets each;
 * EVP_DigestVerify wants a DER ECDSA-Sig-Value. */
static uint8_t *es256_to_der(const uint8_t *sig, size_t siglen, size_t *derlen)
{
	if (siglen != 64)
		return NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	uint8_t *der = NULL;
	if (es == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(es, r, s)) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	int n = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return NULL;
	*derlen = (size_t)n;
	return der;
}

static int pkey_verify(EVP_PKEY *pkey, const char *input, size_t inlen, const uint8_t *sig,
		       size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (md == NULL)
		return -1;
	int r = -1;
	if (EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1)
		r = EVP_DigestVerify(md, sig, siglen, (const uint8_t *)input, inlen) == 1 ? 1 : 0;
	EVP_MD_CTX_free(md);
	return r;
}

static int jwks_verify(const struct sg_sasl_config *cfg, enum jwk_type type, const char *alg,
		       const char *kid, const char *input, size_t inlen, const uint8_t *sig,
		       size_t siglen, const char **reason_r)
{
	void *owned = NULL;
	const struct sg_jwks *jwks = cfg->oauth_jwks;
	if (jwks == NULL && cfg->oauth_jwks_file != NULL && cfg->oauth_jwks_file[0] != '\0') {
		const char *err;
		if (sg_jwks_load(cfg->oauth_jwks_file, &owned, &err) < 0) {
			*reason_r = "internal_error";
			return -1;
		}
		jwks = owned;
	}
	if (jwks == NULL) {
		*reason_r = "no_key";
		return 0;
	}
	uint8_t *der = NULL;
	size_t derlen = 0;
	if (type == JWK_EC) {
		der = es256_to_der(sig, siglen, &derlen);
		if (der == NULL) {
			*reason_r = "bad_signature";
			sg_jwks_free(&owned);
			return 0;
		}
		sig = der;
		siglen = derlen;
	}
	int candidates = 0, result = 0;
	*reason_r = "unknown_key";
	for (size_t i = 0; i < jwks->count && result == 0; i++) {
		const struct sg_jwk *k = &jwks->keys[i];
		/* A key is only ever used with its own type and declared alg. */
		if (k->type != type || (k->alg != NULL && strcmp(k->alg, alg) != 0))
			continue;
		if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
			continue;
		candidates++;
		int r = pkey_verify(k->pkey, input, inlen, sig, siglen);
		if (r < 0) {
			*reason_r = "internal_error";
			result = -1;
		} else if (r == 1) {
			result = 1;
		}
	}
	if (result == 0 && candidates > 0)
		*reason_r = "bad_signature";
	OPENSSL_free(der);
	sg_jwks_free(&owned);
	return result;
}

/* A NumericDate (RFC 7519 section 2): integer or finite real seconds.
 * Only dates from the epoch to the end of year 9999 are sane: anything else
 * (negative, INT64_MIN, 1e300) is refused, so the comparisons below never
 * see a value whose difference with "now" could overflow (issue 10 item 22:
 * exp = -2^63 made now - exp wrap and the token was accepted). */
#define JWT_DATE_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

static int numeric_date(json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		if (x < 0 || x > JWT_DATE_MAX)
			return -1;
		*out = (int64_t)x;
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d < 0.0 || d > (double)JWT_DATE_MAX)
			return -1;
		*out = (int64_t)d;
		return 0;
	}
	return -1;
}

/* a - b >= margin, for any int64 a and b, without signed overflow. */
static bool later_by(int64_t a, int64_t b, int64_t margin)
{
	return a >= b && (uint64_t)a - (uint64_t)b >= (uint64_t)margin;
}

static int check_claims(const struct sg_sasl_config *cfg, json_t *claims, int64_t now,
			char *subject_r, size_t size, const char **reason_r)
{
	int64_t exp, t;
	json_t *v;
	/* RFC 7519 section 4.1.4: reject when the current time is on or after exp. */
	if ((v = json_object_get(claims, "exp")) == NULL || numeric_date(v, &exp) < 0) {
		*reason_r = v == NULL ? "missing_expiry" : "malformed_token";
		return 0;
	}
	if (later_by(now, exp, SG_JWT_LEEWAY)) {
		*reason_r = "expired_token";
		return 0;
	}
	/* Section 4.1.5: not accepted before nbf. */
	if ((v = json_object_get(claims, "nbf")) != NULL) {
		if (numeric_date(v, &t) < 0) {
			*reason_r = "malformed_token";
			return 0;
		}
		if (later_by(t, now, SG_JWT_LEEWAY + 1)) {
			*reason_r = "not_yet_valid";
			return 0;
		}
	}
	/* Section 4.1.6: a token issued in the future is not valid yet either. */
	if ((v = json_object_get(claims, "iat")) != NULL) {
		if (numeric_date(v, &t) < 0) {
			*reason_r = "malformed_token";
			return 0;
		}
		if (later_by(t, now, SG_JWT_LEEWAY + 1)) {
			*reason_r = "not_yet_valid";
			return 0;
		}
	}
	if (cfg->oauth_issuer != NULL && cfg->oauth_issuer[0] != '\0') {
		const char *iss = json_string_value(json_object_get(claims, "iss"));
		if (iss == NULL || strcmp(iss, cfg->oauth_issuer) != 0) {
			*reason_r = "wrong_issuer";
			return 0;
		}
	}
	/* Section 4.1.3: aud is a string or an array of strings; ours must be in it. */
	if (cfg->oauth_audience != NULL && cfg->oauth_audience[0] != '\0') {
		bool found = false;
		v = json_object_get(claims, "aud");
		if (json_is_string(v)) {
			found = strcmp(json_string_value(v), cfg->oauth_audience) == 0;
		} else if (json_is_array(v)) {
			size_t i;
			json_t *a;
			json_array_foreach(v, i, a) {
				if (json_is_string(a) &&
				    strcmp(json_string_value(a), cfg->oauth_audience) == 0)
					found = true;
			}
		}
		if (!found) {
			*reason_r = "wrong_audience";
			return 0;
		}
	}
	const char *claim = cfg->oauth_login_claim != NULL && cfg->oauth_login_claim[0] != '\0'
				    ? cfg->oauth_login_claim
				    : "sub";
	const char *sub = json_string_value(json_object_get(claims, claim));
	size_t sublen = sub != NULL ? strlen(sub) : 0;
	if (sublen == 0 || sublen >= size || sublen > SG_LOGIN_MAX) {
		*reason_r = "missing_subject";
		return 0;
	}
	for (size_t i = 0; i < sublen; i++) {
		if ((unsigned char)sub[i] < 0x20 || sub[i] == 0x7f) {
			*reason_r = "missing_subject";
			return 0;
		}
	}
	memcpy(subject_r, sub, sublen + 1);
	return 1;
}

int sg_jwt_verify(const struct sg_sasl_config *cfg, const char *token, int64_t now,
		  char *subject_r, size_t size, const char **reason_r)
{
	json_t *header = NULL, *claims = NULL;
	uint8_t *hbytes = NULL, *pbytes = NULL, *sig = NULL;
	size_t hlen, plen, siglen;
	json_error_t jerr;
	int result = 0;

	*reason_r = "malformed_token";
	if (size > 0)
		subject_r[0] = '\0';
	size_t len = token != NULL ? strnlen(token, SG_JWT_MAX + 1) : 0;
	if (len == 0 || len > SG_JWT_MAX)
		return 0;
	/* RFC 7515 section 7.1: BASE64URL(header) '.' BASE64URL(payload) '.'
	 * BASE64URL(signature), no padding. A JWE has five parts: refused. */
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
		return 0;
	size_t h_n = (size_t)(d1 - token), p_n = (size_t)(d2 - d1 - 1);
	size_t s_n = len - (size_t)(d2 + 1 - token);
	if (h_n == 0 || p_n == 0 || !b64url_chars(token, h_n) || !b64url_chars(d1 + 1, p_n) ||
	    !b64url_chars(d2 + 1, s_n))
		return 0;
	if ((hbytes = b64url_dup(token, h_n, &hlen)) == NULL ||
	    (pbytes = b64url_dup(d1 + 1, p_n, &plen)) == NULL ||
	    (sig = b64url_dup(d2 + 1, s_n, &siglen)) == NULL)
		goto out;
	header = json_loadb((const char *)hbytes, hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(header))
		goto out;
	const char *alg = json_string_value(json_object_get(header, "alg"));
	json_t *jkid = json_object_get(header, "kid");
	if (alg == NULL || (jkid != NULL && !json_is_string(jkid)))
		goto out;
	/* RFC 7515 section 4.1.11: extensions we do not understand are fatal. */
	if (json_object_get(header, "crit") != NULL) {
		*reason_r = "unsupported_alg";
		goto out;
	}
	const char *kid = json_string_value(jkid);
	const char *input = token;
	size_t inlen = (size_t)(d2 - token);
	/* RFC 8725 section 3.1: only the algorithms we expect; never "none". */
	if (strcmp(alg, "HS256") == 0)
		result = hs256_verify(cfg, input, inlen, sig, siglen, reason_r);
	else if (strcmp(alg, "RS256") == 0)
		result = jwks_verify(cfg, JWK_RSA, alg, kid, input, inlen, sig, siglen, reason_r);
	else if (strcmp(alg, "ES256") == 0)
		result = jwks_verify(cfg, JWK_EC, alg, kid, input, inlen, sig, siglen, reason_r);
	else
		*reason_r = "unsupported_alg";
	if (result != 1)
		goto out;
	/* Signature good: now the claims. */
	result = 0;
	*reason_r = "malformed_token";
	claims = json_loadb((const char *)pbytes, plen, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(claims))
		goto out;
	result = check_claims(cfg, claims, now, subject_r, size, reason_r);
	if (result == 1)
		*reason_r = NULL;
out:
	json_decref(header);
	json_decref(claims);
	free(hbytes);
	free(pbytes);
	free(sig);
	return result;
}

/* ---- minting ------------------------------------------------------------------ */

static char *b64url_str(const uint8_t *in, size_t n)
{
	char *out = sg_malloc(SG_B64_ENCODED_LEN(n) + 1);
	sg_b64url_encode(in, n, out);
	return out;
}

char *sg_jwt_mint_hs256(const uint8_t *key, size_t keylen, const char *sub, const char *iss,
			const char *aud, int64_t now, unsigned ttl)
{
	if (key == NULL || keylen == 0 || sub == NULL || sub[0] == '\0' || ttl == 0 || now < 0)
		return NULL;
	json_t *claims = json_object();
	int r = json_object_set_new(claims, "sub", json_string(sub));
	if (strchr(sub, '@') != NULL)
		r |= json_object_set_new(claims, "email", json_string(sub));
	if (iss != NULL && iss[0] != '\0')
		r |= json_object_set_new(claims, "iss", json_string(iss));
	if (aud != NULL && aud[0] != '\0')
		r |= json_object_set_new(claims, "aud", json_string(aud));
	r |= json_object_set_new(claims, "iat", json_integer(now));
	r |= json_object_set_new(claims, "exp", json_integer(now + (int64_t)ttl));
	if (r != 0) { /* a string that is not valid UTF-8 */
		json_decref(claims);
		return NULL;
	}
	char *payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(claims);
	if (payload == NULL)
		return NULL;
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char *h64 = b64url_str((const uint8_t *)header, sizeof(header) - 1);
	char *p64 = b64url_str((const uint8_t *)payload, strlen(payload));
	free(payload);
	char *signing = sg_asprintf("%s.%s", h64, p64);
	free(h64);
	free(p64);
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	char *token = NULL;
	if (HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)signing, strlen(signing), mac,
		 &maclen) != NULL) {
		char *s64 = b64url_str(mac, maclen);
		token = sg_asprintf("%s.%s", signing, s64);
		free(s64);
	}
	sg_wipe(mac, sizeof(mac));
	free(signing);
	return token;
}

/* ---- the sandbox secret --------------------------------------------------------- */

/* 1 loaded, 0 absent, -1 error. */
/* generated: our own key file in the data directory (raw, exactly as
 * written, mode 0600, at least min_len octets). Otherwise a configured file:
 * trailing CR/LF removed (a secret typed into an editor), at least 16 octets
 * left. */
static int secret_read(const char *path, bool generated, size_t min_len, uint8_t **key_r,
		       size_t *len_r, const char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = "cannot open the key file";
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		*error_r = "the key file is not a regular file";
		close(fd);
		return -1;
	}
	if (generated && (st.st_mode & 077) != 0) {
		*error_r = "the key file is readable by group or others (chmod 600 it)";
		close(fd);
		return -1;
	}
	if (st.st_size > OAUTH_SECRET_FILE_MAX || (generated && (size_t)st.st_size < min_len)) {
		*error_r = generated ? "the key file must hold 32 to 1024 octets"
				     : "the OAuth secret file holds more than 1024 octets";
		close(fd);
		return -1;
	}
	size_t want = (size_t)st.st_size, got = 0;
	uint8_t *key = sg_malloc(want);
	while (got < want) {
		ssize_t r = read(fd, key + got, want - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got != want) {
		sg_oauth_secret_free(&key, want);
		*error_r = "short read on the key file";
		return -1;
	}
	size_t len = want;
	if (!generated) {
		while (len > 0 && (key[len - 1] == '\n' || key[len - 1] == '\r'))
			len--;
		if (len < OAUTH_SECRET_CONFIGURED_MIN) {
			sg_oauth_secret_free(&key, want);
			*error_r = "the OAuth secret file must hold at least 16 octets";
			return -1;
		}
	}
	*key_r = key;
	*len_r = len;
	return 1;
}

static int secret_create(const char *data_dir, const char *path, size_t len, const char **error_r)
{
	if (mkdir(data_dir, 0700) < 0 && errno != EEXIST) {
		*error_r = "cannot create the data directory";
		return -1;
	}
	uint8_t key[64], nonce[8];
	if (len > sizeof(key)) {
		*error_r = "key too long";
		return -1;
	}
	char hex[sizeof(nonce) * 2 + 1];
	sg_random(nonce, sizeof(nonce));
	sg_hex(nonce, sizeof(nonce), hex);
	char *tmp = sg_asprintf("%s.tmp.%s", path, hex);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*error_r = "cannot create the key file";
		free(tmp);
		return -1;
	}
	sg_random(key, len);
	ssize_t w;
	do {
		w = write(fd, key, len);
	} while (w < 0 && errno == EINTR);
	sg_wipe(key, sizeof(key));
	int r = 0;
	if (w != (ssize_t)len || fsync(fd) < 0) {
		*error_r = "cannot write the key file";
		r = -1;
	}
	if (close(fd) < 0 && r == 0) {
		*error_r = "cannot write the key file";
		r = -1;
	}
	/* link() rather than rename(): when two processes race, the first key
	 * stays and both read it back. */
	if (r == 0 && link(tmp, path) < 0 && errno != EEXIST) {
		*error_r = "cannot install the key file";
		r = -1;
	}
	unlink(tmp);
	free(tmp);
	if (r == 0) {
		int dfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	return r;
}

int sg_key_file_load_or_create(const char *data_dir, const char *name, size_t len,
			       uint8_t **key_r, size_t *len_r, const char **error_r)
{
	*key_r = NULL;
	*len_r = 0;
	if (data_dir == NULL || data_dir[0] == '\0') {
		*error_r = "no data directory";
		return -1;
	}
	char *path = sg_asprintf("%s/%s", data_dir, name);
	int r = secret_read(path, true, len, key_r, len_r, error_r);
	if (r == 0 && secret_create(data_dir, path, len, error_r) == 0) {
		r = secret_read(path, true, len, key_r, len_r, error_r);
		if (r == 0)
			*error_r = "the key file vanished";
	} else if (r == 0) {
		r = -1;
	}
	free(path);
	return r == 1 ? 0 : -1;
}

int sg_oauth_secret_load_or_create(const char *data_dir, uint8_t **key_r, size_t *len_r,
				   const char **error_r)
{
	return sg_key_file_load_or_create(data_dir, SG_OAUTH_SECRET_FILE, SG_OAUTH_SECRET_LEN, key_r,
					  len_r, error_r);
}

int sg_oauth_secret_load(const char *path, uint8_t **key_r, size_t *len_r, const char **error_r)
{
	*key_r = NULL;
	*len_r = 0;
	int r = secret_read(path, false, 0, key_r, len_r, error_r);
	if (r == 0)
		*error_r = "the OAuth secret file does not exist";
	return r == 1 ? 0 : -1;
}

void sg_oauth_secret_free(uint8_t **key, size_t len)
{
	if (*key == NULL)
		return;
	sg_wipe(*key, len);
	free(*key);
	*key = NULL;
}
