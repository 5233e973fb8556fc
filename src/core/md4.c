/* MD4 (RFC 1320) and the NT hash (MS-NLMP 3.3.1). */
#include "core/md4.h"

#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"

#define F(x, y, z) (((x) & (y)) | (~(x) & (z)))
#define G(x, y, z) (((x) & (y)) | ((x) & (z)) | ((y) & (z)))
#define H(x, y, z) ((x) ^ (y) ^ (z))
#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))

#define R1(a, b, c, d, k, s) a = ROTL(a + F(b, c, d) + X[k], s)
#define R2(a, b, c, d, k, s) a = ROTL(a + G(b, c, d) + X[k] + 0x5a827999u, s)
#define R3(a, b, c, d, k, s) a = ROTL(a + H(b, c, d) + X[k] + 0x6ed9eba1u, s)

static void md4_block(uint32_t st[4], const uint8_t *p)
{
	uint32_t X[16];
	for (int i = 0; i < 16; i++)
		X[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
		       (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
	uint32_t a = st[0], b = st[1], c = st[2], d = st[3];

	/* Round 1 (RFC 1320 section 3.4) */
	for (int i = 0; i < 16; i += 4) {
		R1(a, b, c, d, i, 3);
		R1(d, a, b, c, i + 1, 7);
		R1(c, d, a, b, i + 2, 11);
		R1(b, c, d, a, i + 3, 19);
	}
	/* Round 2 */
	for (int i = 0; i < 4; i++) {
		R2(a, b, c, d, i, 3);
		R2(d, a, b, c, i + 4, 5);
		R2(c, d, a, b, i + 8, 9);
		R2(b, c, d, a, i + 12, 13);
	}
	/* Round 3 */
	static const int o[4] = {0, 2, 1, 3};
	for (int i = 0; i < 4; i++) {
		R3(a, b, c, d, o[i], 3);
		R3(d, a, b, c, o[i] + 8, 9);
		R3(c, d, a, b, o[i] + 4, 11);
		R3(b, c, d, a, o[i] + 12, 15);
	}
	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
	sg_wipe(X, sizeof(X));
}

void sg_md4_init(struct sg_md4_ctx *c)
{
	c->state[0] = 0x67452301u;
	c->state[1] = 0xefcdab89u;
	c->state[2] = 0x98badcfeu;
	c->state[3] = 0x10325476u;
	c->count = 0;
}

void sg_md4_update(struct sg_md4_ctx *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t have = (size_t)(c->count & 63);
	c->count += len;
	if (have > 0) {
		size_t take = 64 - have;
		if (take > len)
			take = len;
		memcpy(c->block + have, p, take);
		p += take;
		len -= take;
		if (have + take < 64)
			return;
		md4_block(c->state, c->block);
	}
	while (len >= 64) {
		md4_block(c->state, p);
		p += 64;
		len -= 64;
	}
	if (len > 0)
		memcpy(c->block, p, len);
}

void sg_md4_final(struct sg_md4_ctx *c, uint8_t out[16])
{
	uint64_t bits = c->count * 8;
	uint8_t pad[72] = {0x80};
	size_t have = (size_t)(c->count & 63);
	size_t padlen = (have < 56) ? 56 - have : 120 - have;
	uint8_t lenle[8];
	for (int i = 0; i < 8; i++)
		lenle[i] = (uint8_t)(bits >> (8 * i));
	sg_md4_update(c, pad, padlen);
	sg_md4_update(c, lenle, 8);
	for (int i = 0; i < 4; i++) {
		out[4 * i] = (uint8_t)c->state[i];
		out[4 * i + 1] = (uint8_t)(c->state[i] >> 8);
		out[4 * i + 2] = (uint8_t)(c->state[i] >> 16);
		out[4 * i + 3] = (uint8_t)(c->state[i] >> 24);
	}
	sg_wipe(c, sizeof(*c));
}

void sg_md4(const void *data, size_t len, uint8_t out[16])
{
	struct sg_md4_ctx c;
	sg_md4_init(&c);
	sg_md4_update(&c, data, len);
	sg_md4_final(&c, out);
}

/* Decode one UTF-8 code point (RFC 3629 section 4 syntax). Returns the number
 * of bytes consumed, or 0 for an invalid sequence. */
static size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t b = s[0];
	size_t len;
	uint32_t v, min;
	if (b < 0x80) {
		*cp = b;
		return 1;
	} else if (b >= 0xc2 && b <= 0xdf) {
		len = 2;
		v = b & 0x1f;
		min = 0x80;
	} else if (b >= 0xe0 && b <= 0xef) {
		len = 3;
		v = b & 0x0f;
		min = 0x800;
	} else if (b >= 0xf0 && b <= 0xf4) {
		len = 4;
		v = b & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

long sg_utf8_to_utf16le(const char *in, size_t inlen, uint8_t *out, size_t outsize)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t o = 0;
	for (size_t i = 0; i < inlen;) {
		uint32_t cp;
		size_t k = utf8_decode(s + i, inlen - i, &cp);
		if (k == 0)
			return -1;
		i += k;
		uint16_t u[2];
		size_t nu = 1;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			u[0] = (uint16_t)(0xd800 | (cp >> 10));
			u[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
			nu = 2;
		} else {
			u[0] = (uint16_t)cp;
		}
		for (size_t j = 0; j < nu; j++) {
			if (out != NULL) {
				if (o + 2 > outsize)
					return -1;
				out[o] = (uint8_t)(u[j] & 0xff);
				out[o + 1] = (uint8_t)(u[j] >> 8);
			}
			o += 2;
		}
	}
	if (o > (size_t)0x7fffffff)
		return -1;
	return (long)o;
}

int sg_nt_hash(const char *password_utf8, uint8_t out[16])
{
	if (password_utf8 == NULL)
		return -1;
	size_t n = strlen(password_utf8);
	long need = sg_utf8_to_utf16le(password_utf8, n, NULL, 0);
	if (need < 0)
		return -1;
	uint8_t *u = sg_malloc((size_t)need + 1);
	long got = sg_utf8_to_utf16le(password_utf8, n, u, (size_t)need);
	if (got != need) {
		sg_wipe(u, (size_t)need + 1);
		free(u);
		return -1;
	}
	sg_md4(u, (size_t)got, out);
	sg_wipe(u, (size_t)need + 1);
	free(u);
	return 0;
}
