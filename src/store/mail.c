/* mail.c: the capture store interface (mail.h) over its backends (mail_int.h). */
#include "store/mail.h"
#include "store/mail_int.h"

void sg_mail_close(struct sg_mail_store **store)
{
	struct sg_mail_store *s = *store;
	if (s == NULL)
		return;
	*store = NULL;
	s->ops->close(s);
}

const char *sg_mail_backend(const struct sg_mail_store *s)
{
	return s->ops->name;
}

int sg_mail_commit(struct sg_mail_store *s, const char *const *logins, size_t n, const struct sg_buf *prefix,
		   const struct sg_buf *body, char id_r[SG_MAIL_ID_MAX], const char **error_r)
{
	return s->ops->commit(s, logins, n, prefix, body, id_r, error_r);
}

int sg_mail_commit_fd(struct sg_mail_store *s, const char *const *logins, size_t n,
		      const struct sg_buf *prefix, int body_fd, size_t body_len, char id_r[SG_MAIL_ID_MAX],
		      const char **error_r)
{
	return s->ops->commit_fd(s, logins, NULL, n, prefix, body_fd, body_len, id_r, error_r);
}

int sg_mail_commit_fd_each(struct sg_mail_store *s, const char *const *logins,
			   const struct sg_buf *const *prefixes, size_t n,
			   const struct sg_buf *prefix, int body_fd, size_t body_len,
			   char id_r[SG_MAIL_ID_MAX], const char **error_r)
{
	return s->ops->commit_fd(s, logins, prefixes, n, prefix, body_fd, body_len, id_r, error_r);
}

char *sg_mail_path(struct sg_mail_store *s, const char *login, const char *id)
{
	return s->ops->path(s, login, id);
}

int sg_mail_list(struct sg_mail_store *s, const char *login, struct sg_mail_entry **entries_r, size_t *n_r,
		 const char **error_r)
{
	return s->ops->list(s, login, entries_r, n_r, error_r);
}

int sg_mail_open_message(struct sg_mail_store *s, const char *login, const char *id)
{
	return s->ops->open_message(s, login, id);
}

int sg_mail_read(struct sg_mail_store *s, const char *login, const char *id, struct sg_buf *out,
		 const char **error_r)
{
	return s->ops->read(s, login, id, out, error_r);
}

int sg_mail_delete(struct sg_mail_store *s, const char *login, const char *id, const char **error_r)
{
	return s->ops->del(s, login, id, error_r);
}

int sg_mail_delete_all(struct sg_mail_store *s, const char *login, size_t *n_r, const char **error_r)
{
	return s->ops->delete_all(s, login, n_r, error_r);
}
