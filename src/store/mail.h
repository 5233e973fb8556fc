/*
 * mail.h: the capture store (sandbox mode). One Maildir per account at
 * <data-dir>/mail/<login>/{tmp,new,cur}.
 *
 * Durability contract: sg_mail_commit() returns 0 only after the message file
 * was written in tmp/, fsync'd, renamed into new/ and new/ fsync'd. A crash at
 * any point leaves either no message in new/ or the whole message.
 * Blocking: the caller runs commit on a worker thread, never on the event loop.
 * Thread-safe. Error strings (*error_r) live in a thread-local buffer valid
 * until the next call on the same thread.
 */
#ifndef SG_MAIL_H
#define SG_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SG_MAIL_ID_MAX 64

struct sg_mail_store;

int sg_mail_open(const char *data_dir, struct sg_mail_store **store_r, const char **error_r);
void sg_mail_close(struct sg_mail_store **store);

/* Store one message (header block we add + the client's data) in each of the
 * n inboxes. id_r receives the message id (the same in every inbox), e.g.
 * "1732737000.a1b2c3d4e5f60718". 0 or -1 with *error_r. */
int sg_mail_commit(struct sg_mail_store *s, const char *const *logins, size_t n,
		   const struct sg_buf *prefix, const struct sg_buf *body, char id_r[SG_MAIL_ID_MAX],
		   const char **error_r);

/* The same with the body in a file (the DATA spool): body_len bytes read
 * with pread from offset 0 of body_fd, which stays open (the caller closes
 * it). Memory use does not depend on the message size. */
int sg_mail_commit_fd(struct sg_mail_store *s, const char *const *logins, size_t n,
		      const struct sg_buf *prefix, int body_fd, size_t body_len,
		      char id_r[SG_MAIL_ID_MAX], const char **error_r);

/* The same with a header block per inbox (prefixes[i] for logins[i]; NULL
 * = prefix for all): inboxes whose block equals the first's share one file
 * (hard links), the others get their own copy. On mx each owner's copy
 * names only its own recipients (issue 10 item 15). Every commit stores
 * the fields of the client's top header section named X-Smtpgate-* renamed
 * X-Client-Smtpgate-*: only the server's own block has X-Smtpgate-* fields
 * (item 16). */
int sg_mail_commit_fd_each(struct sg_mail_store *s, const char *const *logins,
			   const struct sg_buf *const *prefixes, size_t n,
			   const struct sg_buf *prefix, int body_fd, size_t body_len,
			   char id_r[SG_MAIL_ID_MAX], const char **error_r);

/* Path of a stored message (for tests, the HTTP API). NULL if absent. Caller frees. */
char *sg_mail_path(struct sg_mail_store *s, const char *login, const char *id);

/* ---- read side (HTTP API, CLI, tests) ----
 * Logins are checked with sg_cred_validate_login() and ids must have the
 * form sg_mail_commit() produces ("<digits>.<16 hex>"); anything else is
 * treated as absent, so a peer-supplied id can never name another path.
 * Messages are looked for in new/ and cur/ (where a mail client may have
 * moved them, possibly with a ":2,<flags>" suffix). */

struct sg_mail_entry {
	char id[SG_MAIL_ID_MAX];
	int64_t mtime_ns;      /* modification time, nanoseconds since the epoch */
	uint64_t size;         /* bytes */
};

/* The messages of one inbox, newest first (mtime, then id). An inbox that
 * was never created has none. *entries_r is sg_malloc'd (free() it), NULL
 * when *n_r is 0. 0 or -1 with *error_r. */
int sg_mail_list(struct sg_mail_store *s, const char *login, struct sg_mail_entry **entries_r,
		 size_t *n_r, const char **error_r);

/* Open a message read-only (O_CLOEXEC). The fd, or -1 with errno (ENOENT
 * when absent or the login/id is invalid). */
int sg_mail_open_message(struct sg_mail_store *s, const char *login, const char *id);

/* Append a whole message to out (its cap applies). 1 read, 0 absent,
 * -1 error (I/O, or larger than out's cap) with *error_r. */
int sg_mail_read(struct sg_mail_store *s, const char *login, const char *id, struct sg_buf *out,
		 const char **error_r);

/* Delete one message: 1 deleted, 0 absent, -1 error. The directory is
 * fsync'd before returning 1. */
int sg_mail_delete(struct sg_mail_store *s, const char *login, const char *id,
		   const char **error_r);

/* Delete every message of an inbox (new/ and cur/); *n_r (may be NULL)
 * receives the count. 0 or -1. */
int sg_mail_delete_all(struct sg_mail_store *s, const char *login, size_t *n_r,
		       const char **error_r);

/* Is text a well-formed message id? */
bool sg_mail_id_valid(const char *id);

#endif
