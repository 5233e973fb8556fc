/*
 * fuzz_log_value: sg_log_value (src/core/log.c), which renders peer bytes
 * for the log. Checked for every input and several output sizes:
 *  - the output is NUL-terminated within the buffer;
 *  - it holds no control character, no DEL, and only well-formed UTF-8
 *    (no byte of the input reaches the log raw unless it is printable);
 *  - a quote or backslash only appears escaped (inside the quotes).
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

/* Same rules as log.c, written independently. */
static size_t utf8_ok(const unsigned char *p, size_t n)
{
	if (p[0] < 0x80)
		return 1;
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
	if (len == 0 || len > n || p[0] < 0xc2 || p[0] > 0xf4)
		return 0;
	unsigned long cp = p[0] & (0xff >> (len + 1));
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	static const unsigned long min[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	if (cp >= 0x80 && cp < 0xa0)
		return 0;
	if (cp == 0x2028 || cp == 0x2029)
		return 0;
	return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = malloc(size + 1);
	memcpy(in, data, size);
	in[size] = '\0';
	static const size_t sizes[] = {8, 9, 16, 64, 300, 4096};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t cap = sizes[k];
		char *out = malloc(cap);
		sg_log_value(in, out, cap);
		size_t n = strnlen(out, cap);
		if (n >= cap)
			sg_fuzz_fail("log_value: not terminated within %zu", cap);
		const unsigned char *p = (const unsigned char *)out;
		for (size_t i = 0; i < n;) {
			if (p[i] < 0x20 || p[i] == 0x7f)
				sg_fuzz_fail("log_value: raw control 0x%02x at %zu", p[i], i);
			size_t l = utf8_ok(p + i, n - i);
			if (l == 0)
				sg_fuzz_fail("log_value: ill-formed UTF-8 at %zu", i);
			if (p[i] == '\\') {
				if (i + 1 >= n)
					sg_fuzz_fail("log_value: trailing backslash");
				i += 2;
				continue;
			}
			if (p[i] == '"' && i != 0 && i != n - 1)
				sg_fuzz_fail("log_value: unescaped quote at %zu", i);
			i += l;
		}
		free(out);
	}
	free(in);
	return 0;
}
