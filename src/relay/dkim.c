/*
 * dkim.c: DKIM signing, relaxed/relaxed, rsa-sha256 and ed25519-sha256
 * (RFC 6376, RFC 8463). See dkim.h for the contract.
 *
 * One pass over the header section records where each field starts and
 * ends (bounded by SG_DKIM_MAX_HEADERS and SG_DKIM_MAX_HEADER_BYTES); the
 * body is canonicalised and hashed in one streaming pass through a small
 * staging buffer; the selected header fields are canonicalised straight
 * into the header hash. Nothing is copied but the signature field itself.
 */
#include "relay/dkim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/b64.h"
#include "core/buf.h"
#include "core/util.h"

enum sg_dkim_alg { SG_DKIM_RSA_SHA256, SG_DKIM_ED25519_SHA256 };

struct sg_dkim_signer {
	char *domain;
	char *selector;
	EVP_PKEY *key;
	enum sg_dkim_alg alg;
};

/* The header fields we sign, as data: each is signed as often as it occurs
 * in the message. From is signed one more time than it occurs (oversigning,
 * RFC 6376 8.15), so that a second From added in transit breaks the
 * signature. List-* are those of RFC 2369, RFC 2919 and RFC 8058. */
static const char *const sg_dkim_signed_headers[] = {
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
};
#define SG_DKIM_N_SIGNED (sizeof(sg_dkim_signed_headers) / sizeof(sg_dkim_signed_headers[0]))

/* Longest line of the folded DKIM-Signature field (RFC 5322 2.1.1). */
#define SG_DKIM_FOLD 78

