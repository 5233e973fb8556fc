/*
 * ntlm_msg.c: NTLM message parsing and building (MS-NLMP 2.2). The rules
 * every parser enforces are in ntlm_msg.h.
 */
#include "sasl/ntlm_msg.h"

#include <string.h>
#include <time.h>

#include "core/md4.h"

static const uint8_t ntlm_sig[8] = {'N', 'T', 'L', 'M', 'S', 'S', 'P', '\0'};

/* Common head: size cap, signature, MessageType (MS-NLMP 2.2.1). */
static int check_head(const uint8_t *m, size_t n, size_t min, uint32_t type)
{
	if (m == NULL || n < min || n > SG_NTLM_MSG_MAX)
		return -1;
	if (memcmp(m, ntlm_sig, sizeof(ntlm_sig)) != 0)
		return -1;
	if (sg_ntlm_get32(m + 8) != type)
		return -1;
	return 0;
}

/*
 * One security buffer at m[at..at+8): Len (2), MaxLen (2, ignored on receipt
 * per MS-NLMP 2.2.1), BufferOffset (4). The caller has checked at + 8 <= n.
 * hdr is the end of the fixed header: a non-empty buffer may not start in it.
 */
static int read_secbuf(const uint8_t *m, size_t n, size_t at, size_t hdr, size_t cap,
		       bool even, struct sg_ntlm_field *f)
{
	size_t len = sg_ntlm_get16(m + at);
	size_t off = sg_ntlm_get32(m + at + 4);
	f->p = NULL;
	f->len = 0;
	if (off > n)
		return -1;
	if (len == 0)
		return 0;
	if (len > cap || off < hdr || len > n - off)
		return -1;
	/* Unicode strings are UTF-16LE: an odd length cannot be one. */
	if (even && (len & 1u) != 0)
		return -1;
	f->p = m + off;
	f->len = len;
	return 0;
}

int sg_ntlm_parse_negotiate(const uint8_t *m, size_t n, struct sg_ntlm_negotiate *out)
{
	memset(out, 0, sizeof(*out));
	if (check_head(m, n, 16, SG_NTLM_NEGOTIATE) < 0)
		return -1;
	out->flags = sg_ntlm_get32(m + 12);
	/* A 16-octet NEGOTIATE (signature, type, flags) is what early clients
	 * sent; anything longer must hold the whole 32-octet header. */
	if (n == 16)
		return 0;
	size_t hdr = SG_NTLM_NEGOTIATE_HDR;
	if ((out->flags & SG_NTLMSSP_NEGOTIATE_VERSION) != 0)
		hdr += SG_NTLM_VERSION_LEN;
	if (n < hdr)
		return -1;
	if (read_secbuf(m, n, 16, hdr, SG_NTLM_NAME_MAX, false, &out->domain) < 0 ||
	    read_secbuf(m, n, 24, hdr, SG_NTLM_NAME_MAX, false, &out->workstation) < 0)
		return -1;
	return 0;
}

