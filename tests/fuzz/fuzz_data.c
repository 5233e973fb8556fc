/*
 * fuzz_data: the DATA reader (src/smtp/data.h), dot-stuffing and CR/LF.
 * Input: data[0] options (bit 0 normalize_lf, bit 1 a small max_size),
 * data[1] seeds the chunk sizes, the rest is the stream after "DATA\r\n".
 *
 * The stream is fed once whole and once cut into fuzzer-chosen chunks; both
 * must agree exactly (output, flags, consumed count). When the data ends,
 * the consumed bytes end in a real CRLF "." CRLF (or "." CRLF at the very
 * start): never on "\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n" (SMTP smuggling).
 * Output is bounded by max_size, and its size by twice the input.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "smtp/data.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

struct run {
	struct sg_buf out;
	struct sg_data_reader r;
	size_t used;
};

static void run_whole(struct run *x, const uint8_t *p, size_t n, size_t max, bool norm)
{
	sg_buf_init(&x->out, 1u << 20);
	sg_data_init(&x->r, &x->out, max, norm);
	x->used = sg_data_feed(&x->r, p, n);
}

static void run_chunked(struct run *x, const uint8_t *p, size_t n, size_t max, bool norm,
			unsigned seed)
{
	sg_buf_init(&x->out, 1u << 20);
	sg_data_init(&x->r, &x->out, max, norm);
	x->used = 0;
	uint32_t s = seed * 2654435761u + 1;
	while (x->used < n && !x->r.done) {
		s = s * 1103515245u + 12345u;
		size_t chunk = 1 + (s >> 16) % 7;
		if (chunk > n - x->used)
			chunk = n - x->used;
		/* exact-size heap copy of each chunk */
		uint8_t *c = malloc(chunk);
		memcpy(c, p + x->used, chunk);
		size_t u = sg_data_feed(&x->r, c, chunk);
		free(c);
		if (u > chunk)
			sg_fuzz_fail("data: consumed %zu of a %zu-byte chunk", u, chunk);
		if (u < chunk && !x->r.done)
			sg_fuzz_fail("data: stopped early without done");
		x->used += u;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	bool norm = (data[0] & 1) != 0;
	size_t max = (data[0] & 2) != 0 ? (size_t)(data[0] >> 2) : 1u << 20;
	unsigned seed = data[1];
	const uint8_t *p = data + 2;
	size_t n = size - 2;
	uint8_t *copy = malloc(n > 0 ? n : 1);
	memcpy(copy, p, n);

	struct run a, b;
	run_whole(&a, copy, n, max, norm);
	run_chunked(&b, copy, n, max, norm, seed);

	if (a.used != b.used || a.r.done != b.r.done || a.r.size != b.r.size ||
	    a.r.bare_lf != b.r.bare_lf || a.r.bare_cr != b.r.bare_cr ||
	    a.r.too_big != b.r.too_big || a.r.eightbit != b.r.eightbit ||
	    a.out.len != b.out.len || (a.out.len > 0 && memcmp(a.out.data, b.out.data, a.out.len) != 0))
		sg_fuzz_fail("data: whole and chunked feeds disagree (used %zu/%zu, size %zu/%zu)",
			     a.used, b.used, a.r.size, b.r.size);
	if (a.used > n || (!a.r.done && a.used != n))
		sg_fuzz_fail("data: consumed %zu of %zu without done", a.used, n);
	if (a.r.done) {
		size_t u = a.used;
		if (u < 3 || memcmp(copy + u - 3, ".\r\n", 3) != 0)
			sg_fuzz_fail("data: ended without \".\\r\\n\" at %zu", u);
		if (u != 3 && (u < 5 || memcmp(copy + u - 5, "\r\n", 2) != 0))
			sg_fuzz_fail("data: ended on a dot not preceded by CRLF (smuggling) at %zu", u);
	}
	if (a.out.len > max || a.out.len > a.r.size)
		sg_fuzz_fail("data: stored %zu octets, max %zu, size %zu", a.out.len, max, a.r.size);
	if (a.r.size > 2 * a.used)
		sg_fuzz_fail("data: size %zu from %zu input octets", a.r.size, a.used);
	if (a.r.too_big != (a.r.size > max))
		sg_fuzz_fail("data: too_big %d but size %zu max %zu", a.r.too_big, a.r.size, max);
	if (!norm && !a.r.bare_lf && !a.r.bare_cr && !a.r.too_big) {
		/* clean input: every LF in the output is preceded by CR */
		for (size_t i = 0; i < a.out.len; i++)
			if (a.out.data[i] == '\n' && (i == 0 || a.out.data[i - 1] != '\r'))
				sg_fuzz_fail("data: bare LF stored without bare_lf at %zu", i);
	}
	if (norm && !a.r.bare_cr && !a.r.too_big) {
		for (size_t i = 0; i < a.out.len; i++)
			if (a.out.data[i] == '\n' && (i == 0 || a.out.data[i - 1] != '\r'))
				sg_fuzz_fail("data: bare LF stored with normalize_lf at %zu", i);
	}
	sg_buf_free(&a.out);
	sg_buf_free(&b.out);
	free(copy);
	return 0;
}
