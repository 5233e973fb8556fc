/*
 * mail_maildir.c: the capture store (mail.h) as one Maildir per account.
 *
 * Commit: the message is written once to <first inbox>/tmp/<id> (O_EXCL,
 * 0600), fsync'd and renamed to new/<id>; every further inbox gets a hard
 * link to that file in its new/ (link(2) is atomic, so new/ never holds a
 * partial file), or a full copy through its own tmp/ when linking fails
 * (EXDEV, EMLINK). Each new/ touched is fsync'd before 0 is returned, and on
 * first creation the inbox directory and its parent are fsync'd too. If any
 * inbox fails, the copies already placed are removed again so that a retry
 * by the client does not deliver twice.
 *
 * Group commit of new/ (issue 12): a rename is durable once an fsync of new/ that
 * started after it has returned. Commits running in parallel on the workers share
 * those fsyncs: a commit that has renamed its file joins the directory's waiters;
 * if no fsync of that directory is running it takes every waiter registered so far
 * (itself included) and runs one, otherwise it waits and the next round covers it.
 * So one fsync covers every rename done while the previous one ran, and each commit
 * still returns only after an fsync begun after its own rename (or its error).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/secret.h"
#include "core/util.h"
#include "store/cred.h"
#include "store/mail.h"
#include "store/mail_int.h"

struct dir_waiter {
	struct dir_waiter *next;
	bool done;
	int err;               /* errno of the fsync that covered it, 0 when it succeeded */
};

/* One directory with commits waiting for its fsync (group commit, above). */
struct dir_sync {
	struct dir_sync *next;
	char *path;
	bool running;          /* a leader is in fsync */
	struct dir_waiter *waiting;
	unsigned users;        /* threads inside sync_dir_grouped for it */
};

struct mail_maildir {
	struct sg_mail_store base;    /* first: the store seam (mail_int.h) */
	char *data_dir;
	char *mail_dir;        /* <data_dir>/mail */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	struct dir_sync *syncing;
	/* inboxes whose tmp/, new/ and cur/ this process has made sure of (direct-mapped;
	 * under sync_lock): a commit to them skips the 4 mkdir + 4 stat of ensure_inbox.
	 * An inbox is forgotten when a commit to it fails, so a directory removed behind
	 * the server's back costs one 451 and is made again on the retry. */
	char *known[64];
};

#define MD(b) ((struct mail_maildir *)(b))

static const struct sg_mail_ops maildir_ops;

static int fsync_path(const char *dir)
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

/* fsync(dir) covering this thread's rename into it, shared with the commits of other
 * threads (group commit, see the top of the file). 0, or -1 with errno. */
static int sync_dir_grouped(struct mail_maildir *s, const char *dir)
{
	struct dir_waiter me = {0};
	pthread_mutex_lock(&s->sync_lock);
	struct dir_sync *d = s->syncing;
	while (d != NULL && strcmp(d->path, dir) != 0)
		d = d->next;
	if (d == NULL) {
		d = sg_calloc(1, sizeof(*d));
		d->path = sg_strdup(dir);
		d->next = s->syncing;
		s->syncing = d;
	}
	d->users++;
	me.next = d->waiting;
	d->waiting = &me;
	while (!me.done) {
		if (d->running) {
			pthread_cond_wait(&s->sync_cond, &s->sync_lock);
			continue;
		}
		/* lead one round for everyone registered so far */
		struct dir_waiter *batch = d->waiting;
		d->waiting = NULL;
		d->running = true;
		pthread_mutex_unlock(&s->sync_lock);
		int r = fsync_path(dir);
		int e = r == 0 ? 0 : errno != 0 ? errno : EIO;
		pthread_mutex_lock(&s->sync_lock);
		for (struct dir_waiter *w = batch, *next; w != NULL; w = next) {
			next = w->next;
			w->err = e;
			w->done = true;
		}
		d->running = false;
		pthread_cond_broadcast(&s->sync_cond);
	}
	if (--d->users == 0) {
		struct dir_sync **pp = &s->syncing;
		while (*pp != d)
			pp = &(*pp)->next;
		*pp = d->next;
		free(d->path);
		free(d);
	}
	pthread_mutex_unlock(&s->sync_lock);
	if (me.err != 0) {
		errno = me.err;
		return -1;
	}
	return 0;
}

