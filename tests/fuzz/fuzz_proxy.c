/*
 * fuzz_proxy: the PROXY protocol v1/v2 header parser (src/core/proxy.h).
 * Input: the octets a load balancer (or an attacker on a trusted network)
 * sends first. Checked: a complete header is never longer than the input nor
 * than its version's limit, and parsing exactly those octets gives the same
 * answer; "incomplete" is only answered below the limits; every prefix of a
 * complete header is incomplete (so the server never reads past a header);
 * addresses are NUL-terminated and ports 16-bit.
 */
#include <string.h>

#include "core/proxy.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_proxy_hdr h;
	const char *err = NULL;
	int r = sg_proxy_parse(data, size, &h, &err);
	if (r < 0) {
		if (err == NULL)
			sg_fuzz_fail("proxy: refusal without a reason");
		return 0;
	}
	if (r == 0) {
		if (size >= SG_PROXY_MAX)
			sg_fuzz_fail("proxy: incomplete after %zu octets", size);
		return 0;
	}
	if ((size_t)r > size || (size_t)r > SG_PROXY_MAX)
		sg_fuzz_fail("proxy: header of %d octets from %zu", r, size);
	if (h.version == 1 && r > SG_PROXY_V1_MAX)
		sg_fuzz_fail("proxy: v1 header of %d octets", r);
	if (memchr(h.src_ip, 0, sizeof(h.src_ip)) == NULL || memchr(h.dst_ip, 0, sizeof(h.dst_ip)) == NULL)
		sg_fuzz_fail("proxy: address not NUL-terminated");
	if (h.src_port > 65535 || h.dst_port > 65535)
		sg_fuzz_fail("proxy: port out of range");
	struct sg_proxy_hdr h2;
	if (sg_proxy_parse(data, (size_t)r, &h2, &err) != r || memcmp(&h, &h2, sizeof(h)) != 0)
		sg_fuzz_fail("proxy: the header alone parses differently");
	for (size_t k = 0; k < (size_t)r; k += 1 + k / 8)
		if (sg_proxy_parse(data, k, &h2, &err) != 0)
			sg_fuzz_fail("proxy: prefix of %zu octets of a %d-octet header is not incomplete", k, r);
	return 0;
}
