/* PROXY protocol header parser (core/proxy.h): the examples of HAProxy's
 * doc/proxy-protocol.txt (sections 2.1 and 2.2), incremental input, every
 * refusal, and the trusted-network matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "core/proxy.h"

static int parse_str(const char *s, struct sg_proxy_hdr *h)
{
	const char *err = NULL;
	return sg_proxy_parse((const uint8_t *)s, strlen(s), h, &err);
}

static void test_v1_examples(void **state)
{
	struct sg_proxy_hdr h;
	/* proxy-protocol.txt 2.1 */
	const char *a = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
	assert_int_equal(parse_str(a, &h), (int)strlen(a));
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_string_equal(h.src_ip, "255.255.255.255");
	assert_int_equal(h.src_port, 65535);
	const char *b = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	assert_int_equal(strlen(b), 104);
	assert_int_equal(parse_str(b, &h), 104);
	assert_int_equal(h.family, AF_INET6);
	const char *c = "PROXY UNKNOWN\r\n";
	assert_int_equal(parse_str(c, &h), 15);
	assert_true(h.local);
	/* the worst case the spec names: 107 octets */
	const char *d = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	assert_int_equal(strlen(d), 107);
	assert_int_equal(parse_str(d, &h), 107);
	assert_true(h.local);
	const char *e = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nEHLO x\r\n";
	assert_int_equal(parse_str(e, &h), 47);
	assert_string_equal(h.src_ip, "192.168.0.1");
	assert_string_equal(h.dst_ip, "192.168.0.11");
	assert_int_equal(h.src_port, 56324);
	assert_int_equal(h.dst_port, 443);
}

static void test_v1_incremental(void **state)
{
	struct sg_proxy_hdr h;
	const char *e = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	const char *err = NULL;
	for (size_t n = 0; n < strlen(e); n++)
		assert_int_equal(sg_proxy_parse((const uint8_t *)e, n, &h, &err), 0);
}

static void test_v1_refusals(void **state)
{
	static const char *const bad[] = {
		"EHLO client\r\n",
		"PROXY\r\n",
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* bare LF */
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n",
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
		"PROXY TCP4 ::1 ::1 1 2\r\n",                /* family mismatch */
		"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",       /* leading zero */
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",
		"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sg_proxy_hdr h;
		const char *err = NULL;
		assert_int_equal(sg_proxy_parse((const uint8_t *)bad[i], strlen(bad[i]), &h, &err), -1);
		assert_non_null(err);
	}
	/* 107 octets and still no CRLF */
	char longline[200];
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "PROXY UNKNOWN ", 14);
	struct sg_proxy_hdr h;
	const char *err = NULL;
	assert_int_equal(sg_proxy_parse((const uint8_t *)longline, 106, &h, &err), 0);
	assert_int_equal(sg_proxy_parse((const uint8_t *)longline, 107, &h, &err), -1);
	assert_int_equal(sg_proxy_parse((const uint8_t *)longline, 200, &h, &err), -1);
	/* a NUL inside the line */
	static const uint8_t nul[] = "PROXY TCP4 1.2.3.4\0005.6.7.8 1 2\r\n";
	assert_int_equal(sg_proxy_parse(nul, sizeof(nul) - 1, &h, &err), -1);
}

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static size_t v2(uint8_t *out, uint8_t vc, uint8_t fam, const uint8_t *body, size_t len)
{
	memcpy(out, sig, 12);
	out[12] = vc;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	memcpy(out + 16, body, len);
	return 16 + len;
}

static void test_v2_inet(void **state)
{
	/* PROXY, TCP over IPv4: 127.0.0.5:40000 -> 127.0.0.1:25, then a TLV
	 * (PP2_TYPE_ALPN "h2") and a NOOP TLV, as send-proxy-v2 may add */
	uint8_t body[] = {127, 0, 0, 5, 127, 0, 0, 1, 0x9c, 0x40, 0x00, 0x19,
			  0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00};
	uint8_t buf[64];
	size_t n = v2(buf, 0x21, 0x11, body, sizeof(body));
	buf[n] = 0x16; /* the TLS ClientHello that follows is not part of it */
	struct sg_proxy_hdr h;
	const char *err = NULL;
	assert_int_equal(sg_proxy_parse(buf, n + 1, &h, &err), (int)n);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_string_equal(h.src_ip, "127.0.0.5");
	assert_int_equal(h.src_port, 40000);
	assert_string_equal(h.dst_ip, "127.0.0.1");
	assert_int_equal(h.dst_port, 25);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(sg_proxy_parse(buf, k, &h, &err), 0);
}

