/*
 * search.c: the full-text index (search.h) in SQLite FTS5.
 *
 *   msgs(rowid, inbox, id, received_ms, has_att, seen, tags)   plain columns
 *   fts(subject, sender, rcpts, body, attachments)             FTS5, rowid = msgs.rowid
 *
 * A query is one SELECT over msgs: the positive text terms are one FTS5
 * MATCH (rowid IN (...)), each negated text term a rowid NOT IN (...), the
 * operators plain comparisons; newest first with (received_ms, id, inbox)
 * as the cursor.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "core/util.h"
#include "store/search.h"

#define BODY_INDEX_MAX (256 * 1024) /* text indexed per message */
#define TAGS_MAX 32

struct sg_search {
	sqlite3 *db;
	pthread_mutex_t lock;
};

static const char schema[] =
	"PRAGMA journal_mode=WAL;"
	"PRAGMA synchronous=NORMAL;"
	"CREATE TABLE IF NOT EXISTS msgs(rowid INTEGER PRIMARY KEY, inbox TEXT NOT NULL,"
	" id TEXT NOT NULL, received_ms INTEGER NOT NULL, has_att INTEGER NOT NULL DEFAULT 0,"
	" seen INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '', UNIQUE(inbox, id));"
	"DROP INDEX IF EXISTS msgs_order;"
	"CREATE INDEX IF NOT EXISTS msgs_inbox_order ON msgs(inbox, received_ms, id, seen, has_att);"
	"CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(subject, sender, rcpts, body, attachments,"
	" tokenize = 'unicode61 remove_diacritics 2');";

int sg_search_open(const char *data_dir, struct sg_search **s_r, const char **error_r)
{
	*s_r = NULL;
	char *path = sg_asprintf("%s/search.db", data_dir);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
					 SQLITE_OPEN_NOFOLLOW,
				 NULL);
	free(path);
	char *msg = NULL;
	if (rc != SQLITE_OK || sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
		sg_set_err(error_r, sg_errf("search index: %s", msg != NULL ? msg : sqlite3_errmsg(db)));
		sqlite3_free(msg);
		sqlite3_close(db);
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	struct sg_search *s = sg_calloc(1, sizeof(*s));
	s->db = db;
	pthread_mutex_init(&s->lock, NULL);
	*s_r = s;
	return 0;
}

