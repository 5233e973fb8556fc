#include "core/proxy.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "core/util.h"

/* proxy-protocol.txt 2.2: the binary signature */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

static int fail(const char **error_r, const char *msg)
{
	sg_set_err(error_r, msg);
	return -1;
}

/* ---- version 1 (text) ---- */

/* Next space-separated field of the line [*pos, end); false when absent or
 * longer than size - 1. */
static bool v1_field(const char *line, size_t end, size_t *pos, char *out, size_t size, bool last)
{
	size_t start = *pos, k = start;
	while (k < end && line[k] != ' ')
		k++;
	if (k == start || k - start >= size)
		return false;
	if (last ? k != end : (k >= end || line[k] != ' '))
		return false;
	memcpy(out, line + start, k - start);
	out[k - start] = '\0';
	*pos = last ? k : k + 1;
	return true;
}

/* 0..65535, decimal, no sign, no leading zero (proxy-protocol.txt 2.1). */
static bool v1_port(const char *s, unsigned *out)
{
	uint64_t v;
	if (s[0] == '0' && s[1] != '\0')
		return false;
	if (strlen(s) > 5 || sg_parse_u64(s, 0, 65535, &v) < 0)
		return false;
	*out = (unsigned)v;
	return true;
}

static bool v1_addr(int family, const char *s, char *out, size_t size)
{
	uint8_t bin[16];
	if (inet_pton(family, s, bin) != 1)
		return false;
	return inet_ntop(family, bin, out, (socklen_t)size) != NULL;
}