static void test_v2_inet6_local_unspec(void **state)
{
	uint8_t body[36] = {0};
	body[0] = 0x20;
	body[1] = 0x01;
	body[2] = 0x0d;
	body[3] = 0xb8;
	body[15] = 1;
	body[31] = 1; /* ::1 */
	body[32] = 0x01;
	body[33] = 0x00;
	body[35] = 25;
	uint8_t buf[64];
	size_t n = v2(buf, 0x21, 0x21, body, sizeof(body));
	struct sg_proxy_hdr h;
	const char *err = NULL;
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), (int)n);
	assert_string_equal(h.src_ip, "2001:db8::1");
	assert_string_equal(h.dst_ip, "::1");
	assert_int_equal(h.src_port, 256);
	/* LOCAL (health check): any family, addresses ignored */
	n = v2(buf, 0x20, 0x00, body, 0);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), 16);
	assert_true(h.local);
	n = v2(buf, 0x20, 0x31, body, 4);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), 20);
	assert_true(h.local);
	/* PROXY with UNSPEC: use the socket's addresses */
	n = v2(buf, 0x21, 0x00, body, 0);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), 16);
	assert_true(h.local);
}

static void test_v2_refusals(void **state)
{
	uint8_t body[300] = {0};
	uint8_t buf[3000];
	struct sg_proxy_hdr h;
	const char *err = NULL;
	size_t n;
	/* version 1 in the binary form, command 2 */
	n = v2(buf, 0x11, 0x11, body, 12);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	n = v2(buf, 0x22, 0x11, body, 12);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	/* UDP over IPv4/IPv6, UNIX stream and datagram, unknown families */
	static const uint8_t fams[] = {0x12, 0x22, 0x31, 0x32, 0x13, 0x41, 0xff};
	for (size_t i = 0; i < sizeof(fams); i++) {
		n = v2(buf, 0x21, fams[i], body, 216);
		err = NULL;
		assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
		assert_non_null(err);
	}
	/* address block shorter than the family needs */
	n = v2(buf, 0x21, 0x11, body, 11);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	n = v2(buf, 0x21, 0x21, body, 35);
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	/* TLVs: truncated header, value past the end */
	uint8_t t1[] = {127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0x01, 0x00};
	n = v2(buf, 0x21, 0x11, t1, sizeof(t1));
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	uint8_t t2[] = {127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0x01, 0x00, 0x05, 'a', 'b'};
	n = v2(buf, 0x21, 0x11, t2, sizeof(t2));
	assert_int_equal(sg_proxy_parse(buf, n, &h, &err), -1);
	/* longer than the cap: refused from the 16 fixed octets alone */
	memcpy(buf, sig, 12);
	buf[12] = 0x21;
	buf[13] = 0x11;
	buf[14] = 0xff;
	buf[15] = 0xff;
	assert_int_equal(sg_proxy_parse(buf, 16, &h, &err), -1);
	/* a signature that goes wrong half-way */
	uint8_t badsig[12];
	memcpy(badsig, sig, 12);
	badsig[7] = 'q';
	assert_int_equal(sg_proxy_parse(badsig, 12, &h, &err), -1);
	assert_int_equal(sg_proxy_parse(badsig, 7, &h, &err), 0);
	/* a TLS ClientHello where the header should be */
	static const uint8_t hello[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01};
	assert_int_equal(sg_proxy_parse(hello, sizeof(hello), &h, &err), -1);
}

static void test_cidr(void **state)
{
	struct sg_cidr c;
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	assert_int_equal(sg_cidr_parse("127.0.0.0/8", &c), 0);
	inet_pton(AF_INET, "127.1.2.3", &in.sin_addr);
	assert_true(sg_cidr_match(&c, (struct sockaddr *)&in));
	inet_pton(AF_INET, "128.0.0.1", &in.sin_addr);
	assert_false(sg_cidr_match(&c, (struct sockaddr *)&in));
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &in6.sin6_addr);
	assert_true(sg_cidr_match(&c, (struct sockaddr *)&in6));
	assert_int_equal(sg_cidr_parse("10.1.2.3/31", &c), 0);
	inet_pton(AF_INET, "10.1.2.2", &in.sin_addr);
	assert_true(sg_cidr_match(&c, (struct sockaddr *)&in));
	inet_pton(AF_INET, "10.1.2.4", &in.sin_addr);
	assert_false(sg_cidr_match(&c, (struct sockaddr *)&in));
	assert_int_equal(sg_cidr_parse("2001:db8::/33", &c), 0);
	inet_pton(AF_INET6, "2001:db8:7fff::1", &in6.sin6_addr);
	assert_true(sg_cidr_match(&c, (struct sockaddr *)&in6));
	inet_pton(AF_INET6, "2001:db8:8000::1", &in6.sin6_addr);
	assert_false(sg_cidr_match(&c, (struct sockaddr *)&in6));
	assert_false(sg_cidr_match(&c, (struct sockaddr *)&in));
	assert_int_equal(sg_cidr_parse("::1", &c), 0);
	assert_int_equal(c.bits, 128);
	static const char *const bad[] = {"", "/8", "1.2.3.4/33", "::1/129", "1.2.3/8", "a.b.c.d",
					  "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/8x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sg_cidr_parse(bad[i], &c), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_examples),
		cmocka_unit_test(test_v1_incremental),
		cmocka_unit_test(test_v1_refusals),
		cmocka_unit_test(test_v2_inet),
		cmocka_unit_test(test_v2_inet6_local_unspec),
		cmocka_unit_test(test_v2_refusals),
		cmocka_unit_test(test_cidr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