static size_t known_slot(const char *login)
{
	size_t h = 5381;
	for (const unsigned char *p = (const unsigned char *)login; *p != '\0'; p++)
		h = h * 33 + *p;
	return h % 64;
}

static bool inbox_known(struct mail_maildir *s, const char *login)
{
	pthread_mutex_lock(&s->sync_lock);
	const char *k = s->known[known_slot(login)];
	bool known = k != NULL && strcmp(k, login) == 0;
	pthread_mutex_unlock(&s->sync_lock);
	return known;
}

static void inbox_remember(struct mail_maildir *s, const char *login, bool known)
{
	size_t i = known_slot(login);
	pthread_mutex_lock(&s->sync_lock);
	if (known) {
		free(s->known[i]);
		s->known[i] = sg_strdup(login);
	} else if (s->known[i] != NULL && strcmp(s->known[i], login) == 0) {
		free(s->known[i]);
		s->known[i] = NULL;
	}
	pthread_mutex_unlock(&s->sync_lock);
}

/* mkdir 0700; *created set when this call made it. EEXIST of a directory is fine. */
static int ensure_dir(const char *path, bool *created)
{
	if (mkdir(path, 0700) == 0) {
		if (created != NULL)
			*created = true;
		return 0;
	}
	if (errno != EEXIST)
		return -1;
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

int sg_mail_open(const char *data_dir, struct sg_mail_store **store_r, const char **error_r)
{
	*store_r = NULL;
	struct stat st;
	if (stat(data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		sg_set_err(error_r, sg_errf("data directory %s does not exist", data_dir));
		return -1;
	}
	char *mail_dir = sg_asprintf("%s/mail", data_dir);
	bool created = false;
	if (ensure_dir(mail_dir, &created) != 0 || (created && fsync_path(data_dir) != 0)) {
		sg_set_err(error_r, sg_errf("cannot create %s: %s", mail_dir, strerror(errno)));
		free(mail_dir);
		return -1;
	}
	struct mail_maildir *s = sg_calloc(1, sizeof(*s));
	s->base.ops = &maildir_ops;
	s->data_dir = sg_strdup(data_dir);
	s->mail_dir = mail_dir;
	pthread_mutex_init(&s->sync_lock, NULL);
	pthread_cond_init(&s->sync_cond, NULL);
	*store_r = &s->base;
	return 0;
}

static void maildir_close(struct sg_mail_store *base)
{
	struct mail_maildir *s = MD(base);
	for (size_t i = 0; i < 64; i++)
		free(s->known[i]);
	pthread_mutex_destroy(&s->sync_lock);
	pthread_cond_destroy(&s->sync_cond);
	free(s->data_dir);
	free(s->mail_dir);
	free(s);
}

bool sg_mail_id_valid(const char *id)
{
	if (id == NULL)
		return false;
	size_t i = 0;
	while (id[i] >= '0' && id[i] <= '9')
		i++;
	if (i == 0 || i > 20 || id[i] != '.')
		return false;
	const char *h = id + i + 1;
	for (int k = 0; k < 16; k++) {
		char c = h[k];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return h[16] == '\0';
}

static bool login_ok(const char *login)
{
	return login != NULL && sg_cred_validate_login(login, NULL) == 0;
}

/* Create <mail>/<login>/{tmp,new,cur}; fsync what was created. */
static int ensure_inbox(struct mail_maildir *s, const char *login, const char **error_r)
{
	char *inbox = sg_asprintf("%s/%s", s->mail_dir, login);
	bool made_inbox = false, made_sub = false;
	int ret = 0;
	if (ensure_dir(inbox, &made_inbox) != 0) {
		ret = -1;
		sg_set_err(error_r, sg_errf("cannot create %s: %s", inbox, strerror(errno)));
	}
	static const char *const subs[] = {"tmp", "new", "cur"};
	for (int i = 0; i < 3 && ret == 0; i++) {
		char *p = sg_asprintf("%s/%s", inbox, subs[i]);
		if (ensure_dir(p, &made_sub) != 0) {
			ret = -1;
			sg_set_err(error_r, sg_errf("cannot create %s: %s", p, strerror(errno)));
		}
		free(p);
	}
	if (ret == 0 && ((made_sub && fsync_path(inbox) != 0) ||
			 (made_inbox && fsync_path(s->mail_dir) != 0))) {
		ret = -1;
		sg_set_err(error_r, sg_errf("cannot fsync %s: %s", inbox, strerror(errno)));
	}
	free(inbox);
	return ret;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The body: in memory (buf) or len bytes of a file (fd >= 0, read from offset 0). */
struct body_src {
	const struct sg_buf *buf;
	int fd;
	size_t len;
};

/* Writes through a renamer: in the client's top header section, fields
 * named X-Smtpgate-* become X-Client-Smtpgate-* (issue 10 item 16): only the
 * server writes X-Smtpgate-* fields, in the block it puts in front. A small
 * state machine, so that the body can come in chunks of any size. */
struct renamer {
	int fd;
	bool in_headers, line_start;
	size_t k;                       /* bytes of "X-Smtpgate-" matched, held */
	uint8_t held[16];
	uint8_t out[8192];
	size_t olen;
};

static const char rename_tag[] = "X-Smtpgate-";

static int ren_put(struct renamer *r, const uint8_t *p, size_t n)
{
	if (r->olen + n > sizeof(r->out)) {
		if (write_all(r->fd, r->out, r->olen) != 0)
			return -1;
		r->olen = 0;
		if (n > sizeof(r->out))
			return write_all(r->fd, p, n);
	}
	memcpy(r->out + r->olen, p, n);
	r->olen += n;
	return 0;
}

static int ren_feed(struct renamer *r, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n && r->in_headers) {
		uint8_t c = p[i++];
		if (r->k > 0 || r->line_start) {
			if (r->line_start && r->k == 0 && (c == '\r' || c == '\n')) {
				r->in_headers = false; /* the empty line */
			} else if (((c | 0x20) == ((uint8_t)rename_tag[r->k] | 0x20))) {
				r->held[r->k++] = c;
				r->line_start = false;
				if (r->k == sizeof(rename_tag) - 1) {
					if (ren_put(r, (const uint8_t *)"X-Client-", 9) < 0 ||
					    ren_put(r, r->held + 2, r->k - 2) < 0)
						return -1;
					r->k = 0;
				}
				continue;
			}
			if (r->k > 0 && ren_put(r, r->held, r->k) < 0)
				return -1;
			r->k = 0;
		}
		if (ren_put(r, &c, 1) < 0)
			return -1;
		r->line_start = c == '\n';
	}
	if (i < n) {
		if (r->olen > 0 && write_all(r->fd, r->out, r->olen) != 0)
			return -1;
		r->olen = 0;
		return write_all(r->fd, p + i, n - i);
	}
	return 0;
}

static int ren_end(struct renamer *r)
{
	if (r->k > 0 && ren_put(r, r->held, r->k) < 0)
		return -1;
	r->k = 0;
	int ret = r->olen > 0 ? write_all(r->fd, r->out, r->olen) : 0;
	r->olen = 0;
	return ret;
}

static int write_body(int fd, const struct body_src *b)
{
	struct renamer r = {.fd = fd, .in_headers = true, .line_start = true};
	if (b->fd < 0) {
		if (b->buf == NULL || b->buf->len == 0)
			return 0;
		return ren_feed(&r, b->buf->data, b->buf->len) == 0 ? ren_end(&r) : -1;
	}
	uint8_t chunk[64 * 1024];
	for (size_t off = 0; off < b->len;) {
		size_t want = b->len - off < sizeof(chunk) ? b->len - off : sizeof(chunk);
		ssize_t rd = pread(b->fd, chunk, want, (off_t)off);
		if (rd < 0 && errno == EINTR)
			continue;
		if (rd <= 0) {
			if (rd == 0)
				errno = EIO; /* the spool is shorter than recorded */
			return -1;
		}
		if (ren_feed(&r, chunk, (size_t)rd) != 0)
			return -1;
		off += (size_t)rd;
	}
	return ren_end(&r);
}

/* The time a message is stamped with (its file's mtime, which orders an
 * inbox newest first and which retention reads): the real time at full
 * nanosecond precision, strictly increasing within the process. The file
 * system's own stamp is only as fine as a kernel tick, so messages
 * committed in the same tick would tie and come out in any order ("keep
 * the newest 100" could keep the 101st). */
static int stamp(int fd)
{
	static _Atomic int64_t last;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t want = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
	int64_t prev = atomic_load(&last);
	do {
		if (want <= prev)
			want = prev + 1;
	} while (!atomic_compare_exchange_weak(&last, &prev, want));
	struct timespec times[2] = {{want / 1000000000, want % 1000000000}};
	times[1] = times[0];
	return futimens(fd, times);
}

/* Write prefix+body to tmp/<id>, stamp, fsync, rename into new/<id>, fsync new/. */
static int deliver_file(struct mail_maildir *s, const char *login, const char *id,
			const struct sg_buf *prefix, const struct body_src *body, bool *exists,
			const char **error_r)
{
	char *tmp = sg_asprintf("%s/%s/tmp/%s", s->mail_dir, login, id);
	char *dst = sg_asprintf("%s/%s/new/%s", s->mail_dir, login, id);
	char *newdir = sg_asprintf("%s/%s/new", s->mail_dir, login);
	int ret = -1;
	*exists = false;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		*exists = errno == EEXIST;
		sg_set_err(error_r, sg_errf("cannot create %s: %s", tmp, strerror(errno)));
		goto out;
	}
	if ((prefix != NULL && prefix->len > 0 && write_all(fd, prefix->data, prefix->len) != 0) ||
	    write_body(fd, body) != 0 || stamp(fd) != 0 || fsync(fd) != 0) {
		sg_set_err(error_r, sg_errf("cannot write %s: %s", tmp, strerror(errno)));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) != 0) {
		sg_set_err(error_r, sg_errf("cannot write %s: %s", tmp, strerror(errno)));
		unlink(tmp);
		goto out;
	}
	/* never overwrite an existing message with the same id */
	if (access(dst, F_OK) == 0) {
		*exists = true;
		unlink(tmp);
		sg_set_err(error_r, "message id collision");
		goto out;
	}
	if (rename(tmp, dst) != 0) {
		sg_set_err(error_r, sg_errf("cannot rename %s: %s", tmp, strerror(errno)));
		unlink(tmp);
		goto out;
	}
	if (sync_dir_grouped(s, newdir) != 0) {
		sg_set_err(error_r, sg_errf("cannot fsync %s: %s", newdir, strerror(errno)));
		unlink(dst);
		goto out;
	}
	ret = 0;
out:
	free(tmp);
	free(dst);
	free(newdir);
	return ret;
}

static void make_id(char id[SG_MAIL_ID_MAX])
{
	uint8_t r[8];
	char hex[17];
	sg_random(r, sizeof(r));
	sg_hex(r, sizeof(r), hex);
	snprintf(id, SG_MAIL_ID_MAX, "%" PRId64 ".%s", sg_time(), hex);
}

static int commit(struct mail_maildir *s, const char *const *logins, size_t n,
		  const struct sg_buf *const *prefixes, const struct sg_buf *prefix,
		  const struct body_src *body, char id_r[SG_MAIL_ID_MAX], const char **error_r)
{
	if (prefixes != NULL && n > 0)
		prefix = prefixes[0];
	if (n == 0) {
		sg_set_err(error_r, "no inbox to deliver to");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!login_ok(logins[i])) {
			sg_set_err(error_r, sg_errf("invalid inbox name '%.255s'", logins[i] != NULL ? logins[i] : ""));
			return -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (inbox_known(s, logins[i]))
			continue;
		if (ensure_inbox(s, logins[i], error_r) != 0)
			return -1;
		inbox_remember(s, logins[i], true);
	}
	char id[SG_MAIL_ID_MAX];
	bool exists = false;
	int tries = 0;
	do {
		make_id(id);
		if (deliver_file(s, logins[0], id, prefix, body, &exists, error_r) == 0)
			break;
		if (!exists || ++tries >= 5)
			return -1;
	} while (1);

	char *first = sg_asprintf("%s/%s/new/%s", s->mail_dir, logins[0], id);
	size_t done = 1;
	int ret = 0;
	for (size_t i = 1; i < n && ret == 0; i++, done++) {
		bool dup = false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(logins[i], logins[j]) == 0)
				dup = true;
		if (dup)
			continue;
		char *dst = sg_asprintf("%s/%s/new/%s", s->mail_dir, logins[i], id);
		char *newdir = sg_asprintf("%s/%s/new", s->mail_dir, logins[i]);
		/* an inbox with a block of its own (its own recipients) gets a copy */
		const struct sg_buf *own = prefixes != NULL ? prefixes[i] : prefix;
		bool same = own == prefix || (own != NULL && prefix != NULL && own->len == prefix->len &&
					      memcmp(own->data, prefix->data, own->len) == 0);
		if (!same) {
			if (deliver_file(s, logins[i], id, own, body, &exists, error_r) != 0)
				ret = -1;
		} else if (link(first, dst) == 0) {
			if (sync_dir_grouped(s, newdir) != 0) {
				sg_set_err(error_r, sg_errf("cannot fsync %s: %s", newdir, strerror(errno)));
				unlink(dst);
				ret = -1;
			}
		} else if (errno == EXDEV || errno == EMLINK || errno == EPERM) {
			if (deliver_file(s, logins[i], id, prefix, body, &exists, error_r) != 0)
				ret = -1;
		} else {
			sg_set_err(error_r, sg_errf("cannot link %s: %s", dst, strerror(errno)));
			ret = -1;
		}
		free(dst);
		free(newdir);
	}
	if (ret != 0) {
		/* roll back: the client will be told to retry */
		for (size_t i = 0; i + 1 < done; i++) {
			bool dup = false;
			for (size_t j = 0; j < i; j++)
				if (strcmp(logins[i], logins[j]) == 0)
					dup = true;
			if (dup)
				continue;
			char *p = sg_asprintf("%s/%s/new/%s", s->mail_dir, logins[i], id);
			unlink(p);
			free(p);
			p = sg_asprintf("%s/%s/new", s->mail_dir, logins[i]);
			(void)fsync_path(p);
			free(p);
		}
	} else {
		sg_strlcpy(id_r, id, SG_MAIL_ID_MAX);
	}
	free(first);
	return ret;
}

