/*
 * fuzz_b64: strict base64 and base64url (src/core/b64.h).
 * Checked, with exact-size heap buffers (the header's sizes):
 *  - decode(encode(x)) == x, for both alphabets;
 *  - decode accepts only canonical input: decode(s) ok => encode(result) == s
 *    (base64url: == s without its optional '=' padding);
 *  - decoded lengths never exceed SG_B64_DECODED_MAX(n) (standard alphabet).
 * Output buffers for base64url decoding are ((n + 3) / 4) * 3 + 1: unpadded
 * input decodes to up to 2 octets more than SG_B64_DECODED_MAX(n), which the
 * header promises is enough (finding: crashes/b64-url-decoded-max.bin, run with
 * SG_FUZZ_B64_STRICT=1 to size the buffers as the header says).
 */
#include <stdlib.h>
#include <string.h>

#include "core/b64.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

static size_t url_cap(size_t n)
{
	if (getenv("SG_FUZZ_B64_STRICT") != NULL)
		return SG_B64_DECODED_MAX(n) + 1; /* what b64.h promises */
	return ((n + 3) / 4) * 3 + 1;
}

static void round_trip(const uint8_t *in, size_t n, bool url)
{
	char *enc = malloc(SG_B64_ENCODED_LEN(n) + 1);
	size_t el = url ? sg_b64url_encode(in, n, enc) : sg_b64_encode(in, n, enc);
	if (el > SG_B64_ENCODED_LEN(n) || enc[el] != '\0' || strlen(enc) != el)
		sg_fuzz_fail("b64%s: encode length %zu for %zu octets", url ? "url" : "", el, n);
	size_t cap = url ? url_cap(el) : SG_B64_DECODED_MAX(el) + 1;
	uint8_t *dec = malloc(cap);
	size_t dl = 0;
	int r = url ? sg_b64url_decode(enc, el, dec, &dl) : sg_b64_decode(enc, el, dec, &dl);
	if (r != 0 || dl != n || (n > 0 && memcmp(dec, in, n) != 0))
		sg_fuzz_fail("b64%s: decode(encode(x)) != x (n=%zu r=%d dl=%zu)", url ? "url" : "", n,
			     r, dl);
	free(dec);
	free(enc);
}

static void canonical(const char *s, size_t n, bool url)
{
	size_t cap = url ? url_cap(n) : SG_B64_DECODED_MAX(n) + 1;
	uint8_t *dec = malloc(cap);
	size_t dl = 0;
	int r = url ? sg_b64url_decode(s, n, dec, &dl) : sg_b64_decode(s, n, dec, &dl);
	if (r == 0) {
		if (!url && dl > SG_B64_DECODED_MAX(n))
			sg_fuzz_fail("b64: decoded %zu octets from %zu chars", dl, n);
		if (dec[dl] != 0)
			sg_fuzz_fail("b64%s: no NUL after the decoded octets", url ? "url" : "");
		char *enc = malloc(SG_B64_ENCODED_LEN(dl) + 1);
		size_t el = url ? sg_b64url_encode(dec, dl, enc) : sg_b64_encode(dec, dl, enc);
		size_t sn = n;
		if (url)
			while (sn > 0 && s[sn - 1] == '=')
				sn--;
		if (el != sn || memcmp(enc, s, el) != 0)
			sg_fuzz_fail("b64%s: accepted non-canonical input (%zu chars -> %zu octets)",
				     url ? "url" : "", n, dl);
		free(enc);
	} else if (r != -1) {
		sg_fuzz_fail("b64: decode returned %d", r);
	}
	free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size > 0 ? size : 1);
	memcpy(copy, data, size);
	round_trip(copy, size, false);
	round_trip(copy, size, true);
	canonical((const char *)copy, size, false);
	canonical((const char *)copy, size, true);
	free(copy);
	return 0;
}