static bool is_wsp(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static const char *openssl_err(const char *what)
{
	char ebuf[256];
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	if (e == 0)
		return sg_errf("%s failed", what);
	ERR_error_string_n(e, ebuf, sizeof(ebuf));
	return sg_errf("%s failed: %s", what, ebuf);
}

/* ---- canonicalisation ---- */

/* Staging buffer in front of a sink, so that the sink (a hash update) is
 * called with runs of octets rather than one octet at a time. */
struct sg_dkim_out {
	sg_dkim_sink *sink;
	void *ctx;
	size_t n;
	uint8_t buf[2048];
};

static void out_flush(struct sg_dkim_out *o)
{
	if (o->n > 0)
		o->sink(o->ctx, o->buf, o->n);
	o->n = 0;
}

static void out_byte(struct sg_dkim_out *o, uint8_t c)
{
	if (o->n == sizeof(o->buf))
		out_flush(o);
	o->buf[o->n++] = c;
}

static void out_crlf(struct sg_dkim_out *o)
{
	out_byte(o, '\r');
	out_byte(o, '\n');
}

/* RFC 6376 3.4.2: lower-case the name, unfold, compress WSP runs to one SP,
 * delete WSP at the end of the value and around the colon. */
static void canon_header(const uint8_t *f, size_t len, bool crlf, struct sg_dkim_out *o)
{
	const uint8_t *colon = memchr(f, ':', len);
	if (colon == NULL)
		return;
	size_t name_len = (size_t)(colon - f);
	while (name_len > 0 && is_wsp(f[name_len - 1]))
		name_len--;
	for (size_t i = 0; i < name_len; i++) {
		uint8_t c = f[i];
		out_byte(o, (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c);
	}
	out_byte(o, ':');
	bool started = false, wsp = false;
	for (size_t i = name_len; i < len; i++) {
		uint8_t c = f[i];
		if (f + i <= colon)
			continue;
		if (c == '\n' || (c == '\r' && i + 1 < len && f[i + 1] == '\n'))
			continue; /* unfold: delete the CRLF, keep the WSP after it */
		if (is_wsp(c)) {
			wsp = started;
			continue;
		}
		if (wsp)
			out_byte(o, ' ');
		wsp = false;
		started = true;
		out_byte(o, c);
	}
	if (crlf)
		out_crlf(o);
}

void sg_dkim_canon_header(const uint8_t *field, size_t len, sg_dkim_sink *sink, void *ctx)
{
	struct sg_dkim_out o = {.sink = sink, .ctx = ctx};
	canon_header(field, len, true, &o);
	out_flush(&o);
}

/* RFC 6376 3.4.4: delete WSP at the end of lines, compress WSP runs inside
 * a line to one SP, delete empty lines at the end of the body, and end a
 * non-empty body with CRLF. Empty lines are held back as a count until a
 * line with content shows they are not trailing. */
void sg_dkim_canon_body(const uint8_t *body, size_t len, sg_dkim_sink *sink, void *ctx)
{
	struct sg_dkim_out o = {.sink = sink, .ctx = ctx};
	size_t pending_crlf = 0;
	bool any = false, in_line = false, wsp = false;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = body[i];
		if (c == '\r' && i + 1 < len && body[i + 1] == '\n')
			continue;
		if (c == '\n') {
			pending_crlf = in_line ? 1 : pending_crlf + 1;
			in_line = false;
			wsp = false;
			continue;
		}
		if (is_wsp(c)) {
			wsp = true;
			continue;
		}
		if (!in_line) {
			for (; pending_crlf > 0; pending_crlf--)
				out_crlf(&o);
			in_line = true;
			any = true;
		}
		if (wsp)
			out_byte(&o, ' ');
		wsp = false;
		out_byte(&o, c);
	}
	if (any)
		out_crlf(&o);
	out_flush(&o);
}

/* ---- the header section ---- */

struct sg_dkim_field {
	size_t off, len; /* the raw field, without its final line end */
	size_t name_len; /* name without trailing WSP */
};

struct sg_dkim_msg {
	struct sg_dkim_field *f;
	size_t n, alloc;
	size_t body_off;
};

static void msg_free(struct sg_dkim_msg *m)
{
	free(m->f);
	m->f = NULL;
}

/* Split the header section into fields. A line that is neither a field nor
 * a continuation (no colon) is skipped with its continuations; it is never
 * signed. The section ends at the first empty line; without one, the whole
 * message is header and the body is empty. */
static int parse_headers(const uint8_t *msg, size_t len, struct sg_dkim_msg *m,
                         const char **error_r)
{
	size_t pos = 0;
	bool open = false; /* the last field may take continuation lines */
	memset(m, 0, sizeof(*m));
	m->body_off = len;
	while (pos < len) {
		const uint8_t *nl = memchr(msg + pos, '\n', len - pos);
		size_t line_end = nl != NULL ? (size_t)(nl - msg) : len;
		size_t next = nl != NULL ? line_end + 1 : len;
		size_t content_end = line_end;
		if (nl != NULL && content_end > pos && msg[content_end - 1] == '\r')
			content_end--;
		if (content_end == pos) {
			m->body_off = next;
			break;
		}
		if (next > SG_DKIM_MAX_HEADER_BYTES) {
			msg_free(m);
			sg_set_err(error_r, sg_errf("header section longer than %d octets",
			                            SG_DKIM_MAX_HEADER_BYTES));
			return -1;
		}
		if (is_wsp(msg[pos])) {
			if (open)
				m->f[m->n - 1].len = content_end - m->f[m->n - 1].off;
		} else {
			const uint8_t *colon = memchr(msg + pos, ':', content_end - pos);
			open = false;
			if (colon != NULL) {
				size_t name_len = (size_t)(colon - (msg + pos));
				while (name_len > 0 && is_wsp(msg[pos + name_len - 1]))
					name_len--;
				if (name_len > 0) {
					if (m->n == SG_DKIM_MAX_HEADERS) {
						msg_free(m);
						sg_set_err(error_r,
						           sg_errf("more than %d header fields",
						                   SG_DKIM_MAX_HEADERS));
						return -1;
					}
					if (m->n == m->alloc) {
						m->alloc = m->alloc ? m->alloc * 2 : 32;
						m->f = sg_realloc(m->f, m->alloc * sizeof(*m->f));
					}
					m->f[m->n++] =
					    (struct sg_dkim_field){.off = pos,
					                           .len = content_end - pos,
					                           .name_len = name_len};
					open = true;
				}
			}
		}
		pos = next;
	}
	return 0;
}

static bool field_is(const uint8_t *msg, const struct sg_dkim_field *f, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && strncasecmp((const char *)msg + f->off, name, n) == 0;
}

static size_t count_fields(const uint8_t *msg, const struct sg_dkim_msg *m, const char *name)
{
	size_t c = 0;
	for (size_t i = 0; i < m->n; i++)
		if (field_is(msg, &m->f[i], name))
			c++;
	return c;
}

/* ---- hashing ---- */

static void sink_digest(void *ctx, const uint8_t *p, size_t n)
{
	if (EVP_DigestUpdate(ctx, p, n) != 1)
		sg_fatal("EVP_DigestUpdate failed");
}

static void digest_init(EVP_MD_CTX **ctx)
{
	*ctx = EVP_MD_CTX_new();
	if (*ctx == NULL || EVP_DigestInit_ex(*ctx, EVP_sha256(), NULL) != 1)
		sg_fatal("cannot set up SHA-256");
}

static void digest_final(EVP_MD_CTX **ctx, uint8_t out[32])
{
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(*ctx, out, &n) != 1 || n != 32)
		sg_fatal("SHA-256 failed");
	EVP_MD_CTX_free(*ctx);
	*ctx = NULL;
}