/* A failed commit forgets its inboxes: the next one checks their directories again. */
static int commit_or_forget(struct mail_maildir *s, const char *const *logins, size_t n,
			    const struct sg_buf *const *prefixes, const struct sg_buf *prefix,
			    const struct body_src *body, char id_r[SG_MAIL_ID_MAX], const char **error_r)
{
	int r = commit(s, logins, n, prefixes, prefix, body, id_r, error_r);
	if (r != 0)
		for (size_t i = 0; i < n; i++)
			if (logins[i] != NULL)
				inbox_remember(s, logins[i], false);
	return r;
}

static int maildir_commit_buf(struct sg_mail_store *base, const char *const *logins, size_t n,
		   const struct sg_buf *prefix, const struct sg_buf *body, char id_r[SG_MAIL_ID_MAX],
		   const char **error_r)
{
	struct mail_maildir *s = MD(base);
	struct body_src b = {.buf = body, .fd = -1};
	return commit_or_forget(s, logins, n, NULL, prefix, &b, id_r, error_r);
}

static int maildir_commit_fd(struct sg_mail_store *base, const char *const *logins,
			     const struct sg_buf *const *prefixes, size_t n,
			     const struct sg_buf *prefix, int body_fd, size_t body_len,
			     char id_r[SG_MAIL_ID_MAX], const char **error_r)
{
	struct mail_maildir *s = MD(base);
	struct body_src b = {.fd = body_fd, .len = body_len};
	return commit_or_forget(s, logins, n, prefixes, prefix, &b, id_r, error_r);
}

