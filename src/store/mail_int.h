/*
 * mail_int.h: the seam between the capture store interface (mail.h) and its
 * backends: one Maildir per account (mail_maildir.c, sg_mail_open) or the
 * shared PostgreSQL database (mail_pg.c, sg_mail_open_pg). One const ops
 * table per backend; mail.c dispatches. Each op follows mail.h's contract
 * for the function of the same name; path may return NULL always (a backend
 * without files).
 */
#ifndef SG_MAIL_INT_H
#define SG_MAIL_INT_H

#include "store/mail.h"

struct sg_mail_ops {
	const char *name;
	void (*close)(struct sg_mail_store *s);
	int (*commit)(struct sg_mail_store *s, const char *const *logins, size_t n, const struct sg_buf *prefix,
		      const struct sg_buf *body, char id_r[SG_MAIL_ID_MAX], const char **error_r);
	/* prefixes: one header block per inbox (NULL: prefix for all) */
	int (*commit_fd)(struct sg_mail_store *s, const char *const *logins,
			 const struct sg_buf *const *prefixes, size_t n,
			 const struct sg_buf *prefix, int body_fd, size_t body_len, char id_r[SG_MAIL_ID_MAX],
			 const char **error_r);
	char *(*path)(struct sg_mail_store *s, const char *login, const char *id);
	int (*list)(struct sg_mail_store *s, const char *login, struct sg_mail_entry **entries_r, size_t *n_r,
		    const char **error_r);
	int (*open_message)(struct sg_mail_store *s, const char *login, const char *id);
	int (*read)(struct sg_mail_store *s, const char *login, const char *id, struct sg_buf *out,
		    const char **error_r);
	int (*del)(struct sg_mail_store *s, const char *login, const char *id, const char **error_r);
	int (*delete_all)(struct sg_mail_store *s, const char *login, size_t *n_r, const char **error_r);
};

struct sg_mail_store {
	const struct sg_mail_ops *ops;
};

#endif
