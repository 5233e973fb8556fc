/*
 * proxy.h: the PROXY protocol header a TCP load balancer (HAProxy's
 * send-proxy / send-proxy-v2) puts before the first byte of a connection,
 * versions 1 (text) and 2 (binary), as specified in HAProxy's
 * doc/proxy-protocol.txt. Pure: bytes in, result out; no I/O.
 *
 * sg_proxy_parse() looks at the octets received so far:
 *   > 0  a complete header of that many octets (what follows is the client's
 *        own data: SMTP commands or a TLS ClientHello);
 *    0   incomplete: every octet given belongs to the header (the caller may
 *        consume them all and must wait for more);
 *   -1   not a valid header (*error_r says why): refuse the connection.
 *
 * Strictness (section 2.1, 2.2 of proxy-protocol.txt):
 *   v1: "PROXY " TCP4|TCP6|UNKNOWN, then for TCP4/TCP6 exactly
 *       src SP dst SP srcport SP dstport CRLF, addresses of the announced
 *       family, ports 0..65535 without leading zeros; at most 107 octets
 *       with the CRLF. UNKNOWN: the rest of the line is ignored.
 *   v2: the 12-octet signature, version 2, command LOCAL or PROXY, family
 *       TCP over IPv4 or IPv6 (UNSPEC with PROXY, and any family with LOCAL,
 *       mean "use the socket's own addresses": health checks); UDP and UNIX
 *       are refused; the address block must fit the announced length, and
 *       the TLVs after it are walked with bounds checks and skipped.
 *       The whole header is capped at SG_PROXY_V2_MAX octets.
 */
#ifndef SG_PROXY_H
#define SG_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_PROXY_V1_MAX 107
#define SG_PROXY_V2_MAX 2048 /* 16-octet fixed part + addresses + TLVs */
#define SG_PROXY_MAX SG_PROXY_V2_MAX

struct sg_proxy_hdr {
	int version;         /* 1 or 2 */
	bool local;          /* no addresses: use the socket's (LOCAL, UNSPEC, UNKNOWN) */
	int family;          /* AF_INET or AF_INET6 when !local */
	char src_ip[46];     /* textual, as inet_ntop writes it */
	unsigned src_port;
	char dst_ip[46];
	unsigned dst_port;
};

int sg_proxy_parse(const uint8_t *p, size_t len, struct sg_proxy_hdr *h, const char **error_r);

/* Trusted senders of the header: "ADDR" or "ADDR/BITS", IPv4 or IPv6.
 * An IPv4-mapped IPv6 peer (::ffff:a.b.c.d, a dual-stack listener) matches
 * the IPv4 networks. */
struct sg_cidr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned bits;
};
int sg_cidr_parse(const char *s, struct sg_cidr *c);
struct sockaddr;
bool sg_cidr_match(const struct sg_cidr *c, const struct sockaddr *sa);

#endif
