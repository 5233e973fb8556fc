/*
 * search.h: the full-text index of captured mail (issue 14), SQLite FTS5 in
 * <data-dir>/search.db, plus each message's read state and tags.
 *
 * One row per (inbox, message id): subject, sender, recipients, body text
 * and attachment names are indexed (unicode61 tokenizer, diacritics folded);
 * received time, has-attachment, read state and tags are plain columns.
 * The index is derived data: it can be deleted and rebuilt from the
 * Maildirs (the HTTP side's indexer does so at start), except read state
 * and tags, which live only here.
 *
 * Query language (sg_search_parse):
 *   word            a token starting with word (prefix match), any field
 *   "two words"     a phrase
 *   from:x to:x subject:x      in that field only (x may be quoted)
 *   has:attachment  is:unread  is:read  tag:x
 *   before:YYYY-MM-DD  after:YYYY-MM-DD   received before / on or after
 *   login:x         (admin) only inbox x
 *   -term           negation of any of the above
 * Terms are ANDed. Input is bounded (SG_SEARCH_Q_MAX bytes, SG_SEARCH_TERMS
 * terms); anything else is a parse error naming the problem.
 *
 * Thread-safe (one connection behind a mutex). Blocking: call from HTTP or
 * background threads, never from an SMTP loop.
 */
#ifndef SG_SEARCH_H
#define SG_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SG_SEARCH_Q_MAX 1024
#define SG_SEARCH_TERMS 32

struct sg_search;

int sg_search_open(const char *data_dir, struct sg_search **s_r, const char **error_r);
void sg_search_close(struct sg_search **s);

struct sg_search_doc {
	const char *inbox, *id;
	int64_t received_ms;
	const char *subject, *sender, *rcpts, *body, *attachments;
	bool has_attachment;
	const char *tags;           /* space-separated, added to the existing ones */
};

/* Index (or re-index) one message; read state and tags are kept. 0 / -1. */
int sg_search_put(struct sg_search *s, const struct sg_search_doc *d, const char **error_r);
/* Group many puts in one transaction (bulk indexing): begin, puts, end. */
int sg_search_batch(struct sg_search *s, bool begin);
/* Forget one message (id NULL: every message of the inbox). 0 / -1. */
int sg_search_delete(struct sg_search *s, const char *inbox, const char *id);
/* Is the message indexed? 1 / 0 / -1. */
int sg_search_has(struct sg_search *s, const char *inbox, const char *id);
/* Call cb for every indexed id of an inbox (NULL inbox: every inbox). */
int sg_search_each(struct sg_search *s, const char *inbox,
		   void (*cb)(void *ctx, const char *inbox, const char *id), void *ctx);
/* Read state and tags. state: 1 found, 0 not indexed (unread, no tags). */
int sg_search_state(struct sg_search *s, const char *inbox, const char *id, bool *read_r,
		    char *tags, size_t size);
int sg_search_set_read(struct sg_search *s, const char *inbox, const char *id, bool read);
/* Replace the tags (space-separated, each [A-Za-z0-9._-]{1,64}, at most 32). 1 / 0 absent / -1 */
int sg_search_set_tags(struct sg_search *s, const char *inbox, const char *id, const char *tags,
		       const char **error_r);
/* Is a tag well-formed? */
bool sg_search_tag_valid(const char *tag, size_t len);

/* ---- queries ---- */

struct sg_search_parsed {
	struct sg_buf match;        /* FTS5 expression of the positive text terms ("" none) */
	char *neg[SG_SEARCH_TERMS]; /* FTS5 expressions that must not match */
	size_t nneg;
	int has_attachment;         /* -1 any, 0, 1 */
	int read;                   /* -1 any, 0 unread, 1 read */
	int64_t before_ms, after_ms; /* 0 = none */
	char *logins[SG_SEARCH_TERMS];
	size_t nlogins;
	char *nlogin[SG_SEARCH_TERMS]; /* -login: */
	size_t nnlogins;
	char *tags[SG_SEARCH_TERMS];
	size_t ntags;
	char *ntag[SG_SEARCH_TERMS];   /* -tag: */
	size_t nntags;
};

/* Parse a query. 0, or -1 with *error_r (static text). Free with
 * sg_search_parsed_free in both cases. */
int sg_search_parse(const char *q, struct sg_search_parsed *p, const char **error_r);
void sg_search_parsed_free(struct sg_search_parsed *p);

struct sg_search_hit {
	char inbox[256];
	char id[64];
	int64_t received_ms;
};

struct sg_search_query {
	const struct sg_search_parsed *parsed; /* NULL: every message */
	const char *const *inboxes; /* only these (NULL: every inbox: the admin) */
	size_t ninboxes;
	const char *tag;            /* and this tag (NULL: any) */
	size_t limit;
	const char *before_inbox, *before_id; /* cursor: results after this hit */
};

/* Newest first. *hits_r malloc'd; *total_r: every match (not only the page).
 * 0, or -1 with *error_r (thread-local). */
int sg_search_run(struct sg_search *s, const struct sg_search_query *q,
		  struct sg_search_hit **hits_r, size_t *n_r, size_t *total_r, const char **error_r);

#endif
