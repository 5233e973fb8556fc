/*
 * mail_pg.c: the capture store (mail.h) in PostgreSQL, so a message captured
 * by any node is listed, read and deleted through every node's API.
 *
 * Schema (pg.c, migration 4): sg_mail_bodies(id, received_ms, size, body
 * bytea) holds each message once; sg_mail_inbox(login, id) names the inboxes
 * it was delivered to. A commit is one statement (the body and every inbox
 * row, atomically, in autocommit), so the 250 is sent only after PostgreSQL
 * committed it (durability is the database's: synchronous_commit). A body
 * larger than max_size is refused; reads give at most that much.
 *
 * Why bytea in the same database rather than an object store: one system to
 * run, back up and replicate; the message and its inbox rows commit in one
 * transaction (no orphan object, no row without its object); sandbox
 * messages are small and capped by max_message_size (25 MiB by default, far
 * under bytea's 1 GiB), and the API reads one message at a time. The cost is
 * memory: a commit or a read holds one whole message on a worker or HTTP
 * thread.
 *
 * open_message() returns a memfd holding the message, so the HTTP layer
 * reads it as it reads a Maildir file.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"
#include "store/mail.h"
#include "store/mail_int.h"
#include "store/pg.h"

#define MAX_INBOXES 64
#define BYTEA_MAX ((size_t)1000 * 1000 * 1000)

struct mail_pg {
	struct sg_mail_store base;    /* first: the store seam (mail_int.h) */
	struct sg_pg *pg;
	unsigned long long max_size;
};

#define MP(b) ((struct mail_pg *)(b))

static const struct sg_mail_ops pg_ops;

int sg_mail_open_pg(struct sg_pg *pg, unsigned long long max_size, struct sg_mail_store **store_r,
		    const char **error_r)
{
	(void)error_r;
	struct mail_pg *s = sg_calloc(1, sizeof(*s));
	s->base.ops = &pg_ops;
	s->pg = pg;
	s->max_size = max_size;
	*store_r = &s->base;
	return 0;
}

static void pg_close(struct sg_mail_store *base)
{
	free(MP(base));
}

static bool login_ok(const char *login)
{
	return login != NULL && sg_cred_validate_login(login, NULL) == 0;
}

