#include "core/b64.h"

#include <stdbool.h>

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t encode(const char *alpha, const uint8_t *in, size_t n, char *out, bool pad)
{
	size_t o = 0, i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		out[o++] = alpha[v >> 6 & 63];
		out[o++] = alpha[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = alpha[v >> 18 & 63];
		out[o++] = alpha[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = alpha[v >> 6 & 63];
		else if (pad)
			out[o++] = '=';
		if (pad)
			out[o++] = '=';
	}
	out[o] = '\0';
	return o;
}

size_t sg_b64_encode(const uint8_t *in, size_t n, char *out)
{
	return encode(std_alpha, in, n, out, true);
}

size_t sg_b64url_encode(const uint8_t *in, size_t n, char *out)
{
	return encode(url_alpha, in, n, out, false);
}

static int val(char c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	return -1;
}

static int decode(const char *in, size_t n, uint8_t *out, size_t *outlen, bool url)
{
	size_t pad = 0;
	if (!url && n % 4 != 0)
		return -1;
	if (n >= 1 && in[n - 1] == '=')
		pad++;
	if (n >= 2 && in[n - 2] == '=')
		pad++;
	if (url && pad > 0 && n % 4 != 0)
		return -1;
	size_t body = n - pad;
	if (body % 4 == 1)
		return -1;
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < body; i++) {
		int v = val(in[i], url);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero (canonical encoding), and padding must
	 * match the body length exactly. */
	if (acc != 0)
		return -1;
	if (pad > 0 && (body % 4) + pad != 4)
		return -1;
	out[o] = 0;
	*outlen = o;
	return 0;
}

int sg_b64_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
	return decode(in, n, out, outlen, false);
}

int sg_b64url_decode(const char *in, size_t n, uint8_t *out, size_t *outlen)
{
	return decode(in, n, out, outlen, true);
}