static void hash_parsed(const uint8_t *msg, size_t len, const struct sg_dkim_msg *m,
                        const char *const *h_names, size_t n_names, const char *sig_field,
                        uint8_t hh_r[32], uint8_t bh_r[32])
{
	EVP_MD_CTX *ctx;
	if (bh_r != NULL) {
		digest_init(&ctx);
		sg_dkim_canon_body(msg + m->body_off, len - m->body_off, sink_digest, ctx);
		digest_final(&ctx, bh_r);
	}
	digest_init(&ctx);
	struct sg_dkim_out o = {.sink = sink_digest, .ctx = ctx};
	/* RFC 6376 5.4.2: the n-th occurrence of a name in h= is the n-th
	 * instance of that field counted from the bottom; a name with no
	 * instance left contributes nothing. For each distinct name, `next`
	 * remembers how far up the search has gone (O(names x distinct)). */
	const char **seen = sg_calloc(n_names > 0 ? n_names : 1, sizeof(*seen));
	size_t *next = sg_calloc(n_names > 0 ? n_names : 1, sizeof(*next));
	size_t n_seen = 0;
	for (size_t i = 0; i < n_names; i++) {
		size_t d = 0;
		while (d < n_seen && seen[d] != h_names[i] && strcasecmp(seen[d], h_names[i]) != 0)
			d++;
		if (d == n_seen) {
			seen[n_seen++] = h_names[i];
			next[d] = m->n;
		}
		size_t k = next[d];
		while (k > 0) {
			k--;
			if (field_is(msg, &m->f[k], h_names[i])) {
				canon_header(msg + m->f[k].off, m->f[k].len, true, &o);
				break;
			}
		}
		next[d] = k;
	}
	free(next);
	free(seen);
	/* RFC 6376 3.7: the signature field itself, b= empty, no final CRLF. */
	size_t sl = strlen(sig_field);
	while (sl > 0 && (sig_field[sl - 1] == '\n' || sig_field[sl - 1] == '\r'))
		sl--;
	canon_header((const uint8_t *)sig_field, sl, false, &o);
	out_flush(&o);
	digest_final(&ctx, hh_r);
}

int sg_dkim_hashes(const uint8_t *msg, size_t len, const char *const *h_names, size_t n_names,
                   const char *sig_field, uint8_t hh_r[32], uint8_t bh_r[32], const char **error_r)
{
	struct sg_dkim_msg m;
	if (parse_headers(msg, len, &m, error_r) < 0)
		return -1;
	hash_parsed(msg, len, &m, h_names, n_names, sig_field, hh_r, bh_r);
	msg_free(&m);
	return 0;
}