static void make_id(char id[SG_MAIL_ID_MAX])
{
	uint8_t r[8];
	char hex[17];
	sg_random(r, sizeof(r));
	sg_hex(r, sizeof(r), hex);
	snprintf(id, SG_MAIL_ID_MAX, "%" PRId64 ".%s", sg_time(), hex);
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* prefix + body (from a buffer or the spool file) in one allocation. */
static uint8_t *assemble(const struct sg_buf *prefix, const struct sg_buf *body, int fd, size_t fd_len,
			 size_t *len_r, const char **error_r)
{
	size_t blen = body != NULL ? body->len : fd_len;
	size_t total = prefix->len + blen;
	uint8_t *m = sg_malloc(total > 0 ? total : 1);
	memcpy(m, prefix->data, prefix->len);
	if (body != NULL) {
		if (blen > 0)
			memcpy(m + prefix->len, body->data, blen);
	} else {
		size_t off = 0;
		while (off < blen) {
			ssize_t r = pread(fd, m + prefix->len + off, blen - off, (off_t)off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				sg_set_err(error_r, sg_errf("cannot read the spooled message: %s",
							    r < 0 ? strerror(errno) : "short file"));
				free(m);
				return NULL;
			}
			off += (size_t)r;
		}
	}
	*len_r = total;
	return m;
}

static int commit(struct mail_pg *s, const char *const *logins, size_t n, const struct sg_buf *prefix,
		  const struct sg_buf *body, int fd, size_t fd_len, char id_r[SG_MAIL_ID_MAX],
		  const char **error_r)
{
	if (n == 0 || n > MAX_INBOXES) {
		sg_set_err(error_r, n == 0 ? "no inbox to deliver to" : "too many inboxes");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (!login_ok(logins[i])) {
			sg_set_err(error_r, sg_errf("invalid inbox name '%.255s'", logins[i] != NULL ? logins[i] : ""));
			return -1;
		}
	size_t len = 0;
	uint8_t *msg = assemble(prefix, body, fd, fd_len, &len, error_r);
	if (msg == NULL)
		return -1;
	/* PostgreSQL caps a field at 1 GiB (and libpq lengths are int) */
	if (len > s->max_size || len > BYTEA_MAX) {
		free(msg);
		sg_set_err(error_r, "message larger than the store's limit");
		return -1;
	}
	char id[SG_MAIL_ID_MAX], ms[24], size[24];
	make_id(id);
	snprintf(ms, sizeof(ms), "%lld", (long long)wall_ms());
	snprintf(size, sizeof(size), "%zu", len);
	const char *params[4 + MAX_INBOXES];
	int lengths[4 + MAX_INBOXES] = {0};
	int formats[4 + MAX_INBOXES] = {0};
	params[0] = id;
	params[1] = ms;
	params[2] = size;
	params[3] = (const char *)msg;
	lengths[3] = (int)len;
	formats[3] = 1;
	struct sg_buf sql;
	sg_buf_init(&sql, 16 * 1024);
	sg_buf_append_str(&sql, "WITH b AS (INSERT INTO sg_mail_bodies(id, received_ms, size, body)"
				" VALUES ($1, $2::bigint, $3::bigint, $4) RETURNING id)"
				" INSERT INTO sg_mail_inbox(login, id) VALUES ");
	int np = 4;
	for (size_t i = 0; i < n; i++) {
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			dup |= strcmp(logins[i], logins[j]) == 0;
		if (dup)
			continue;
		params[np] = logins[i];
		np++;
		sg_buf_printf(&sql, "%s($%d, (SELECT id FROM b))", np > 5 ? "," : "", np);
	}
	sg_buf_append(&sql, "", 1);
	int ret = -1;
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL) {
		sg_set_err(error_r, "cannot connect to PostgreSQL");
	} else {
		PGresult *r = sg_pg_exec_bin(s->pg, c, (const char *)sql.data, np, params, lengths, formats);
		sg_pg_put(s->pg, c);
		if (r == NULL) {
			sg_set_err(error_r, "cannot store the message in PostgreSQL");
		} else {
			ret = 0;
			sg_strlcpy(id_r, id, SG_MAIL_ID_MAX);
		}
		PQclear(r);
	}
	sg_buf_free(&sql);
	free(msg);
	return ret;
}

static int pg_commit(struct sg_mail_store *base, const char *const *logins, size_t n,
		     const struct sg_buf *prefix, const struct sg_buf *body, char id_r[SG_MAIL_ID_MAX],
		     const char **error_r)
{
	return commit(MP(base), logins, n, prefix, body, -1, 0, id_r, error_r);
}

static int pg_commit_fd(struct sg_mail_store *base, const char *const *logins,
			const struct sg_buf *const *prefixes, size_t n,
			const struct sg_buf *prefix, int body_fd, size_t body_len, char id_r[SG_MAIL_ID_MAX],
			const char **error_r)
{
	if (prefixes == NULL || n <= 1)
		return commit(MP(base), logins, n, prefixes != NULL && n == 1 && prefixes[0] != NULL
							 ? prefixes[0] : prefix,
			      NULL, body_fd, body_len, id_r, error_r);
	/* a header block per inbox (each mx owner's copy names only its own
	 * recipients): one stored copy each; the reply names the first id */
	for (size_t i = 0; i < n; i++) {
		char id[SG_MAIL_ID_MAX];
		const struct sg_buf *own = prefixes[i] != NULL ? prefixes[i] : prefix;
		if (commit(MP(base), &logins[i], 1, own, NULL, body_fd, body_len, id, error_r) < 0)
			return -1;
		if (i == 0)
			sg_strlcpy(id_r, id, SG_MAIL_ID_MAX);
	}
	return 0;
}

static char *pg_path(struct sg_mail_store *base, const char *login, const char *id)
{
	return NULL; /* no files */
}

static int pg_list(struct sg_mail_store *base, const char *login, struct sg_mail_entry **entries_r,
		   size_t *n_r, const char **error_r)
{
	struct mail_pg *s = MP(base);
	*entries_r = NULL;
	*n_r = 0;
	if (!login_ok(login))
		return 0;
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL) {
		sg_set_err(error_r, "cannot connect to PostgreSQL");
		return -1;
	}
	const char *params[1] = {login};
	PGresult *r = sg_pg_exec(s->pg, c,
				 "SELECT b.id, b.received_ms, b.size FROM sg_mail_inbox i JOIN sg_mail_bodies b"
				 " ON b.id = i.id WHERE i.login = $1 ORDER BY b.received_ms DESC, b.id DESC",
				 1, params);
	sg_pg_put(s->pg, c);
	if (r == NULL) {
		sg_set_err(error_r, "cannot list the inbox in PostgreSQL");
		return -1;
	}
	size_t n = (size_t)PQntuples(r);
	struct sg_mail_entry *v = n > 0 ? sg_calloc(n, sizeof(*v)) : NULL;
	for (size_t i = 0; i < n; i++) {
		uint64_t ms = 0, size = 0;
		sg_strlcpy(v[i].id, PQgetvalue(r, (int)i, 0), sizeof(v[i].id));
		sg_parse_u64(PQgetvalue(r, (int)i, 1), 0, INT64_MAX, &ms);
		sg_parse_u64(PQgetvalue(r, (int)i, 2), 0, UINT64_MAX, &size);
		v[i].mtime_ns = (int64_t)ms * 1000000;
		v[i].size = size;
	}
	PQclear(r);
	*entries_r = v;
	*n_r = n;
	return 0;
}