int sg_ntlm_parse_challenge(const uint8_t *m, size_t n, struct sg_ntlm_challenge *out)
{
	memset(out, 0, sizeof(*out));
	if (check_head(m, n, SG_NTLM_CHALLENGE_HDR, SG_NTLM_CHALLENGE) < 0)
		return -1;
	out->flags = sg_ntlm_get32(m + 20);
	memcpy(out->server_challenge, m + 24, 8);
	size_t hdr = SG_NTLM_CHALLENGE_HDR;
	if ((out->flags & SG_NTLMSSP_NEGOTIATE_VERSION) != 0)
		hdr += SG_NTLM_VERSION_LEN;
	if (n < hdr)
		return -1;
	bool uni = (out->flags & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0;
	if (read_secbuf(m, n, 12, hdr, SG_NTLM_NAME_MAX, uni, &out->target_name) < 0 ||
	    read_secbuf(m, n, 40, hdr, SG_NTLM_TARGET_INFO_MAX, false, &out->target_info) < 0)
		return -1;
	if (out->target_info.len > 0 && sg_ntlm_av_check(out->target_info.p, out->target_info.len) < 0)
		return -1;
	return 0;
}

int sg_ntlm_parse_authenticate(const uint8_t *m, size_t n, struct sg_ntlm_authenticate *out)
{
	memset(out, 0, sizeof(*out));
	if (check_head(m, n, SG_NTLM_AUTHENTICATE_HDR, SG_NTLM_AUTHENTICATE) < 0)
		return -1;
	out->flags = sg_ntlm_get32(m + 60);
	size_t hdr = SG_NTLM_AUTHENTICATE_HDR;
	if ((out->flags & SG_NTLMSSP_NEGOTIATE_VERSION) != 0)
		hdr += SG_NTLM_VERSION_LEN;
	if (n < hdr)
		return -1;
	bool uni = (out->flags & SG_NTLMSSP_NEGOTIATE_UNICODE) != 0;
	if (read_secbuf(m, n, 12, hdr, SG_NTLM_LM_RESP_MAX, false, &out->lm) < 0 ||
	    read_secbuf(m, n, 20, hdr, SG_NTLM_NT_RESP_MAX, false, &out->nt) < 0 ||
	    read_secbuf(m, n, 28, hdr, SG_NTLM_NAME_MAX, uni, &out->domain) < 0 ||
	    read_secbuf(m, n, 36, hdr, SG_NTLM_NAME_MAX, uni, &out->user) < 0 ||
	    read_secbuf(m, n, 44, hdr, SG_NTLM_NAME_MAX, uni, &out->workstation) < 0 ||
	    read_secbuf(m, n, 52, hdr, SG_NTLM_SESSION_KEY_MAX, false, &out->session_key) < 0)
		return -1;
	out->payload_min = n;
	const struct sg_ntlm_field *all[] = {&out->lm, &out->nt, &out->domain,
					     &out->user, &out->workstation, &out->session_key};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i]->len > 0 && (size_t)(all[i]->p - m) < out->payload_min)
			out->payload_min = (size_t)(all[i]->p - m);
	}
	return 0;
}

int sg_ntlm_av_find(const uint8_t *p, size_t n, uint16_t id, struct sg_ntlm_field *value)
{
	size_t off = 0;
	while (n - off >= 4) {
		uint16_t aid = sg_ntlm_get16(p + off);
		size_t alen = sg_ntlm_get16(p + off + 2);
		if (alen > n - off - 4)
			return -1;
		if (aid == SG_MSV_AV_EOL)
			return alen == 0 && id == SG_MSV_AV_EOL ? 1 : (alen == 0 ? 0 : -1);
		if (aid == id) {
			if (value != NULL) {
				value->p = alen > 0 ? p + off + 4 : NULL;
				value->len = alen;
			}
			return 1;
		}
		off += 4 + alen;
	}
	return -1; /* no MsvAvEOL */
}

int sg_ntlm_av_check(const uint8_t *p, size_t n)
{
	/* Walking to MsvAvEOL checks every pair on the way. */
	return sg_ntlm_av_find(p, n, SG_MSV_AV_EOL, NULL) == 1 ? 0 : -1;
}

static int put16(struct sg_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	return sg_buf_append(b, x, sizeof(x));
}

static int put32(struct sg_buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	return sg_buf_append(b, x, sizeof(x));
}

static int put_secbuf(struct sg_buf *b, size_t len, size_t off)
{
	if (len > UINT16_MAX || off > UINT32_MAX)
		return -1;
	if (put16(b, (uint16_t)len) < 0 || put16(b, (uint16_t)len) < 0 || put32(b, (uint32_t)off) < 0)
		return -1;
	return 0;
}

int sg_ntlm_av_add(struct sg_buf *b, uint16_t id, const void *value, size_t len)
{
	if (len > UINT16_MAX)
		return -1;
	if (put16(b, id) < 0 || put16(b, (uint16_t)len) < 0)
		return -1;
	return len > 0 ? sg_buf_append(b, value, len) : 0;
}