/* Find the file of a message: new/<id>, cur/<id>, cur/<id>:2,... */
static char *find_message(struct mail_maildir *s, const char *login, const char *id)
{
	if (!login_ok(login) || !sg_mail_id_valid(id))
		return NULL;
	char *p = sg_asprintf("%s/%s/new/%s", s->mail_dir, login, id);
	if (access(p, F_OK) == 0)
		return p;
	free(p);
	p = sg_asprintf("%s/%s/cur/%s", s->mail_dir, login, id);
	if (access(p, F_OK) == 0)
		return p;
	free(p);
	char *cur = sg_asprintf("%s/%s/cur", s->mail_dir, login);
	DIR *d = opendir(cur);
	p = NULL;
	if (d != NULL) {
		size_t idlen = strlen(id);
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strncmp(e->d_name, id, idlen) == 0 && e->d_name[idlen] == ':') {
				p = sg_asprintf("%s/%s", cur, e->d_name);
				break;
			}
		}
		closedir(d);
	}
	free(cur);
	return p;
}

static char *maildir_path(struct sg_mail_store *base, const char *login, const char *id)
{
	struct mail_maildir *s = MD(base);
	return find_message(s, login, id);
}

static int maildir_open_message(struct sg_mail_store *base, const char *login, const char *id)
{
	struct mail_maildir *s = MD(base);
	char *p = find_message(s, login, id);
	if (p == NULL) {
		errno = ENOENT;
		return -1;
	}
	int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int e = errno;
	free(p);
	errno = e;
	return fd;
}

