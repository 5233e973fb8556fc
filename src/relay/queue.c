#include "relay/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/secret.h"
#include "core/util.h"

struct sg_queue {
	char *dir;     /* <data_dir>/queue */
	char *tmp, *msg, *env, *ctl, *corrupt;
};

/* ---- envelope format ---- */

void sg_envelope_init(struct sg_envelope *e)
{
	memset(e, 0, sizeof(*e));
}

static void rcpt_free(struct sg_qrcpt *r)
{
	free(r->addr);
	free(r->orcpt);
	free(r->remote_mta);
	free(r->diag);
}

void sg_envelope_free(struct sg_envelope *e)
{
	free(e->from);
	free(e->login);
	free(e->envid);
	for (size_t i = 0; i < e->nrcpts; i++)
		rcpt_free(&e->rcpts[i]);
	free(e->rcpts);
	memset(e, 0, sizeof(*e));
}

void sg_envelope_add_rcpt(struct sg_envelope *e, const char *addr, unsigned notify,
			  const char *orcpt)
{
	e->rcpts = sg_realloc(e->rcpts, (e->nrcpts + 1) * sizeof(*e->rcpts));
	struct sg_qrcpt *r = &e->rcpts[e->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = sg_strdup(addr);
	r->orcpt = orcpt != NULL && orcpt[0] != '\0' ? sg_strdup(orcpt) : NULL;
	r->notify = notify;
}

void sg_qesc(struct sg_buf *out, const char *v)
{
	if (v == NULL || v[0] == '\0' || strcmp(v, "-") == 0) {
		sg_buf_append_str(out, v != NULL && v[0] == '-' ? "%2D" : "-");
		return;
	}
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '%') {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			sg_buf_append(out, e, 3);
		} else {
			sg_buf_append(out, p, 1);
		}
	}
}

/* Decode one token in place; NULL for "-". -1 on a bad escape or a NUL. */
static int qunesc(char *tok, char **out)
{
	if (strcmp(tok, "-") == 0) {
		*out = NULL;
		return 0;
	}
	char *w = tok;
	for (char *r = tok; *r != '\0'; r++) {
		if (*r != '%') {
			*w++ = *r;
			continue;
		}
		uint8_t b;
		char hx[3] = {r[1], r[1] != '\0' ? r[2] : '\0', '\0'};
		if (hx[0] == '\0' || hx[1] == '\0' || sg_unhex(hx, &b, 1) < 0 || b == 0)
			return -1;
		*w++ = (char)b;
		r += 2;
	}
	*w = '\0';
	*out = tok;
	return 0;
}

int sg_notify_parse(const char *s, unsigned *out)
{
	unsigned n = 0;
	const char *p = s;
	if (*p == '\0')
		return -1;
	while (*p != '\0') {
		size_t l = strcspn(p, ",");
		if (l == 5 && strncasecmp(p, "NEVER", 5) == 0)
			n |= SG_NOTIFY_NEVER;
		else if (l == 7 && strncasecmp(p, "SUCCESS", 7) == 0)
			n |= SG_NOTIFY_SUCCESS;
		else if (l == 7 && strncasecmp(p, "FAILURE", 7) == 0)
			n |= SG_NOTIFY_FAILURE;
		else if (l == 5 && strncasecmp(p, "DELAY", 5) == 0)
			n |= SG_NOTIFY_DELAY;
		else
			return -1;
		p += l;
		if (*p == ',') {
			p++;
			if (*p == '\0')
				return -1;
		}
	}
	/* RFC 3461 4.1: NEVER must appear alone */
	if ((n & SG_NOTIFY_NEVER) && n != SG_NOTIFY_NEVER)
		return -1;
	*out = n;
	return 0;
}