int sg_ntlm_av_add_str(struct sg_buf *b, uint16_t id, const char *utf8)
{
	uint8_t u16[SG_NTLM_NAME_MAX];
	long n = sg_utf8_to_utf16le(utf8, strlen(utf8), u16, sizeof(u16));
	if (n < 0)
		return -1;
	return sg_ntlm_av_add(b, id, u16, (size_t)n);
}

static int put_head(struct sg_buf *b, uint32_t type)
{
	if (sg_buf_append(b, ntlm_sig, sizeof(ntlm_sig)) < 0)
		return -1;
	return put32(b, type);
}

int sg_ntlm_build_negotiate(uint32_t flags, struct sg_buf *out)
{
	/* MS-NLMP 2.2.2.10 VERSION: 10.0, build 0, NTLMSSP_REVISION_W2K3 (15).
	 * Some peers (gss-ntlmssp) refuse a NEGOTIATE without the field. */
	static const uint8_t version[SG_NTLM_VERSION_LEN] = {10, 0, 0, 0, 0, 0, 0, 15};
	bool with_version = (flags & SG_NTLMSSP_NEGOTIATE_VERSION) != 0;
	size_t off = SG_NTLM_NEGOTIATE_HDR + (with_version ? SG_NTLM_VERSION_LEN : 0);
	if (put_head(out, SG_NTLM_NEGOTIATE) < 0 || put32(out, flags) < 0 ||
	    put_secbuf(out, 0, off) < 0 || put_secbuf(out, 0, off) < 0)
		return -1;
	if (with_version && sg_buf_append(out, version, sizeof(version)) < 0)
		return -1;
	return 0;
}

int sg_ntlm_build_challenge(uint32_t flags, const uint8_t server_challenge[8],
			    const struct sg_ntlm_field *target_name,
			    const struct sg_ntlm_field *target_info, struct sg_buf *out)
{
	static const uint8_t zero8[8];
	size_t off = SG_NTLM_CHALLENGE_HDR;
	if (put_head(out, SG_NTLM_CHALLENGE) < 0 || put_secbuf(out, target_name->len, off) < 0 ||
	    put32(out, flags) < 0 || sg_buf_append(out, server_challenge, 8) < 0 ||
	    sg_buf_append(out, zero8, 8) < 0 ||
	    put_secbuf(out, target_info->len, off + target_name->len) < 0)
		return -1;
	if ((target_name->len > 0 && sg_buf_append(out, target_name->p, target_name->len) < 0) ||
	    (target_info->len > 0 && sg_buf_append(out, target_info->p, target_info->len) < 0))
		return -1;
	return 0;
}

int sg_ntlm_build_authenticate(uint32_t flags, const struct sg_ntlm_field *lm,
			       const struct sg_ntlm_field *nt, const struct sg_ntlm_field *domain,
			       const struct sg_ntlm_field *user, const struct sg_ntlm_field *workstation,
			       bool with_mic, struct sg_buf *out, size_t *mic_offset_r)
{
	static const uint8_t zero24[SG_NTLM_VERSION_LEN + SG_NTLM_MIC_LEN];
	size_t start = out->len;
	size_t off = with_mic ? SG_NTLM_MIC_OFFSET + SG_NTLM_MIC_LEN : SG_NTLM_AUTHENTICATE_HDR;
	/* Payload order: domain, user, workstation, LM, NT (as Windows). */
	size_t off_dom = off, off_user = off_dom + domain->len, off_ws = off_user + user->len;
	size_t off_lm = off_ws + workstation->len, off_nt = off_lm + lm->len;
	size_t end = off_nt + nt->len;
	if (put_head(out, SG_NTLM_AUTHENTICATE) < 0 || put_secbuf(out, lm->len, off_lm) < 0 ||
	    put_secbuf(out, nt->len, off_nt) < 0 || put_secbuf(out, domain->len, off_dom) < 0 ||
	    put_secbuf(out, user->len, off_user) < 0 || put_secbuf(out, workstation->len, off_ws) < 0 ||
	    put_secbuf(out, 0, end) < 0 || put32(out, flags) < 0)
		return -1;
	if (with_mic && sg_buf_append(out, zero24, sizeof(zero24)) < 0)
		return -1;
	const struct sg_ntlm_field *parts[] = {domain, user, workstation, lm, nt};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (parts[i]->len > 0 && sg_buf_append(out, parts[i]->p, parts[i]->len) < 0)
			return -1;
	}
	if (mic_offset_r != NULL)
		*mic_offset_r = with_mic ? start + SG_NTLM_MIC_OFFSET : 0;
	return 0;
}