static int maildir_read(struct sg_mail_store *base, const char *login, const char *id, struct sg_buf *out,
		 const char **error_r)
{
	int fd = maildir_open_message(base, login, id);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		sg_set_err(error_r, sg_errf("cannot open message %s: %s", id, strerror(errno)));
		return -1;
	}
	uint8_t chunk[65536];
	int ret = 1;
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			sg_set_err(error_r, sg_errf("cannot read message %s: %s", id, strerror(errno)));
			ret = -1;
			break;
		}
		if (r == 0)
			break;
		if (sg_buf_append(out, chunk, (size_t)r) != 0) {
			sg_set_err(error_r, sg_errf("message %s is larger than %zu bytes", id, out->max));
			ret = -1;
			break;
		}
	}
	close(fd);
	return ret;
}

static int maildir_delete(struct sg_mail_store *base, const char *login, const char *id,
		   const char **error_r)
{
	struct mail_maildir *s = MD(base);
	char *p = find_message(s, login, id);
	if (p == NULL)
		return 0;
	int ret = 1;
	if (unlink(p) != 0) {
		if (errno == ENOENT) {
			ret = 0;
		} else {
			sg_set_err(error_r, sg_errf("cannot delete %s: %s", p, strerror(errno)));
			ret = -1;
		}
	} else {
		char *slash = strrchr(p, '/');
		*slash = '\0';
		if (fsync_path(p) != 0) {
			sg_set_err(error_r, sg_errf("cannot fsync %s: %s", p, strerror(errno)));
			ret = -1;
		}
	}
	free(p);
	return ret;
}