const char *sg_notify_str(unsigned n, char *buf, size_t size)
{
	if (n == 0) {
		sg_strlcpy(buf, "-", size);
		return buf;
	}
	if (n & SG_NOTIFY_NEVER) {
		sg_strlcpy(buf, "NEVER", size);
		return buf;
	}
	snprintf(buf, size, "%s%s%s%s%s", (n & SG_NOTIFY_SUCCESS) ? "SUCCESS" : "",
		 (n & SG_NOTIFY_SUCCESS) && (n & (SG_NOTIFY_FAILURE | SG_NOTIFY_DELAY)) ? "," : "",
		 (n & SG_NOTIFY_FAILURE) ? "FAILURE" : "",
		 (n & SG_NOTIFY_FAILURE) && (n & SG_NOTIFY_DELAY) ? "," : "",
		 (n & SG_NOTIFY_DELAY) ? "DELAY" : "");
	return buf;
}

void sg_envelope_format(const struct sg_envelope *e, struct sg_buf *b)
{
	sg_buf_printf(b, "smtpgate-queue 1\nid %s\narrival %" PRId64 "\nfrom ", e->id, e->arrival);
	sg_qesc(b, e->from);
	sg_buf_append_str(b, "\nlogin ");
	sg_qesc(b, e->login);
	sg_buf_printf(b, "\nsize %" PRIu64 "\nbody %s\nsmtputf8 %d\nret %s\nenvid ", e->size,
		      e->body == SG_BODY_7BIT ? "7bit" : e->body == SG_BODY_8BITMIME ? "8bitmime" : "-",
		      e->smtputf8 ? 1 : 0,
		      e->ret == SG_RET_FULL ? "full" : e->ret == SG_RET_HDRS ? "hdrs" : "-");
	sg_qesc(b, e->envid);
	sg_buf_printf(b, "\ndsn %d\n", e->is_dsn ? 1 : 0);
	for (size_t i = 0; i < e->nrcpts; i++) {
		char nb[40];
		sg_buf_append_str(b, "rcpt ");
		sg_qesc(b, e->rcpts[i].addr);
		sg_buf_printf(b, " %s ", sg_notify_str(e->rcpts[i].notify, nb, sizeof(nb)));
		sg_qesc(b, e->rcpts[i].orcpt);
		sg_buf_append_str(b, "\n");
	}
	sg_buf_append_str(b, ".\n");
}

void sg_qrec_attempt(struct sg_buf *out, int64_t t)
{
	sg_buf_printf(out, "A %" PRId64 "\n", t);
}

void sg_qrec_result(struct sg_buf *out, char kind, size_t idx, int64_t t, const char *status,
		    const char *mta, const char *diag)
{
	sg_buf_printf(out, "%c %zu %" PRId64 " ", kind, idx, t);
	if (kind != 'D') {
		sg_qesc(out, status);
		sg_buf_append_str(out, " ");
	}
	sg_qesc(out, mta);
	sg_buf_append_str(out, " ");
	sg_qesc(out, diag);
	sg_buf_append_str(out, "\n");
}

void sg_qrec_done(struct sg_buf *out, size_t idx)
{
	sg_buf_printf(out, "N %zu\n", idx);
}

void sg_qrec_warned(struct sg_buf *out, int64_t t)
{
	sg_buf_printf(out, "W %" PRId64 "\n", t);
}

#define MAX_TOKS 8

/* Split a line on single spaces; -1 when there are more than max fields or
 * an empty field (two spaces, a leading or trailing space). */
static int split(char *line, char **tok, size_t max, size_t *n_r)
{
	size_t n = 0;
	char *p = line;
	for (;;) {
		if (n == max)
			return -1;
		tok[n++] = p;
		char *sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		*sp = '\0';
		if (sp == p)
			return -1;
		p = sp + 1;
	}
	if (*tok[n - 1] == '\0')
		return -1;
	*n_r = n;
	return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
	uint64_t v;
	if (sg_parse_u64(s, 0, INT64_MAX, &v) < 0)
		return -1;
	*out = (int64_t)v;
	return 0;
}