/* The body: 1 (*r_r holds it in column 0, binary), 0 absent, -1 error. */
static int fetch(struct mail_pg *s, const char *login, const char *id, PGresult **r_r)
{
	*r_r = NULL;
	if (!login_ok(login) || !sg_mail_id_valid(id))
		return 0;
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	const char *params[2] = {login, id};
	/* binary result: the body as stored */
	PGresult *r = PQexecParams(c,
			 "SELECT b.body FROM sg_mail_inbox i JOIN sg_mail_bodies b ON b.id = i.id"
			 " WHERE i.login = $1 AND i.id = $2",
			 2, NULL, params, NULL, NULL, 1);
	int ret;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		ret = -1;
	} else if (PQntuples(r) == 0) {
		PQclear(r);
		ret = 0;
	} else {
		*r_r = r;
		ret = 1;
	}
	sg_pg_put(s->pg, c);
	return ret;
}

static int pg_open_message(struct sg_mail_store *base, const char *login, const char *id)
{
	struct mail_pg *s = MP(base);
	PGresult *r = NULL;
	int f = fetch(s, login, id, &r);
	if (f <= 0) {
		errno = f == 0 ? ENOENT : EIO;
		return -1;
	}
	const char *data = PQgetvalue(r, 0, 0);
	size_t len = (size_t)PQgetlength(r, 0, 0);
	int fd = memfd_create("smtpgate-message", MFD_CLOEXEC);
	size_t off = 0;
	while (fd >= 0 && off < len) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			fd = -1;
			break;
		}
		off += (size_t)w;
	}
	PQclear(r);
	if (fd < 0) {
		errno = EIO;
		return -1;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static int pg_read(struct sg_mail_store *base, const char *login, const char *id, struct sg_buf *out,
		   const char **error_r)
{
	struct mail_pg *s = MP(base);
	PGresult *r = NULL;
	int f = fetch(s, login, id, &r);
	if (f < 0) {
		sg_set_err(error_r, "cannot read the message from PostgreSQL");
		return -1;
	}
	if (f == 0)
		return 0;
	int ret = sg_buf_append(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)) == 0 ? 1 : -1;
	if (ret < 0)
		sg_set_err(error_r, "message larger than the buffer");
	PQclear(r);
	return ret;
}

/* Delete inbox rows (one message, or all of an inbox when id is NULL) and
 * the bodies no other inbox names: the count deleted, or -1. */
static long long remove_rows(struct mail_pg *s, const char *login, const char *id)
{
	PGconn *c = sg_pg_get(s->pg);
	if (c == NULL)
		return -1;
	const char *params[2] = {login, id};
	PGresult *r = sg_pg_exec(s->pg, c,
				 id != NULL
					 ? "WITH d AS (DELETE FROM sg_mail_inbox WHERE login = $1 AND id = $2 RETURNING id),"
					   " x AS (DELETE FROM sg_mail_bodies b WHERE b.id IN (SELECT id FROM d) AND NOT EXISTS"
					   " (SELECT 1 FROM sg_mail_inbox o WHERE o.id = b.id AND o.login <> $1))"
					   " SELECT count(*) FROM d"
					 : "WITH d AS (DELETE FROM sg_mail_inbox WHERE login = $1 RETURNING id),"
					   " x AS (DELETE FROM sg_mail_bodies b WHERE b.id IN (SELECT id FROM d) AND NOT EXISTS"
					   " (SELECT 1 FROM sg_mail_inbox o WHERE o.id = b.id AND o.login <> $1))"
					   " SELECT count(*) FROM d",
				 id != NULL ? 2 : 1, params);
	sg_pg_put(s->pg, c);
	if (r == NULL)
		return -1;
	uint64_t n = 0;
	sg_parse_u64(PQgetvalue(r, 0, 0), 0, INT64_MAX, &n);
	PQclear(r);
	return (long long)n;
}

static int pg_delete(struct sg_mail_store *base, const char *login, const char *id, const char **error_r)
{
	if (!login_ok(login) || !sg_mail_id_valid(id))
		return 0;
	long long n = remove_rows(MP(base), login, id);
	if (n < 0) {
		sg_set_err(error_r, "cannot delete the message in PostgreSQL");
		return -1;
	}
	return n > 0 ? 1 : 0;
}

static int pg_delete_all(struct sg_mail_store *base, const char *login, size_t *n_r, const char **error_r)
{
	if (n_r != NULL)
		*n_r = 0;
	if (!login_ok(login))
		return 0;
	long long n = remove_rows(MP(base), login, NULL);
	if (n < 0) {
		sg_set_err(error_r, "cannot delete the inbox in PostgreSQL");
		return -1;
	}
	if (n_r != NULL)
		*n_r = (size_t)n;
	return 0;
}

static const struct sg_mail_ops pg_ops = {
	.name = "postgresql",
	.close = pg_close,
	.commit = pg_commit,
	.commit_fd = pg_commit_fd,
	.path = pg_path,
	.list = pg_list,
	.open_message = pg_open_message,
	.read = pg_read,
	.del = pg_delete,
	.delete_all = pg_delete_all,
};