/* Message id of a directory entry (strip a ":2,flags" suffix); false if none. */
static bool entry_id(const char *name, char id[SG_MAIL_ID_MAX])
{
	size_t n = strcspn(name, ":");
	if (n >= SG_MAIL_ID_MAX)
		return false;
	memcpy(id, name, n);
	id[n] = '\0';
	return sg_mail_id_valid(id);
}

static int cmp_entry(const void *a, const void *b)
{
	const struct sg_mail_entry *x = a, *y = b;
	if (x->mtime_ns != y->mtime_ns)
		return x->mtime_ns > y->mtime_ns ? -1 : 1;
	return -strcmp(x->id, y->id);
}

static int maildir_list(struct sg_mail_store *base, const char *login, struct sg_mail_entry **entries_r,
		 size_t *n_r, const char **error_r)
{
	struct mail_maildir *s = MD(base);
	*entries_r = NULL;
	*n_r = 0;
	if (!login_ok(login)) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	struct sg_mail_entry *v = NULL;
	size_t n = 0, cap = 0;
	static const char *const subs[] = {"new", "cur"};
	for (int k = 0; k < 2; k++) {
		char *dir = sg_asprintf("%s/%s/%s", s->mail_dir, login, subs[k]);
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			int e = errno;
			free(dir);
			if (e == ENOENT)
				continue;
			sg_set_err(error_r, sg_errf("cannot open inbox of '%s': %s", login, strerror(e)));
			free(v);
			return -1;
		}
		DIR *d = fdopendir(dfd);
		if (d == NULL) {
			close(dfd);
			free(dir);
			free(v);
			sg_set_err(error_r, "cannot read inbox");
			return -1;
		}
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char id[SG_MAIL_ID_MAX];
			struct stat st;
			if (!entry_id(e->d_name, id) ||
			    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
				continue;
			if (n == cap) {
				cap = cap != 0 ? cap * 2 : 32;
				v = sg_realloc(v, cap * sizeof(*v));
			}
			sg_strlcpy(v[n].id, id, sizeof(v[n].id));
			v[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
			v[n].size = (uint64_t)st.st_size;
			n++;
		}
		closedir(d);
		free(dir);
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_entry);
	*entries_r = v;
	*n_r = n;
	return 0;
}

