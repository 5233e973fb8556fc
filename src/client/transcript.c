#include "client/transcript.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/util.h"

void sg_transcript_init(struct sg_transcript *t)
{
	memset(t, 0, sizeof(*t));
	t->start_ms = sg_now_ms();
}

void sg_transcript_add(struct sg_transcript *t, enum sg_tr_dir dir, const char *line,
		       const char *decoded)
{
	if (t->n == t->alloc) {
		t->alloc = t->alloc ? t->alloc * 2 : 32;
		t->e = sg_realloc(t->e, t->alloc * sizeof(*t->e));
	}
	struct sg_tr_entry *e = &t->e[t->n++];
	e->dir = dir;
	e->line = sg_strdup(line);
	e->decoded = decoded != NULL ? sg_strdup(decoded) : NULL;
	e->ms = sg_now_ms() - t->start_ms;
}

void sg_transcript_free(struct sg_transcript *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->e[i].line);
		free(t->e[i].decoded);
	}
	free(t->e);
	memset(t, 0, sizeof(*t));
}

static size_t secret_at(const uint8_t *d, size_t len, size_t i, const char *const *secrets)
{
	if (secrets == NULL)
		return 0;
	for (size_t k = 0; secrets[k] != NULL; k++) {
		size_t n = strlen(secrets[k]);
		if (n > 0 && n <= len - i && memcmp(d + i, secrets[k], n) == 0)
			return n;
	}
	return 0;
}

bool sg_sasl_contains_secret(const uint8_t *data, size_t len, const char *const *secrets)
{
	for (size_t i = 0; i < len; i++)
		if (secret_at(data, len, i, secrets) > 0)
			return true;
	return false;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* A security buffer (len, maxlen, offset) at pos, checked against the message
 * (MS-NLMP 2.2.1); rendered as ASCII from UTF-16LE or OEM. */
static void ntlm_field(struct sg_buf *o, const uint8_t *d, size_t len, size_t pos, bool unicode,
		       const char *label)
{
	if (pos + 8 > len)
		return;
	size_t flen = le16(d + pos);
	size_t off = le32(d + pos + 4);
	if (off > len || flen > len - off) {
		sg_buf_printf(o, ", %s out of bounds", label);
		return;
	}
	sg_buf_printf(o, ", %s \"", label);
	size_t step = unicode ? 2 : 1;
	for (size_t i = 0; i + step <= flen && i < 200; i += step) {
		unsigned c = unicode ? le16(d + off + i) : d[off + i];
		if (c >= 0x20 && c < 0x7f)
			sg_buf_printf(o, "%c", (char)c);
		else
			sg_buf_append_str(o, "?");
	}
	sg_buf_append_str(o, "\"");
}

static void describe_ntlm(struct sg_buf *o, const uint8_t *d, size_t len)
{
	uint32_t type = le32(d + 8);
	static const char *const names[] = {"?", "NEGOTIATE", "CHALLENGE", "AUTHENTICATE"};
	sg_buf_printf(o, "NTLM %s message (type %u, %zu octets", type <= 3 ? names[type] : "unknown",
		      type, len);
	if (type == 2 && len >= 32) {
		uint32_t flags = le32(d + 20);
		sg_buf_printf(o, ", flags 0x%08x", flags);
		ntlm_field(o, d, len, 12, (flags & 1u) != 0, "target");
		sg_buf_printf(o, ", %s", (flags & 0x00800000u) ? "with target info (NTLMv2 possible)"
							     : "no target info");
	} else if (type == 3 && len >= 64) {
		uint32_t flags = le32(d + 60);
		size_t ntlen = le16(d + 20);
		ntlm_field(o, d, len, 28, (flags & 1u) != 0, "domain");
		ntlm_field(o, d, len, 36, (flags & 1u) != 0, "user");
		ntlm_field(o, d, len, 44, (flags & 1u) != 0, "workstation");
		sg_buf_printf(o, ", NT response %zu octets (%s)", ntlen,
			      ntlen > 24 ? "NTLMv2" : ntlen == 24 ? "NTLMv1" : "empty");
	}
	sg_buf_append_str(o, ")");
}

char *sg_sasl_describe(const uint8_t *d, size_t len, const char *const *secrets)
{
	struct sg_buf o;
	sg_buf_init(&o, 65536);
	if (len == 0) {
		sg_buf_append_str(&o, "empty");
		return sg_strdup(sg_buf_str(&o));
	}
	if (len >= 12 && memcmp(d, "NTLMSSP\0", 8) == 0) {
		describe_ntlm(&o, d, len);
		char *r = sg_strdup(sg_buf_str(&o));
		sg_buf_free(&o);
		return r;
	}
	size_t binary = 0;
	for (size_t i = 0; i < len; i++)
		if ((d[i] < 0x20 && d[i] != 0 && d[i] != 1 && d[i] != '\t') || d[i] == 0x7f)
			binary++;
	if (binary * 8 > len) {
		sg_buf_printf(&o, "%zu octets of binary data:", len);
		for (size_t i = 0; i < len && i < 16; i++)
			sg_buf_printf(&o, " %02x", d[i]);
		if (len > 16)
			sg_buf_append_str(&o, " ...");
		char *r = sg_strdup(sg_buf_str(&o));
		sg_buf_free(&o);
		return r;
	}
	for (size_t i = 0; i < len;) {
		size_t s = secret_at(d, len, i, secrets);
		if (s > 0) {
			sg_buf_append_str(&o, "****");
			i += s;
			continue;
		}
		uint8_t c = d[i++];
		if (c == 0)
			sg_buf_append_str(&o, "\\0");
		else if (c < 0x20 || c >= 0x7f)
			sg_buf_printf(&o, "\\x%02x", c);
		else if (c == '\\')
			sg_buf_append_str(&o, "\\\\");
		else
			sg_buf_append(&o, &c, 1);
	}
	char *r = sg_strdup(sg_buf_str(&o));
	sg_buf_free(&o);
	return r;
}