void sg_search_close(struct sg_search **sp)
{
	struct sg_search *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

bool sg_search_tag_valid(const char *tag, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = tag[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Merge space-separated tag lists (a then b), dropping duplicates and
 * malformed tags; at most TAGS_MAX. */
static void merge_tags(const char *a, const char *b, struct sg_buf *out)
{
	const char *lists[2] = {a, b};
	size_t n = 0;
	for (int k = 0; k < 2; k++) {
		const char *p = lists[k] != NULL ? lists[k] : "";
		while (*p != '\0' && n < TAGS_MAX) {
			while (*p == ' ')
				p++;
			size_t l = strcspn(p, " ");
			if (l > 0 && sg_search_tag_valid(p, l)) {
				bool dup = false;
				const char *q = sg_buf_str(out);
				while (*q != '\0' && !dup) {
					size_t ql = strcspn(q, " ");
					dup = ql == l && memcmp(q, p, l) == 0;
					q += ql;
					while (*q == ' ')
						q++;
				}
				if (!dup) {
					if (out->len > 0)
						sg_buf_append(out, " ", 1);
					sg_buf_append(out, p, l);
					n++;
				}
			}
			p += l;
		}
	}
}

static int64_t find_row(struct sg_search *s, const char *inbox, const char *id)
{
	sqlite3_stmt *st = NULL;
	int64_t row = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT rowid FROM msgs WHERE inbox = ? AND id = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, inbox, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		row = sqlite3_column_int64(st, 0);
	else if (rc != SQLITE_DONE)
		row = -1;
	sqlite3_finalize(st);
	return row;
}

static int exec1(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int sg_search_put(struct sg_search *s, const struct sg_search_doc *d, const char **error_r)
{
	pthread_mutex_lock(&s->lock);
	int ret = -1;
	sqlite3_stmt *st = NULL;
	struct sg_buf tags;
	sg_buf_init(&tags, 4096);
	bool in_txn = sqlite3_get_autocommit(s->db) != 0;
	if (in_txn && exec1(s->db, "BEGIN IMMEDIATE") < 0)
		goto out;
	int64_t row = find_row(s, d->inbox, d->id);
	if (row < 0)
		goto out;
	if (row > 0) {
		sqlite3_stmt *t = NULL;
		if (sqlite3_prepare_v2(s->db, "SELECT tags FROM msgs WHERE rowid = ?", -1, &t, NULL) ==
		    SQLITE_OK) {
			sqlite3_bind_int64(t, 1, row);
			if (sqlite3_step(t) == SQLITE_ROW)
				merge_tags((const char *)sqlite3_column_text(t, 0), d->tags, &tags);
		}
		sqlite3_finalize(t);
		if (sqlite3_prepare_v2(s->db,
				       "UPDATE msgs SET received_ms = ?, has_att = ?, tags = ? WHERE rowid = ?",
				       -1, &st, NULL) != SQLITE_OK)
			goto out;
		sqlite3_bind_int64(st, 1, d->received_ms);
		sqlite3_bind_int(st, 2, d->has_attachment);
		sqlite3_bind_text(st, 3, sg_buf_str(&tags), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, row);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto out;
		sqlite3_finalize(st);
		st = NULL;
		if (sqlite3_prepare_v2(s->db, "DELETE FROM fts WHERE rowid = ?", -1, &st, NULL) != SQLITE_OK)
			goto out;
		sqlite3_bind_int64(st, 1, row);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto out;
	} else {
		merge_tags(d->tags, NULL, &tags);
		if (sqlite3_prepare_v2(s->db,
				       "INSERT INTO msgs(inbox, id, received_ms, has_att, tags) VALUES(?,?,?,?,?)",
				       -1, &st, NULL) != SQLITE_OK)
			goto out;
		sqlite3_bind_text(st, 1, d->inbox, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, d->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, d->received_ms);
		sqlite3_bind_int(st, 4, d->has_attachment);
		sqlite3_bind_text(st, 5, sg_buf_str(&tags), -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			goto out;
		row = sqlite3_last_insert_rowid(s->db);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO fts(rowid, subject, sender, rcpts, body, attachments)"
			       " VALUES(?,?,?,?,?,?)",
			       -1, &st, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(st, 1, row);
	sqlite3_bind_text(st, 2, d->subject != NULL ? d->subject : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, d->sender != NULL ? d->sender : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, d->rcpts != NULL ? d->rcpts : "", -1, SQLITE_STATIC);
	const char *body = d->body != NULL ? d->body : "";
	size_t bl = strlen(body);
	if (bl > BODY_INDEX_MAX) {
		bl = BODY_INDEX_MAX;
		while (bl > 0 && ((unsigned char)body[bl] & 0xc0) == 0x80)
			bl--;
	}
	sqlite3_bind_text(st, 5, body, (int)bl, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, d->attachments != NULL ? d->attachments : "", -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto out;
	ret = 0;
out:
	if (ret < 0)
		sg_set_err(error_r, sg_errf("search index: %s", sqlite3_errmsg(s->db)));
	sqlite3_finalize(st);
	if (in_txn)
		exec1(s->db, ret == 0 ? "COMMIT" : "ROLLBACK");
	pthread_mutex_unlock(&s->lock);
	sg_buf_free(&tags);
	return ret;
}

int sg_search_delete(struct sg_search *s, const char *inbox, const char *id)
{
	pthread_mutex_lock(&s->lock);
	int ret = -1;
	sqlite3_stmt *a = NULL, *b = NULL;
	const char *where = id != NULL ? "inbox = ? AND id = ?" : "inbox = ?";
	char *q1 = sg_asprintf("DELETE FROM fts WHERE rowid IN (SELECT rowid FROM msgs WHERE %s)", where);
	char *q2 = sg_asprintf("DELETE FROM msgs WHERE %s", where);
	if (exec1(s->db, "BEGIN IMMEDIATE") == 0 &&
	    sqlite3_prepare_v2(s->db, q1, -1, &a, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(s->db, q2, -1, &b, NULL) == SQLITE_OK) {
		sqlite3_bind_text(a, 1, inbox, -1, SQLITE_STATIC);
		sqlite3_bind_text(b, 1, inbox, -1, SQLITE_STATIC);
		if (id != NULL) {
			sqlite3_bind_text(a, 2, id, -1, SQLITE_STATIC);
			sqlite3_bind_text(b, 2, id, -1, SQLITE_STATIC);
		}
		if (sqlite3_step(a) == SQLITE_DONE && sqlite3_step(b) == SQLITE_DONE)
			ret = 0;
	}
	sqlite3_finalize(a);
	sqlite3_finalize(b);
	if (sqlite3_get_autocommit(s->db) == 0)
		exec1(s->db, ret == 0 ? "COMMIT" : "ROLLBACK");
	pthread_mutex_unlock(&s->lock);
	free(q1);
	free(q2);
	return ret;
}

int sg_search_batch(struct sg_search *s, bool begin)
{
	pthread_mutex_lock(&s->lock);
	int r = exec1(s->db, begin ? "BEGIN IMMEDIATE" : "COMMIT");
	pthread_mutex_unlock(&s->lock);
	return r;
}

int sg_search_has(struct sg_search *s, const char *inbox, const char *id)
{
	pthread_mutex_lock(&s->lock);
	int64_t row = find_row(s, inbox, id);
	pthread_mutex_unlock(&s->lock);
	return row < 0 ? -1 : row > 0;
}

int sg_search_each(struct sg_search *s, const char *inbox,
		   void (*cb)(void *ctx, const char *inbox, const char *id), void *ctx)
{
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(s->db,
			       inbox != NULL ? "SELECT inbox, id FROM msgs WHERE inbox = ?"
					     : "SELECT inbox, id FROM msgs",
			       -1, &st, NULL) == SQLITE_OK) {
		if (inbox != NULL)
			sqlite3_bind_text(st, 1, inbox, -1, SQLITE_STATIC);
		int rc;
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
			cb(ctx, (const char *)sqlite3_column_text(st, 0),
			   (const char *)sqlite3_column_text(st, 1));
		ret = rc == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int sg_search_state(struct sg_search *s, const char *inbox, const char *id, bool *read_r,
		    char *tags, size_t size)
{
	*read_r = false;
	if (size > 0)
		tags[0] = '\0';
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(s->db, "SELECT seen, tags FROM msgs WHERE inbox = ? AND id = ?", -1, &st,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, inbox, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*read_r = sqlite3_column_int(st, 0) != 0;
			const char *t = (const char *)sqlite3_column_text(st, 1);
			sg_strlcpy(tags, t != NULL ? t : "", size);
			ret = 1;
		} else if (rc == SQLITE_DONE) {
			ret = 0;
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

static int update_one(struct sg_search *s, const char *sql, const char *inbox, const char *id,
		      int ival, const char *sval)
{
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = NULL;
	int ret = -1;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sval != NULL)
			sqlite3_bind_text(st, 1, sval, -1, SQLITE_STATIC);
		else
			sqlite3_bind_int(st, 1, ival);
		sqlite3_bind_text(st, 2, inbox, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_DONE)
			ret = sqlite3_changes(s->db) > 0 ? 1 : 0;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int sg_search_set_read(struct sg_search *s, const char *inbox, const char *id, bool read)
{
	return update_one(s, "UPDATE msgs SET seen = ? WHERE inbox = ? AND id = ?", inbox, id, read,
			  NULL);
}

int sg_search_set_tags(struct sg_search *s, const char *inbox, const char *id, const char *tags,
		       const char **error_r)
{
	size_t n = 0;
	for (const char *p = tags; *p != '\0';) {
		while (*p == ' ')
			p++;
		size_t l = strcspn(p, " ");
		if (l > 0) {
			if (!sg_search_tag_valid(p, l)) {
				sg_set_err(error_r, "a tag is 1 to 64 of A-Z a-z 0-9 . _ -");
				return -1;
			}
			n++;
		}
		p += l;
	}
	if (n > TAGS_MAX) {
		sg_set_err(error_r, "at most 32 tags");
		return -1;
	}
	struct sg_buf b;
	sg_buf_init(&b, 4096);
	merge_tags(tags, NULL, &b);
	int r = update_one(s, "UPDATE msgs SET tags = ? WHERE inbox = ? AND id = ?", inbox, id, 0,
			   sg_buf_str(&b));
	sg_buf_free(&b);
	if (r < 0)
		sg_set_err(error_r, "search index error");
	return r;
}

/* ---- the query language ---- */

void sg_search_parsed_free(struct sg_search_parsed *p)
{
	sg_buf_free(&p->match);
	for (size_t i = 0; i < p->nneg; i++)
		free(p->neg[i]);
	for (size_t i = 0; i < p->nlogins; i++)
		free(p->logins[i]);
	for (size_t i = 0; i < p->nnlogins; i++)
		free(p->nlogin[i]);
	for (size_t i = 0; i < p->ntags; i++)
		free(p->tags[i]);
	for (size_t i = 0; i < p->nntags; i++)
		free(p->ntag[i]);
	memset(p, 0, sizeof(*p));
}

/* Does the value hold any character the tokenizer keeps? */
static bool has_token(const char *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
			return true;
	}
	return false;
}

/* An FTS5 string for the value: "..." with quotes doubled; * for a prefix. */
static void fts_term(struct sg_buf *b, const char *col, const char *v, size_t n, bool phrase)
{
	if (col != NULL)
		sg_buf_printf(b, "%s : ", col);
	sg_buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '"')
			sg_buf_append(b, "\"", 1);
		sg_buf_append(b, &v[i], 1);
	}
	sg_buf_append_str(b, phrase ? "\"" : "\"*");
}

static int parse_date(const char *v, size_t n, int64_t *ms)
{
	char d[16];
	if (n != 10 || v[4] != '-' || v[7] != '-')
		return -1;
	memcpy(d, v, 10);
	d[10] = '\0';
	d[4] = d[7] = '\0';
	uint64_t y, m, dd;
	if (sg_parse_u64(d, 1970, 9999, &y) < 0 || sg_parse_u64(d + 5, 1, 12, &m) < 0 ||
	    sg_parse_u64(d + 8, 1, 31, &dd) < 0)
		return -1;
	struct tm tm = {.tm_year = (int)y - 1900, .tm_mon = (int)m - 1, .tm_mday = (int)dd};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -1;
	*ms = (int64_t)t * 1000;
	return 0;
}

int sg_search_parse(const char *q, struct sg_search_parsed *p, const char **error_r)
{
	memset(p, 0, sizeof(*p));
	sg_buf_init(&p->match, 16 * SG_SEARCH_Q_MAX);
	p->has_attachment = -1;
	p->read = -1;
	if (q == NULL)
		return 0;
	if (strlen(q) > SG_SEARCH_Q_MAX) {
		*error_r = "the query is longer than 1024 bytes";
		return -1;
	}
	size_t terms = 0;
	const char *s = q;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		if (++terms > SG_SEARCH_TERMS) {
			*error_r = "more than 32 terms";
			return -1;
		}
		bool neg = false;
		if (*s == '-' && s[1] != '\0' && s[1] != ' ') {
			neg = true;
			s++;
		}
		/* key: */
		const char *key = NULL;
		size_t kl = 0;
		const char *colon = s;
		while (*colon >= 'a' && *colon <= 'z')
			colon++;
		if (*colon == ':' && colon > s) {
			key = s;
			kl = (size_t)(colon - s);
			s = colon + 1;
		}
		/* value: "quoted" or up to a space */
		const char *v;
		size_t vl;
		bool quoted = false;
		if (*s == '"') {
			v = ++s;
			const char *e = strchr(s, '"');
			if (e == NULL) {
				*error_r = "a quote is not closed";
				return -1;
			}
			vl = (size_t)(e - v);
			s = e + 1;
			quoted = true;
		} else {
			v = s;
			vl = strcspn(s, " \t");
			s += vl;
		}
		if (key != NULL && vl == 0) {
			*error_r = "an operator without a value";
			return -1;
		}
		const char *col = NULL;
		if (key == NULL) {
			col = NULL;
		} else if (kl == 4 && strncmp(key, "from", 4) == 0) {
			col = "sender";
		} else if (kl == 2 && strncmp(key, "to", 2) == 0) {
			col = "rcpts";
		} else if (kl == 7 && strncmp(key, "subject", 7) == 0) {
			col = "subject";
		} else if (kl == 3 && strncmp(key, "has", 3) == 0) {
			if (!(vl == 10 && strncmp(v, "attachment", 10) == 0)) {
				*error_r = "has: takes only 'attachment'";
				return -1;
			}
			p->has_attachment = neg ? 0 : 1;
			continue;
		} else if (kl == 2 && strncmp(key, "is", 2) == 0) {
			bool unread = vl == 6 && strncmp(v, "unread", 6) == 0;
			bool read = vl == 4 && strncmp(v, "read", 4) == 0;
			if (!unread && !read) {
				*error_r = "is: takes 'unread' or 'read'";
				return -1;
			}
			p->read = (read != neg) ? 1 : 0;
			continue;
		} else if ((kl == 6 && strncmp(key, "before", 6) == 0) ||
			   (kl == 5 && strncmp(key, "after", 5) == 0)) {
			int64_t ms;
			if (parse_date(v, vl, &ms) < 0) {
				*error_r = "before: and after: take a date YYYY-MM-DD";
				return -1;
			}
			bool before = kl == 6;
			if (before != neg)
				p->before_ms = ms;
			else
				p->after_ms = ms;
			continue;
		} else if ((kl == 5 && strncmp(key, "login", 5) == 0) || (kl == 3 && strncmp(key, "tag", 3) == 0)) {
			bool login = kl == 5;
			if (!login && !sg_search_tag_valid(v, vl)) {
				*error_r = "a tag is 1 to 64 of A-Z a-z 0-9 . _ -";
				return -1;
			}
			char **arr = login ? (neg ? p->nlogin : p->logins) : (neg ? p->ntag : p->tags);
			size_t *cnt = login ? (neg ? &p->nnlogins : &p->nlogins) : (neg ? &p->nntags : &p->ntags);
			arr[(*cnt)++] = sg_strndup(v, vl);
			continue;
		} else {
			*error_r = "unknown operator (from: to: subject: has: is: before: after: tag: login:)";
			return -1;
		}
		if (!has_token(v, vl))
			continue; /* nothing the index could match: ignored */
		/* a whole address is matched as a phrase, not a prefix: its last
		 * token ("test", "com") would otherwise expand to half the index */
		bool phrase = quoted || memchr(v, '@', vl) != NULL;
		if (neg) {
			struct sg_buf nb;
			sg_buf_init(&nb, 8 * SG_SEARCH_Q_MAX);
			fts_term(&nb, col, v, vl, phrase);
			p->neg[p->nneg++] = sg_strdup(sg_buf_str(&nb));
			sg_buf_free(&nb);
		} else {
			if (p->match.len > 0)
				sg_buf_append_str(&p->match, " AND ");
			fts_term(&p->match, col, v, vl, phrase);
		}
	}
	return 0;
}

/* ---- running a query ---- */

struct bind {
	bool is_int;
	const char *s;
	int64_t i;
};

struct where {
	struct sg_buf sql;
	struct bind b[4 * SG_SEARCH_TERMS + 600];
	size_t n;
};

static void w_text(struct where *w, const char *sql, const char *v)
{
	sg_buf_append_str(&w->sql, sql);
	if (w->n < sizeof(w->b) / sizeof(w->b[0]))
		w->b[w->n++] = (struct bind){.s = v};
}

static void w_int(struct where *w, const char *sql, int64_t v)
{
	sg_buf_append_str(&w->sql, sql);
	if (w->n < sizeof(w->b) / sizeof(w->b[0]))
		w->b[w->n++] = (struct bind){.is_int = true, .i = v};
}

static void bind_all(sqlite3_stmt *st, const struct where *w, int first)
{
	for (size_t i = 0; i < w->n; i++) {
		if (w->b[i].is_int)
			sqlite3_bind_int64(st, first + (int)i, w->b[i].i);
		else
			sqlite3_bind_text(st, first + (int)i, w->b[i].s, -1, SQLITE_STATIC);
	}
}

int sg_search_run(struct sg_search *s, const struct sg_search_query *q,
		  struct sg_search_hit **hits_r, size_t *n_r, size_t *total_r, const char **error_r)
{
	*hits_r = NULL;
	*n_r = 0;
	*total_r = 0;
	if (q->inboxes != NULL && q->ninboxes > 512) {
		sg_set_err(error_r, "too many inboxes");
		return -1;
	}
	struct where w;
	memset(&w, 0, sizeof(w));
	sg_buf_init(&w.sql, 64 * 1024);
	sg_buf_append_str(&w.sql, " WHERE 1");
	if (q->inboxes != NULL) {
		sg_buf_append_str(&w.sql, " AND m.inbox IN (''");
		for (size_t i = 0; i < q->ninboxes; i++)
			w_text(&w, ",?", q->inboxes[i]);
		sg_buf_append_str(&w.sql, ")");
	}
	const struct sg_search_parsed *p = q->parsed;
	/* with text terms the FTS5 match drives the query (its rows looked up
	 * in msgs by rowid); without, the (inbox, received_ms) index does */
	bool text = p != NULL && p->match.len > 0;
	const char *from = text ? "fts JOIN msgs m ON m.rowid = fts.rowid" : "msgs m";
	if (p != NULL) {
		if (text)
			w_text(&w, " AND fts MATCH ?", sg_buf_str(&p->match));
		for (size_t i = 0; i < p->nneg; i++)
			w_text(&w, " AND m.rowid NOT IN (SELECT rowid FROM fts WHERE fts MATCH ?)", p->neg[i]);
		if (p->has_attachment >= 0)
			w_int(&w, " AND m.has_att = ?", p->has_attachment);
		if (p->read >= 0)
			w_int(&w, " AND m.seen = ?", p->read);
		if (p->before_ms > 0)
			w_int(&w, " AND m.received_ms < ?", p->before_ms);
		if (p->after_ms > 0)
			w_int(&w, " AND m.received_ms >= ?", p->after_ms);
		if (p->nlogins > 0) {
			sg_buf_append_str(&w.sql, " AND m.inbox IN (''");
			for (size_t i = 0; i < p->nlogins; i++)
				w_text(&w, ",?", p->logins[i]);
			sg_buf_append_str(&w.sql, ")");
		}
		for (size_t i = 0; i < p->nnlogins; i++)
			w_text(&w, " AND m.inbox <> ?", p->nlogin[i]);
		for (size_t i = 0; i < p->ntags; i++)
			w_text(&w, " AND instr(' ' || m.tags || ' ', ' ' || ? || ' ') > 0", p->tags[i]);
		for (size_t i = 0; i < p->nntags; i++)
			w_text(&w, " AND instr(' ' || m.tags || ' ', ' ' || ? || ' ') = 0", p->ntag[i]);
	}
	if (q->tag != NULL)
		w_text(&w, " AND instr(' ' || m.tags || ' ', ' ' || ? || ' ') > 0", q->tag);
	int ret = -1;
	sqlite3_stmt *st = NULL;
	pthread_mutex_lock(&s->lock);
	char *sql = sg_asprintf("SELECT count(*) FROM %s%s", from, sg_buf_str(&w.sql));
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK)
		goto db_error;
	bind_all(st, &w, 1);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		goto db_error;
	*total_r = (size_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	if (q->before_id != NULL) {
		sqlite3_stmt *c = NULL;
		int64_t ms = -1;
		if (sqlite3_prepare_v2(s->db, "SELECT received_ms FROM msgs WHERE inbox = ? AND id = ?", -1,
				       &c, NULL) == SQLITE_OK) {
			sqlite3_bind_text(c, 1, q->before_inbox, -1, SQLITE_STATIC);
			sqlite3_bind_text(c, 2, q->before_id, -1, SQLITE_STATIC);
			if (sqlite3_step(c) == SQLITE_ROW)
				ms = sqlite3_column_int64(c, 0);
		}
		sqlite3_finalize(c);
		if (ms < 0) {
			pthread_mutex_unlock(&s->lock);
			sg_buf_free(&w.sql);
			sg_set_err(error_r, "unknown cursor");
			return -2;
		}
		w_int(&w, " AND (m.received_ms < ?", ms);
		w_int(&w, " OR (m.received_ms = ?", ms);
		w_text(&w, " AND (m.id < ?", q->before_id);
		w_text(&w, " OR (m.id = ?", q->before_id);
		w_text(&w, " AND m.inbox < ?))))", q->before_inbox);
	}
	sql = sg_asprintf("SELECT m.inbox, m.id, m.received_ms FROM %s%s"
			  " ORDER BY m.received_ms DESC, m.id DESC, m.inbox DESC LIMIT %zu",
			  from, sg_buf_str(&w.sql), q->limit);
	rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	free(sql);
	if (rc != SQLITE_OK)
		goto db_error;
	bind_all(st, &w, 1);
	struct sg_search_hit *hits = NULL;
	size_t n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		hits = sg_realloc(hits, (n + 1) * sizeof(*hits));
		sg_strlcpy(hits[n].inbox, (const char *)sqlite3_column_text(st, 0), sizeof(hits[n].inbox));
		sg_strlcpy(hits[n].id, (const char *)sqlite3_column_text(st, 1), sizeof(hits[n].id));
		hits[n].received_ms = sqlite3_column_int64(st, 2);
		n++;
	}
	if (rc != SQLITE_DONE) {
		free(hits);
		goto db_error;
	}
	*hits_r = hits;
	*n_r = n;
	ret = 0;
	goto out;
db_error:
	sg_set_err(error_r, sg_errf("search: %s", sqlite3_errmsg(s->db)));
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->lock);
	sg_buf_free(&w.sql);
	return ret;
}