static char *dup_or_null(const char *s)
{
	return s != NULL ? sg_strdup(s) : NULL;
}

static bool valid_status(const char *s)
{
	/* RFC 3463: class "." subject "." detail, class 2, 4 or 5 */
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	const char *p = s + 2;
	for (int part = 0; part < 2; part++) {
		size_t d = 0;
		while (p[d] >= '0' && p[d] <= '9')
			d++;
		if (d == 0 || d > 3)
			return false;
		p += d;
		if (part == 0) {
			if (*p != '.')
				return false;
			p++;
		}
	}
	return *p == '\0';
}

enum { P_MAGIC, P_HEADER, P_RECORDS };

struct parse_state {
	int phase;
	unsigned seen; /* header keys seen (bit per key) */
};

static const char *const header_keys[] = {"id", "arrival", "from", "login", "size", "body",
					  "smtputf8", "ret", "envid", "dsn"};
#define NHEADER (sizeof(header_keys) / sizeof(header_keys[0]))

static int parse_header_line(struct sg_envelope *e, struct parse_state *ps, char **t, size_t n)
{
	if (strcmp(t[0], "rcpt") == 0) {
		if (ps->seen != (1u << NHEADER) - 1 || n != 4 || e->nrcpts >= SG_QUEUE_MAX_RCPTS)
			return -1;
		char *addr, *orcpt;
		unsigned notify = 0;
		if (qunesc(t[1], &addr) < 0 || addr == NULL || qunesc(t[3], &orcpt) < 0)
			return -1;
		if (strcmp(t[2], "-") != 0 && sg_notify_parse(t[2], &notify) < 0)
			return -1;
		sg_envelope_add_rcpt(e, addr, notify, orcpt);
		return 0;
	}
	if (strcmp(t[0], ".") == 0) {
		if (n != 1 || ps->seen != (1u << NHEADER) - 1 || e->nrcpts == 0)
			return -1;
		ps->phase = P_RECORDS;
		return 0;
	}
	size_t k;
	for (k = 0; k < NHEADER; k++)
		if (strcmp(t[0], header_keys[k]) == 0)
			break;
	if (k == NHEADER || n != 2 || (ps->seen & (1u << k)) || e->nrcpts > 0)
		return -1;
	ps->seen |= 1u << k;
	char *v;
	switch (k) {
	case 0:
		if (!sg_queue_id_valid(t[1]))
			return -1;
		sg_strlcpy(e->id, t[1], sizeof(e->id));
		return 0;
	case 1:
		return parse_i64(t[1], &e->arrival);
	case 2:
		if (qunesc(t[1], &v) < 0)
			return -1;
		e->from = sg_strdup(v != NULL ? v : "");
		return 0;
	case 3:
		if (qunesc(t[1], &v) < 0)
			return -1;
		e->login = sg_strdup(v != NULL ? v : "");
		return 0;
	case 4: {
		int64_t sz;
		if (parse_i64(t[1], &sz) < 0)
			return -1;
		e->size = (uint64_t)sz;
		return 0;
	}
	case 5:
		if (strcmp(t[1], "7bit") == 0)
			e->body = SG_BODY_7BIT;
		else if (strcmp(t[1], "8bitmime") == 0)
			e->body = SG_BODY_8BITMIME;
		else if (strcmp(t[1], "-") == 0)
			e->body = SG_BODY_DEFAULT;
		else
			return -1;
		return 0;
	case 6:
	case 9:
		if (strcmp(t[1], "0") != 0 && strcmp(t[1], "1") != 0)
			return -1;
		if (k == 6)
			e->smtputf8 = t[1][0] == '1';
		else
			e->is_dsn = t[1][0] == '1';
		return 0;
	case 7:
		if (strcmp(t[1], "full") == 0)
			e->ret = SG_RET_FULL;
		else if (strcmp(t[1], "hdrs") == 0)
			e->ret = SG_RET_HDRS;
		else if (strcmp(t[1], "-") == 0)
			e->ret = SG_RET_DEFAULT;
		else
			return -1;
		return 0;
	case 8:
		if (qunesc(t[1], &v) < 0)
			return -1;
		e->envid = dup_or_null(v);
		return 0;
	}
	return -1;
}

