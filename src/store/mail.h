/*
 * mail.h: the capture store (sandbox mode). One Maildir per account at
 * <data-dir>/mail/<login>/{tmp,new,cur}.
 *
 * Durability contract: sg_mail_commit() returns 0 only after the message file
 * was written in tmp/, fsync'd, renamed into new/ and new/ fsync'd. A crash at
 * any point leaves either no message in new/ or the whole message.
 * Blocking: the caller runs commit on a worker thread, never on the event loop.
 */
#ifndef SG_MAIL_H
#define SG_MAIL_H

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

/* Path of a stored message (for tests, the HTTP API). NULL if absent. Caller frees. */
char *sg_mail_path(struct sg_mail_store *s, const char *login, const char *id);

#endif