/* ---- keys ---- */

/* A domain or selector: dot-separated labels of letters, digits and
 * hyphens (RFC 6376 3.1 / 3.5: sub-domain; A-labels for IDNs). */
bool sg_dkim_valid_name(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 253 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* Encrypted keys are refused instead of prompting on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

int sg_dkim_signer_load(struct sg_dkim_signer **s_r, const char *domain, const char *selector,
                        const char *keyfile, const char **error_r)
{
	*s_r = NULL;
	if (!sg_dkim_valid_name(domain)) {
		sg_set_err(error_r, sg_errf("invalid DKIM domain '%.100s' (letters, digits, "
		                            "hyphens and dots; an IDN as its xn-- form)",
		                            domain));
		return -1;
	}
	if (!sg_dkim_valid_name(selector)) {
		sg_set_err(error_r, sg_errf("invalid DKIM selector '%.100s' (letters, digits, "
		                            "hyphens and dots)",
		                            selector));
		return -1;
	}
	int fd = open(keyfile, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		sg_set_err(error_r,
		           sg_errf("cannot open DKIM key %.200s: %s", keyfile, strerror(errno)));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		sg_set_err(error_r, sg_errf("DKIM key %.200s is not a regular file", keyfile));
		return -1;
	}
	if (st.st_size > 64 * 1024) {
		close(fd);
		sg_set_err(error_r, sg_errf("DKIM key %.200s is too large to be a key", keyfile));
		return -1;
	}
	FILE *f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		sg_set_err(error_r, sg_errf("cannot read DKIM key %.200s", keyfile));
		return -1;
	}
	ERR_clear_error();
	EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (key == NULL) {
		ERR_clear_error();
		sg_set_err(error_r, sg_errf("DKIM key %.200s: no PEM private key (unencrypted "
		                            "PKCS#8 or RSA PRIVATE KEY) could be read",
		                            keyfile));
		return -1;
	}
	enum sg_dkim_alg alg;
	switch (EVP_PKEY_get_base_id(key)) {
	case EVP_PKEY_RSA: {
		int bits = EVP_PKEY_get_bits(key);
		/* RFC 8301 3.2: signers MUST use at least 1024 bits. */
		if (bits < 1024 || bits > 8192) {
			EVP_PKEY_free(key);
			sg_set_err(error_r, sg_errf("DKIM key %.200s: RSA key of %d bits (1024 to "
			                            "8192 needed; 2048 recommended)",
			                            keyfile, bits));
			return -1;
		}
		alg = SG_DKIM_RSA_SHA256;
		break;
	}
	case EVP_PKEY_ED25519:
		alg = SG_DKIM_ED25519_SHA256;
		break;
	default:
		EVP_PKEY_free(key);
		sg_set_err(error_r, sg_errf("DKIM key %.200s: neither RSA nor Ed25519", keyfile));
		return -1;
	}
	struct sg_dkim_signer *s = sg_calloc(1, sizeof(*s));
	s->domain = sg_strdup(domain);
	s->selector = sg_strdup(selector);
	s->key = key;
	s->alg = alg;
	*s_r = s;
	return 0;
}

void sg_dkim_signer_free(struct sg_dkim_signer **s)
{
	if (*s == NULL)
		return;
	EVP_PKEY_free((*s)->key);
	free((*s)->domain);
	free((*s)->selector);
	free(*s);
	*s = NULL;
}

const char *sg_dkim_signer_domain(const struct sg_dkim_signer *s)
{
	return s->domain;
}

const char *sg_dkim_signer_selector(const struct sg_dkim_signer *s)
{
	return s->selector;
}

const char *sg_dkim_signer_algorithm(const struct sg_dkim_signer *s)
{
	return s->alg == SG_DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256";
}