static int maildir_delete_all(struct sg_mail_store *base, const char *login, size_t *n_r,
		       const char **error_r)
{
	struct mail_maildir *s = MD(base);
	if (n_r != NULL)
		*n_r = 0;
	if (!login_ok(login)) {
		sg_set_err(error_r, "invalid login");
		return -1;
	}
	size_t count = 0;
	int ret = 0;
	static const char *const subs[] = {"new", "cur"};
	for (int k = 0; k < 2; k++) {
		char *dir = sg_asprintf("%s/%s/%s", s->mail_dir, login, subs[k]);
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0) {
			if (errno != ENOENT) {
				sg_set_err(error_r, sg_errf("cannot open %s: %s", dir, strerror(errno)));
				ret = -1;
			}
			free(dir);
			continue;
		}
		int dfd2 = dup(dfd);
		DIR *d = dfd2 >= 0 ? fdopendir(dfd2) : NULL;
		if (d == NULL) {
			if (dfd2 >= 0)
				close(dfd2);
			close(dfd);
			free(dir);
			sg_set_err(error_r, "cannot read inbox");
			ret = -1;
			continue;
		}
		struct dirent *e;
		bool removed = false;
		while ((e = readdir(d)) != NULL) {
			char id[SG_MAIL_ID_MAX];
			if (!entry_id(e->d_name, id))
				continue;
			if (unlinkat(dfd, e->d_name, 0) == 0) {
				count++;
				removed = true;
			} else if (errno != ENOENT) {
				sg_set_err(error_r, sg_errf("cannot delete %s/%s: %s", dir, e->d_name,
						      strerror(errno)));
				ret = -1;
			}
		}
		closedir(d);
		if (removed && fsync(dfd) != 0) {
			sg_set_err(error_r, sg_errf("cannot fsync %s: %s", dir, strerror(errno)));
			ret = -1;
		}
		close(dfd);
		free(dir);
	}
	if (n_r != NULL)
		*n_r = count;
	return ret;
}

static const struct sg_mail_ops maildir_ops = {
	.name = "maildir",
	.close = maildir_close,
	.commit = maildir_commit_buf,
	.commit_fd = maildir_commit_fd,
	.path = maildir_path,
	.list = maildir_list,
	.open_message = maildir_open_message,
	.read = maildir_read,
	.del = maildir_delete,
	.delete_all = maildir_delete_all,
};