static int parse_index(const struct sg_envelope *e, const char *s, size_t *idx)
{
	uint64_t v;
	if (e->nrcpts == 0 || sg_parse_u64(s, 0, e->nrcpts - 1, &v) < 0)
		return -1;
	*idx = (size_t)v;
	return 0;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = dup_or_null(v);
}

static int parse_record(struct sg_envelope *e, char **t, size_t n)
{
	if (strlen(t[0]) != 1)
		return -1;
	size_t idx;
	int64_t tm;
	switch (t[0][0]) {
	case 'A':
		if (n != 2 || parse_i64(t[1], &tm) < 0)
			return -1;
		e->attempts++;
		e->last_attempt = tm;
		return 0;
	case 'W':
		if (n != 2 || parse_i64(t[1], &tm) < 0)
			return -1;
		e->warned = true;
		return 0;
	case 'N':
		if (n != 2 || parse_index(e, t[1], &idx) < 0 || e->rcpts[idx].state == SG_QR_PENDING)
			return -1;
		e->rcpts[idx].done = true;
		return 0;
	case 'D':
	case 'F':
	case 'T': {
		bool d = t[0][0] == 'D';
		if (n != (d ? 5u : 6u) || parse_index(e, t[1], &idx) < 0 || parse_i64(t[2], &tm) < 0)
			return -1;
		struct sg_qrcpt *r = &e->rcpts[idx];
		/* a final state is final */
		if (r->state != SG_QR_PENDING)
			return -1;
		char *status = NULL, *mta, *diag;
		if (!d && (qunesc(t[3], &status) < 0 || !valid_status(status)))
			return -1;
		if (qunesc(t[d ? 3 : 4], &mta) < 0 || qunesc(t[d ? 4 : 5], &diag) < 0)
			return -1;
		if (d)
			sg_strlcpy(r->status, "2.0.0", sizeof(r->status));
		else
			sg_strlcpy(r->status, status, sizeof(r->status));
		/* failed: 5.x.x, or 4.x.x when a deferral expired (RFC 3464 2.3.4) */
		if (d ? r->status[0] != '2' : t[0][0] == 'F' && r->status[0] == '2')
			return -1;
		if (t[0][0] == 'T' && r->status[0] != '4')
			return -1;
		set_str(&r->remote_mta, mta);
		set_str(&r->diag, diag);
		r->time = tm;
		r->state = d ? SG_QR_DELIVERED : t[0][0] == 'F' ? SG_QR_FAILED : SG_QR_PENDING;
		return 0;
	}
	}
	return -1;
}

static int parse_lines(struct sg_envelope *e, struct parse_state *ps, const char *data,
		       size_t len, size_t *valid_r, const char **error_r)
{
	size_t off = 0;
	unsigned lineno = 0;
	char line[SG_QUEUE_LINE_MAX + 1];
	while (off < len) {
		const char *nl = memchr(data + off, '\n', len - off);
		if (nl == NULL)
			break; /* torn last line: ignored */
		size_t n = (size_t)(nl - (data + off));
		lineno++;
		if (n > SG_QUEUE_LINE_MAX || memchr(data + off, '\0', n) != NULL) {
			sg_set_err(error_r, sg_errf("line %u: too long or contains NUL", lineno));
			return -1;
		}
		memcpy(line, data + off, n);
		line[n] = '\0';
		off += n + 1;
		char *t[MAX_TOKS];
		size_t nt = 0;
		int r;
		if (n == 0 || split(line, t, MAX_TOKS, &nt) < 0)
			r = -1;
		else if (ps->phase == P_MAGIC)
			r = nt == 2 && strcmp(t[0], "smtpgate-queue") == 0 && strcmp(t[1], "1") == 0
				    ? (ps->phase = P_HEADER, 0)
				    : -1;
		else if (ps->phase == P_HEADER)
			r = parse_header_line(e, ps, t, nt);
		else
			r = parse_record(e, t, nt);
		if (r < 0) {
			sg_set_err(error_r, sg_errf("line %u: malformed record", lineno));
			return -1;
		}
	}
	*valid_r = off;
	return 0;
}