int sg_dkim_dns_record(const struct sg_dkim_signer *s, char **txt_r, const char **error_r)
{
	uint8_t raw[32];
	unsigned char *der = NULL;
	const uint8_t *pub;
	size_t pub_len;
	*txt_r = NULL;
	if (s->alg == SG_DKIM_ED25519_SHA256) {
		size_t n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(s->key, raw, &n) != 1 || n != 32) {
			sg_set_err(error_r, openssl_err("reading the Ed25519 public key"));
			return -1;
		}
		pub = raw;
		pub_len = n;
	} else {
		int n = i2d_PUBKEY(s->key, &der);
		if (n <= 0) {
			sg_set_err(error_r, openssl_err("encoding the RSA public key"));
			return -1;
		}
		pub = der;
		pub_len = (size_t)n;
	}
	char *p64 = sg_malloc(SG_B64_ENCODED_LEN(pub_len) + 1);
	sg_b64_encode(pub, pub_len, p64);
	OPENSSL_free(der);
	*txt_r = sg_asprintf("v=DKIM1; k=%s; p=%s",
	                     s->alg == SG_DKIM_ED25519_SHA256 ? "ed25519" : "rsa", p64);
	free(p64);
	return 0;
}

int sg_dkim_sign_hash(const struct sg_dkim_signer *s, const uint8_t hh[32], uint8_t *sig,
                      size_t *sig_len, const char **error_r)
{
	size_t n = SG_DKIM_MAX_SIG;
	int ok;
	ERR_clear_error();
	if (s->alg == SG_DKIM_ED25519_SHA256) {
		/* RFC 8463 3: PureEdDSA over the SHA-256 of the header data. */
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (ctx == NULL)
			sg_fatal("out of memory");
		ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
		     EVP_DigestSign(ctx, sig, &n, hh, 32) == 1;
		EVP_MD_CTX_free(ctx);
	} else {
		/* RFC 6376 3.3.1: RSASSA-PKCS1-v1_5 with SHA-256 on the hash. */
		EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(s->key, NULL);
		if (pctx == NULL)
			sg_fatal("out of memory");
		ok = EVP_PKEY_sign_init(pctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) == 1 &&
		     EVP_PKEY_sign(pctx, NULL, &n, hh, 32) == 1 && n <= SG_DKIM_MAX_SIG &&
		     EVP_PKEY_sign(pctx, sig, &n, hh, 32) == 1;
		EVP_PKEY_CTX_free(pctx);
	}
	if (!ok) {
		sg_set_err(error_r, openssl_err("DKIM signing"));
		return -1;
	}
	*sig_len = n;
	return 0;
}

/* ---- the DKIM-Signature field ---- */

struct sg_dkim_fold {
	struct sg_buf *b;
	size_t col;
};

/* Append a word, preceded by a space, or by a fold when the line would
 * pass SG_DKIM_FOLD octets. */
static void fold_word(struct sg_dkim_fold *f, const char *w, size_t n, bool space)
{
	if (f->col + (space ? 1 : 0) + n > SG_DKIM_FOLD && f->col > 1) {
		sg_buf_append(f->b, "\r\n\t", 3);
		f->col = 1;
	} else if (space) {
		sg_buf_append(f->b, " ", 1);
		f->col++;
	}
	sg_buf_append(f->b, w, n);
	f->col += n;
}

static void fold_str(struct sg_dkim_fold *f, const char *w)
{
	fold_word(f, w, strlen(w), true);
}