static int put_utf8(uint32_t cp, char *out, size_t outsize, size_t *o)
{
	uint8_t tmp[4];
	size_t k;
	if (cp < 0x80) {
		tmp[0] = (uint8_t)cp;
		k = 1;
	} else if (cp < 0x800) {
		tmp[0] = (uint8_t)(0xC0 | (cp >> 6));
		tmp[1] = (uint8_t)(0x80 | (cp & 0x3F));
		k = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (uint8_t)(0xE0 | (cp >> 12));
		tmp[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		tmp[2] = (uint8_t)(0x80 | (cp & 0x3F));
		k = 3;
	} else {
		tmp[0] = (uint8_t)(0xF0 | (cp >> 18));
		tmp[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		tmp[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		tmp[3] = (uint8_t)(0x80 | (cp & 0x3F));
		k = 4;
	}
	if (k >= outsize - *o) /* keep room for the NUL */
		return -1;
	memcpy(out + *o, tmp, k);
	*o += k;
	return 0;
}

int sg_ntlm_utf16_to_utf8(const uint8_t *p, size_t n, char *out, size_t outsize)
{
	size_t o = 0;
	if (outsize == 0 || (n & 1u) != 0)
		return -1;
	for (size_t i = 0; i < n; i += 2) {
		uint32_t cp = sg_ntlm_get16(p + i);
		if (cp == 0)
			return -1;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			if (n - i < 4)
				return -1;
			uint32_t lo = sg_ntlm_get16(p + i + 2);
			if (lo < 0xDC00 || lo > 0xDFFF)
				return -1;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			i += 2;
		} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
			return -1;
		}
		if (put_utf8(cp, out, outsize, &o) < 0)
			return -1;
	}
	out[o] = '\0';
	return 0;
}

int sg_ntlm_oem_to_utf8(const uint8_t *p, size_t n, char *out, size_t outsize)
{
	if (outsize == 0 || (n > 0 && memchr(p, '\0', n) != NULL))
		return -1;
	if (n == 0) {
		out[0] = '\0';
		return 0;
	}
	if (sg_utf8_to_utf16le((const char *)p, n, NULL, 0) >= 0) {
		if (n >= outsize)
			return -1;
		memcpy(out, p, n);
		out[n] = '\0';
		return 0;
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (put_utf8(p[i], out, outsize, &o) < 0)
			return -1;
	}
	out[o] = '\0';
	return 0;
}

void sg_ntlm_oem_to_utf16(const uint8_t *p, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = p[i];
		out[2 * i + 1] = 0;
	}
}

void sg_ntlm_upper_utf16(uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2) {
		uint32_t c = sg_ntlm_get16(p + i);
		if ((c >= 'a' && c <= 'z') || (c >= 0xE0 && c <= 0xFE && c != 0xF7) ||
		    (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2) || (c >= 0x430 && c <= 0x44F))
			c -= 0x20;
		else if (c == 0xFF)
			c = 0x178;
		else if (c >= 0x450 && c <= 0x45F)
			c -= 0x50;
		p[i] = (uint8_t)c;
		p[i + 1] = (uint8_t)(c >> 8);
	}
}

void sg_ntlm_filetime_now(uint8_t out[8])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t = ((uint64_t)ts.tv_sec + 11644473600ull) * 10000000ull +
		     (uint64_t)ts.tv_nsec / 100u;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(t >> (8 * i));
}