int sg_envelope_parse(const char *data, size_t len, struct sg_envelope *e, const char **error_r)
{
	struct parse_state ps = {.phase = P_MAGIC};
	size_t valid = 0;
	if (len > SG_QUEUE_ENV_MAX) {
		sg_set_err(error_r, "envelope file too large");
		return -1;
	}
	if (parse_lines(e, &ps, data, len, &valid, error_r) < 0) {
		sg_envelope_free(e);
		return -1;
	}
	if (ps.phase != P_RECORDS) {
		sg_set_err(error_r, "incomplete envelope header");
		sg_envelope_free(e);
		return -1;
	}
	e->valid_len = valid;
	return 0;
}

int sg_envelope_apply(struct sg_envelope *e, const char *records, size_t len,
		      const char **error_r)
{
	struct parse_state ps = {.phase = P_RECORDS};
	size_t valid = 0;
	if (parse_lines(e, &ps, records, len, &valid, error_r) < 0)
		return -1;
	e->valid_len += valid;
	return 0;
}

bool sg_envelope_finished(const struct sg_envelope *e)
{
	for (size_t i = 0; i < e->nrcpts; i++)
		if (!e->rcpts[i].done)
			return false;
	return true;
}

size_t sg_envelope_pending(const struct sg_envelope *e)
{
	size_t n = 0;
	for (size_t i = 0; i < e->nrcpts; i++)
		n += e->rcpts[i].state == SG_QR_PENDING;
	return n;
}

/* ---- the directory ---- */

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