static int parse_v1(const uint8_t *p, size_t len, struct sg_proxy_hdr *h, const char **error_r)
{
	size_t lim = len < SG_PROXY_V1_MAX ? len : SG_PROXY_V1_MAX;
	size_t eol = 0;
	bool found = false;
	for (size_t k = 0; k < lim; k++) {
		if (p[k] == '\n') {
			if (k == 0 || p[k - 1] != '\r')
				return fail(error_r, "v1: bare LF");
			eol = k - 1;
			found = true;
			break;
		}
		if (p[k] == '\r' && k + 1 < lim && p[k + 1] != '\n')
			return fail(error_r, "v1: CR not followed by LF");
		if (p[k] != '\r' && (p[k] < 0x20 || p[k] > 0x7e))
			return fail(error_r, "v1: non-printable octet");
	}
	if (!found)
		return len >= SG_PROXY_V1_MAX ? fail(error_r, "v1: no CRLF within 107 octets") : 0;
	const char *line = (const char *)p;
	size_t pos = sizeof(v1_sig) - 1;
	char proto[8], src[46], dst[46], sport[8], dport[8];
	memset(h, 0, sizeof(*h));
	h->version = 1;
	/* "PROXY UNKNOWN" possibly followed by anything up to the CRLF */
	if (eol - pos >= 7 && memcmp(line + pos, "UNKNOWN", 7) == 0 &&
	    (eol - pos == 7 || line[pos + 7] == ' ')) {
		h->local = true;
		return (int)(eol + 2);
	}
	if (!v1_field(line, eol, &pos, proto, sizeof(proto), false))
		return fail(error_r, "v1: bad protocol field");
	if (strcmp(proto, "TCP4") == 0)
		h->family = AF_INET;
	else if (strcmp(proto, "TCP6") == 0)
		h->family = AF_INET6;
	else
		return fail(error_r, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (!v1_field(line, eol, &pos, src, sizeof(src), false) ||
	    !v1_field(line, eol, &pos, dst, sizeof(dst), false) ||
	    !v1_field(line, eol, &pos, sport, sizeof(sport), false) ||
	    !v1_field(line, eol, &pos, dport, sizeof(dport), true))
		return fail(error_r, "v1: expected 4 fields after the protocol");
	if (!v1_addr(h->family, src, h->src_ip, sizeof(h->src_ip)) ||
	    !v1_addr(h->family, dst, h->dst_ip, sizeof(h->dst_ip)))
		return fail(error_r, "v1: address does not match the protocol");
	if (!v1_port(sport, &h->src_port) || !v1_port(dport, &h->dst_port))
		return fail(error_r, "v1: bad port");
	return (int)(eol + 2);
}

/* ---- version 2 (binary) ---- */

static int parse_v2(const uint8_t *p, size_t len, struct sg_proxy_hdr *h, const char **error_r)
{
	if (len >= 13 && (p[12] & 0xF0) != 0x20)
		return fail(error_r, "v2: version is not 2");
	if (len >= 13 && (p[12] & 0x0F) > 1)
		return fail(error_r, "v2: command is neither LOCAL nor PROXY");
	if (len < 16)
		return 0;
	size_t body = ((size_t)p[14] << 8) | p[15];
	if (16 + body > SG_PROXY_V2_MAX)
		return fail(error_r, "v2: header longer than the limit");
	if (len < 16 + body)
		return 0;
	memset(h, 0, sizeof(*h));
	h->version = 2;
	bool proxy = (p[12] & 0x0F) == 1;
	uint8_t fam = p[13];
	const uint8_t *b = p + 16;
	size_t addr_len = 0;
	if (!proxy) {
		h->local = true; /* LOCAL: the family and addresses are ignored */
		return (int)(16 + body);
	}
	switch (fam) {
	case 0x00: /* UNSPEC */
		h->local = true;
		return (int)(16 + body);
	case 0x11: /* TCP over IPv4 */
		addr_len = 12;
		if (body < addr_len)
			return fail(error_r, "v2: address block shorter than IPv4 needs");
		h->family = AF_INET;
		inet_ntop(AF_INET, b, h->src_ip, sizeof(h->src_ip));
		inet_ntop(AF_INET, b + 4, h->dst_ip, sizeof(h->dst_ip));
		h->src_port = ((unsigned)b[8] << 8) | b[9];
		h->dst_port = ((unsigned)b[10] << 8) | b[11];
		break;
	case 0x21: /* TCP over IPv6 */
		addr_len = 36;
		if (body < addr_len)
			return fail(error_r, "v2: address block shorter than IPv6 needs");
		h->family = AF_INET6;
		inet_ntop(AF_INET6, b, h->src_ip, sizeof(h->src_ip));
		inet_ntop(AF_INET6, b + 16, h->dst_ip, sizeof(h->dst_ip));
		h->src_port = ((unsigned)b[32] << 8) | b[33];
		h->dst_port = ((unsigned)b[34] << 8) | b[35];
		break;
	default:
		return fail(error_r, "v2: unsupported address family (only TCP over IPv4/IPv6)");
	}
	/* 2.2.7: TLVs {type, length_hi, length_lo, value}; all must fit exactly. */
	size_t k = addr_len;
	while (k < body) {
		if (body - k < 3)
			return fail(error_r, "v2: truncated TLV header");
		size_t vlen = ((size_t)b[k + 1] << 8) | b[k + 2];
		if (body - k - 3 < vlen)
			return fail(error_r, "v2: TLV longer than the header");
		k += 3 + vlen;
	}
	return (int)(16 + body);
}

int sg_proxy_parse(const uint8_t *p, size_t len, struct sg_proxy_hdr *h, const char **error_r)
{
	if (len == 0)
		return 0;
	if (p[0] == v2_sig[0]) {
		size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
		if (memcmp(p, v2_sig, n) != 0)
			return fail(error_r, "v2: bad signature");
		return len < sizeof(v2_sig) ? 0 : parse_v2(p, len, h, error_r);
	}
	size_t n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
	if (memcmp(p, v1_sig, n) != 0)
		return fail(error_r, "no PROXY protocol header");
	return len < sizeof(v1_sig) - 1 ? 0 : parse_v1(p, len, h, error_r);
}

/* ---- trusted networks ---- */

int sg_cidr_parse(const char *s, struct sg_cidr *c)
{
	char addr[64];
	const char *slash = strchr(s, '/');
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(addr))
		return -1;
	memcpy(addr, s, n);
	addr[n] = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, addr, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, c->addr) == 1)
		c->family = AF_INET6;
	else
		return -1;
	unsigned max = c->family == AF_INET ? 32 : 128;
	uint64_t bits = max;
	if (slash != NULL && sg_parse_u64(slash + 1, 0, max, &bits) < 0)
		return -1;
	c->bits = (unsigned)bits;
	return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	size_t full = bits / 8;
	if (memcmp(a, b, full) != 0)
		return false;
	unsigned rest = bits % 8;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xFF << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

bool sg_cidr_match(const struct sg_cidr *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return c->family == AF_INET && prefix_eq((const uint8_t *)&in->sin_addr, c->addr, c->bits);
	}
	if (sa->sa_family != AF_INET6)
		return false;
	const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
	if (c->family == AF_INET)
		return memcmp(a, mapped, 12) == 0 && prefix_eq(a + 12, c->addr, c->bits);
	return prefix_eq(a, c->addr, c->bits);
}