int sg_dkim_sign_at(const struct sg_dkim_signer *s, const uint8_t *msg, size_t len, int64_t now,
                    char **header_r, const char **error_r)
{
	struct sg_dkim_msg m;
	*header_r = NULL;
	if (parse_headers(msg, len, &m, error_r) < 0)
		return -1;
	/* RFC 6376 5.4: From MUST be signed; RFC 5322 3.6: exactly one From.
	 * We refuse rather than sign a message a verifier would reject. */
	size_t n_from = count_fields(msg, &m, "from");
	if (n_from != 1) {
		msg_free(&m);
		sg_set_err(error_r, n_from == 0 ? "no From header field; not signed"
		                                : "more than one From header field; not signed");
		return -1;
	}

	/* h=: every listed field as often as it occurs, plus one more From. */
	const char **h = sg_malloc((m.n + 1) * sizeof(*h));
	size_t nh = 0;
	for (size_t i = 0; i < SG_DKIM_N_SIGNED; i++) {
		size_t c = count_fields(msg, &m, sg_dkim_signed_headers[i]);
		if (i == 0)
			c++; /* "from": oversigned */
		for (size_t k = 0; k < c; k++)
			h[nh++] = sg_dkim_signed_headers[i];
	}

	/* Body hash first: bh= is part of the signed field. */
	uint8_t bh[32], hh[32];
	EVP_MD_CTX *ctx;
	digest_init(&ctx);
	sg_dkim_canon_body(msg + m.body_off, len - m.body_off, sink_digest, ctx);
	digest_final(&ctx, bh);
	char bh64[SG_B64_ENCODED_LEN(32) + 1];
	sg_b64_encode(bh, 32, bh64);

	struct sg_buf b;
	sg_buf_init(&b, 64 * 1024);
	struct sg_dkim_fold f = {.b = &b, .col = 0};
	fold_word(&f, "DKIM-Signature:", 15, false);
	fold_str(&f, "v=1;");
	char *t = sg_asprintf("a=%s;", sg_dkim_signer_algorithm(s));
	fold_str(&f, t);
	free(t);
	fold_str(&f, "c=relaxed/relaxed;");
	t = sg_asprintf("d=%s;", s->domain);
	fold_str(&f, t);
	free(t);
	t = sg_asprintf("s=%s;", s->selector);
	fold_str(&f, t);
	free(t);
	t = sg_asprintf("t=%lld;", (long long)(now > 0 ? now : 0));
	fold_str(&f, t);
	free(t);
	for (size_t i = 0; i < nh; i++) {
		/* FWS may stand before and after each ':' of h= (RFC 6376 3.5). */
		t = sg_asprintf("%s%s%s", i == 0 ? "h=" : ":", h[i], i + 1 == nh ? ";" : "");
		fold_word(&f, t, strlen(t), i == 0);
		free(t);
	}
	t = sg_asprintf("bh=%s;", bh64);
	fold_str(&f, t);
	free(t);
	fold_str(&f, "b=");

	hash_parsed(msg, len, &m, h, nh, sg_buf_str(&b), hh, NULL);
	free(h);
	msg_free(&m);

	uint8_t sig[SG_DKIM_MAX_SIG];
	size_t sig_len;
	if (sg_dkim_sign_hash(s, hh, sig, &sig_len, error_r) < 0) {
		sg_buf_free(&b);
		return -1;
	}
	char sig64[SG_B64_ENCODED_LEN(SG_DKIM_MAX_SIG) + 1];
	size_t n64 = sg_b64_encode(sig, sig_len, sig64);
	/* b= folded anywhere: FWS is allowed inside base64string (3.5). */
	for (size_t i = 0; i < n64;) {
		size_t room = f.col < SG_DKIM_FOLD ? SG_DKIM_FOLD - f.col : 0;
		if (room == 0) {
			sg_buf_append(&b, "\r\n\t", 3);
			f.col = 1;
			continue;
		}
		size_t k = n64 - i < room ? n64 - i : room;
		sg_buf_append(&b, sig64 + i, k);
		f.col += k;
		i += k;
	}
	if (sg_buf_append(&b, "\r\n", 2) < 0) {
		sg_buf_free(&b);
		sg_set_err(error_r, "DKIM-Signature field too long");
		return -1;
	}
	*header_r = (char *)b.data; /* NUL-terminated, malloc'd by sg_buf */
	return 0;
}

int sg_dkim_sign(const struct sg_dkim_signer *s, const uint8_t *msg, size_t len, char **header_r,
                 const char **error_r)
{
	return sg_dkim_sign_at(s, msg, len, sg_time(), header_r, error_r);
}