static int ensure_dir(const char *path)
{
	if (mkdir(path, 0700) == 0)
		return 0;
	struct stat st;
	if (errno != EEXIST || lstat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int sg_queue_open(const char *data_dir, struct sg_queue **q_r, const char **error_r)
{
	*q_r = NULL;
	struct sg_queue *q = sg_calloc(1, sizeof(*q));
	q->dir = sg_asprintf("%s/queue", data_dir);
	q->tmp = sg_asprintf("%s/tmp", q->dir);
	q->msg = sg_asprintf("%s/msg", q->dir);
	q->env = sg_asprintf("%s/env", q->dir);
	q->ctl = sg_asprintf("%s/ctl", q->dir);
	q->corrupt = sg_asprintf("%s/corrupt", q->dir);
	const char *dirs[] = {q->dir, q->tmp, q->msg, q->env, q->ctl, q->corrupt};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (ensure_dir(dirs[i]) != 0) {
			sg_set_err(error_r, sg_errf("cannot create %s: %s", dirs[i], strerror(errno)));
			sg_queue_close(&q);
			return -1;
		}
	if (fsync_dir(data_dir) != 0 || fsync_dir(q->dir) != 0) {
		sg_set_err(error_r, sg_errf("cannot fsync %s: %s", q->dir, strerror(errno)));
		sg_queue_close(&q);
		return -1;
	}
	*q_r = q;
	return 0;
}

void sg_queue_close(struct sg_queue **qp)
{
	struct sg_queue *q = *qp;
	if (q == NULL)
		return;
	free(q->dir);
	free(q->tmp);
	free(q->msg);
	free(q->env);
	free(q->ctl);
	free(q->corrupt);
	free(q);
	*qp = NULL;
}

const char *sg_queue_dir(const struct sg_queue *q)
{
	return q->dir;
}

void sg_queue_new_id(char id[SG_QUEUE_ID_MAX])
{
	uint8_t r[8];
	char hex[17];
	sg_random(r, sizeof(r));
	sg_hex(r, sizeof(r), hex);
	snprintf(id, SG_QUEUE_ID_MAX, "%" PRId64 ".%s", (int64_t)time(NULL), hex);
}

bool sg_queue_id_valid(const char *id)
{
	size_t d = 0;
	while (id[d] >= '0' && id[d] <= '9')
		d++;
	if (d == 0 || d > 19 || id[d] != '.')
		return false;
	const char *h = id + d + 1;
	for (size_t i = 0; i < 16; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return h[16] == '\0';
}

static int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static bool has_8bit(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		if (b[i] >= 0x80)
			return true;
	return false;
}

/* Copy len octets of fd (from offset 0) to out; *eight set when one is above 127. */
static int copy_fd(int out, int fd, size_t len, bool *eight)
{
	uint8_t chunk[65536];
	size_t off = 0;
	while (off < len) {
		size_t want = len - off < sizeof(chunk) ? len - off : sizeof(chunk);
		ssize_t r = pread(fd, chunk, want, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO; /* the spool is shorter than it should be */
			return -1;
		}
		if (!*eight)
			*eight = has_8bit(chunk, (size_t)r);
		if (write_all(out, chunk, (size_t)r) != 0)
			return -1;
		off += (size_t)r;
	}
	return 0;
}

/* Write tmp/<name>, fsync, rename to dir/<id>. The content: a, then b, then
 * blen octets of fd when fd >= 0. */
static int place_file_fd(struct sg_queue *q, const char *dir, const char *id, const char *suffix,
			 const void *a, size_t alen, const void *b, size_t blen, int fd,
			 bool *eight, const char **error_r);

static int place_file(struct sg_queue *q, const char *dir, const char *id, const char *suffix,
		      const void *a, size_t alen, const void *b, size_t blen, const char **error_r)
{
	bool eight = true;
	return place_file_fd(q, dir, id, suffix, a, alen, b, blen, -1, &eight, error_r);
}

static int place_file_fd(struct sg_queue *q, const char *dir, const char *id, const char *suffix,
			 const void *a, size_t alen, const void *b, size_t blen, int bfd,
			 bool *eight, const char **error_r)
{
	char *tmp = sg_asprintf("%s/%s.%s", q->tmp, id, suffix);
	char *dst = sg_asprintf("%s/%s", dir, id);
	int rc = -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		sg_set_err(error_r, sg_errf("cannot create %s: %s", tmp, strerror(errno)));
		goto out;
	}
	if (write_all(fd, a, alen) != 0 ||
	    (bfd < 0 && blen > 0 && write_all(fd, b, blen) != 0) ||
	    (bfd >= 0 && copy_fd(fd, bfd, blen, eight) != 0) || fsync(fd) != 0) {
		sg_set_err(error_r, sg_errf("cannot write %s: %s", tmp, strerror(errno)));
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, dst) != 0) {
		sg_set_err(error_r, sg_errf("cannot rename %s: %s", tmp, strerror(errno)));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	free(dst);
	return rc;
}

static int commit(struct sg_queue *q, struct sg_envelope *e, const struct sg_buf *prefix,
		  const struct sg_buf *body, int body_fd, size_t body_len, const char **error_r)
{
	bool eight = e->body != SG_BODY_DEFAULT || has_8bit(prefix->data, prefix->len) ||
		     (body != NULL && has_8bit(body->data, body->len));
	size_t blen = body != NULL ? body->len : body_len;
	e->size = prefix->len + blen;
	if (place_file_fd(q, q->msg, e->id, "msg", prefix->data, prefix->len,
			  body != NULL ? body->data : NULL, blen, body != NULL ? -1 : body_fd, &eight,
			  error_r) < 0)
		return -1;
	/* RFC 6152: 8-bit octets need BODY=8BITMIME on the way out */
	if (eight && e->body == SG_BODY_DEFAULT)
		e->body = SG_BODY_8BITMIME;
	struct sg_buf eb;
	sg_buf_init(&eb, SG_QUEUE_ENV_MAX);
	sg_envelope_format(e, &eb);
	int rc = -1;
	if (eb.len >= SG_QUEUE_ENV_MAX) {
		sg_set_err(error_r, "envelope too large");
	} else if (fsync_dir(q->msg) != 0) {
		sg_set_err(error_r, sg_errf("cannot fsync %s: %s", q->msg, strerror(errno)));
	} else if (place_file(q, q->env, e->id, "env", eb.data, eb.len, NULL, 0, error_r) == 0) {
		if (fsync_dir(q->env) != 0) {
			sg_set_err(error_r, sg_errf("cannot fsync %s: %s", q->env, strerror(errno)));
			char *p = sg_asprintf("%s/%s", q->env, e->id);
			unlink(p);
			free(p);
		} else {
			rc = 0;
		}
	}
	if (rc < 0) {
		char *p = sg_asprintf("%s/%s", q->msg, e->id);
		unlink(p);
		free(p);
	}
	e->valid_len = eb.len;
	sg_buf_free(&eb);
	return rc;
}

int sg_queue_commit(struct sg_queue *q, struct sg_envelope *e, const struct sg_buf *prefix,
		    const struct sg_buf *body, const char **error_r)
{
	static const struct sg_buf empty;
	return commit(q, e, prefix, body != NULL ? body : &empty, -1, 0, error_r);
}

int sg_queue_commit_fd(struct sg_queue *q, struct sg_envelope *e, const struct sg_buf *prefix,
		       int body_fd, size_t body_len, const char **error_r)
{
	return commit(q, e, prefix, NULL, body_fd, body_len, error_r);
}

static int read_file(const char *path, struct sg_buf *out, int *fd_keep, const char **error_r)
{
	int fd = open(path, (fd_keep != NULL ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		sg_set_err(error_r, sg_errf("cannot open %s: %s", path, strerror(errno)));
		return -1;
	}
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sg_set_err(error_r, sg_errf("cannot read %s: %s", path, strerror(errno)));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		if (sg_buf_append(out, chunk, (size_t)n) < 0) {
			sg_set_err(error_r, sg_errf("%s is too large", path));
			close(fd);
			return -1;
		}
	}
	if (fd_keep != NULL)
		*fd_keep = fd;
	else
		close(fd);
	return 1;
}

int sg_queue_load(struct sg_queue *q, const char *id, struct sg_envelope *e, bool repair,
		  const char **error_r)
{
	if (!sg_queue_id_valid(id))
		return 0;
	char *path = sg_asprintf("%s/%s", q->env, id);
	struct sg_buf b;
	sg_buf_init(&b, SG_QUEUE_ENV_MAX + 1);
	int fd = -1;
	int r = read_file(path, &b, repair ? &fd : NULL, error_r);
	if (r == 1) {
		sg_envelope_init(e);
		if (sg_envelope_parse((const char *)b.data, b.len, e, error_r) < 0) {
			r = -1;
		} else if (strcmp(e->id, id) != 0) {
			sg_set_err(error_r, "envelope id does not match its file name");
			sg_envelope_free(e);
			r = -1;
		} else if (repair && e->valid_len < b.len) {
			/* a torn append: cut it off before anything else is appended */
			if (ftruncate(fd, (off_t)e->valid_len) != 0 || fsync(fd) != 0) {
				sg_set_err(error_r, sg_errf("cannot repair %s: %s", path, strerror(errno)));
				sg_envelope_free(e);
				r = -1;
			}
		}
	}
	if (fd >= 0)
		close(fd);
	sg_buf_free(&b);
	free(path);
	return r;
}

int sg_queue_append(struct sg_queue *q, const char *id, const struct sg_buf *records,
		    const char **error_r)
{
	char *path = sg_asprintf("%s/%s", q->env, id);
	int rc = -1;
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		sg_set_err(error_r, sg_errf("cannot open %s: %s", path, strerror(errno)));
	} else {
		if (write_all(fd, records->data, records->len) != 0 || fdatasync(fd) != 0)
			sg_set_err(error_r, sg_errf("cannot append to %s: %s", path, strerror(errno)));
		else
			rc = 0;
		close(fd);
	}
	free(path);
	return rc;
}

int sg_queue_read_msg(struct sg_queue *q, const char *id, struct sg_buf *out,
		      const char **error_r)
{
	if (!sg_queue_id_valid(id)) {
		sg_set_err(error_r, "bad queue id");
		return -1;
	}
	char *path = sg_asprintf("%s/%s", q->msg, id);
	int r = read_file(path, out, NULL, error_r);
	if (r == 0)
		sg_set_err(error_r, sg_errf("%s is missing", path));
	free(path);
	return r == 1 ? 0 : -1;
}

int sg_queue_remove(struct sg_queue *q, const char *id, const char **error_r)
{
	if (!sg_queue_id_valid(id)) {
		sg_set_err(error_r, "bad queue id");
		return -1;
	}
	char *env = sg_asprintf("%s/%s", q->env, id);
	char *msg = sg_asprintf("%s/%s", q->msg, id);
	int rc = 0;
	if (unlink(env) != 0 && errno != ENOENT) {
		sg_set_err(error_r, sg_errf("cannot remove %s: %s", env, strerror(errno)));
		rc = -1;
	} else if (fsync_dir(q->env) != 0) {
		sg_set_err(error_r, sg_errf("cannot fsync %s: %s", q->env, strerror(errno)));
		rc = -1;
	} else {
		(void)unlink(msg); /* debris otherwise: sg_queue_scan() removes it */
	}
	free(env);
	free(msg);
	return rc;
}

void sg_queue_quarantine(struct sg_queue *q, const char *id)
{
	if (!sg_queue_id_valid(id))
		return;
	char *src = sg_asprintf("%s/%s", q->env, id);
	char *dst = sg_asprintf("%s/%s", q->corrupt, id);
	char *msrc = sg_asprintf("%s/%s", q->msg, id);
	char *mdst = sg_asprintf("%s/%s.msg", q->corrupt, id);
	(void)rename(msrc, mdst);
	if (rename(src, dst) == 0)
		(void)fsync_dir(q->env);
	(void)fsync_dir(q->corrupt);
	free(src);
	free(dst);
	free(msrc);
	free(mdst);
}

static bool env_exists(struct sg_queue *q, const char *id)
{
	char *p = sg_asprintf("%s/%s", q->env, id);
	struct stat st;
	bool r = lstat(p, &st) == 0;
	free(p);
	return r;
}

static void clean_dir(struct sg_queue *q, const char *dir, bool orphans_only)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (orphans_only && sg_queue_id_valid(de->d_name) && env_exists(q, de->d_name))
			continue;
		(void)unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
}

int sg_queue_scan(struct sg_queue *q, int (*cb)(const char *id, void *arg), void *arg,
		  const char **error_r)
{
	clean_dir(q, q->tmp, false);
	DIR *d = opendir(q->env);
	if (d == NULL) {
		sg_set_err(error_r, sg_errf("cannot read %s: %s", q->env, strerror(errno)));
		return -1;
	}
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!sg_queue_id_valid(de->d_name))
			continue;
		if (cb(de->d_name, arg) != 0)
			break;
	}
	closedir(d);
	/* after the envelopes are known: message files nobody names */
	clean_dir(q, q->msg, true);
	return rc;
}
