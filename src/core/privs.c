#include "core/privs.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/util.h"

/* Shared accounts (other daemons run as them) are never a service user:
 * whoever runs as nobody could read the keys and mint tokens. */
static bool shared_account(const struct passwd *pw)
{
	return strcmp(pw->pw_name, "nobody") == 0 || strcmp(pw->pw_name, "nogroup") == 0 ||
	       pw->pw_uid == 65534 || pw->pw_uid == (uid_t)-1;
}

int sg_privs_resolve(const char *user, struct sg_privs *p, char *err, size_t errsize)
{
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errsize,
			 "user '%s' does not exist: started as root, smtpgate runs as a dedicated "
			 "unprivileged user; create it with: " SG_PRIVS_USERADD_FMT,
			 user, user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errsize, "refusing to run as root: set 'user' to an unprivileged account");
		return -1;
	}
	if (shared_account(pw)) {
		snprintf(err, errsize,
			 "refusing to run as the shared account '%s': other daemons run as it; use a "
			 "dedicated user, e.g.: " SG_PRIVS_USERADD_FMT,
			 pw->pw_name, "smtpgate");
		return -1;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	sg_strlcpy(p->name, pw->pw_name, sizeof(p->name));
	return 0;
}

/* The tree belongs to the service user, who may change it while root walks
 * it: never resolve a path inside it. Each directory is opened relative to
 * its parent's descriptor with O_NOFOLLOW|O_DIRECTORY, each other entry with
 * O_PATH|O_NOFOLLOW, and the owner is changed through that descriptor, so a
 * name swapped for a symlink between two calls is never followed. A file
 * with several links may be a hard link to a file outside the tree: left
 * alone. Other file systems (mount points) are not entered. */
#define WALK_MAX_DEPTH 32

struct walk {
	const struct sg_privs *p;
	dev_t dev;
	int err;
	char where[256];
};

static int give(struct walk *w, int fd, const struct stat *st, const char *name)
{
	if (st->st_uid == w->p->uid && st->st_gid == w->p->gid)
		return 0;
	if (fchownat(fd, "", w->p->uid, w->p->gid, AT_EMPTY_PATH) < 0) {
		w->err = errno;
		sg_strlcpy(w->where, name, sizeof(w->where));
		return -1;
	}
	return 0;
}

static int walk_dir(struct walk *w, int dfd, unsigned depth)
{
	if (depth > WALK_MAX_DEPTH) {
		w->err = ELOOP;
		sg_strlcpy(w->where, "(too deep)", sizeof(w->where));
		return -1;
	}
	int lfd = dup(dfd);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
	if (d == NULL) {
		w->err = errno;
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	int ret = 0;
	struct dirent *de;
	while (ret == 0 && (errno = 0, de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		/* O_PATH opens neither devices nor FIFOs; the descriptor pins the
		 * inode that the checks and the chown then both see. */
		int fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; /* removed meanwhile */
			w->err = errno;
			sg_strlcpy(w->where, name, sizeof(w->where));
			ret = -1;
			break;
		}
		struct stat st;
		if (fstat(fd, &st) < 0) {
			w->err = errno;
			ret = -1;
		} else if (S_ISLNK(st.st_mode) || st.st_dev != w->dev) {
			/* a symlink is never followed nor given away; another
			 * file system is not ours */
		} else if (S_ISDIR(st.st_mode)) {
			int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			struct stat st2;
			if (sub < 0) {
				if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
					w->err = errno;
					sg_strlcpy(w->where, name, sizeof(w->where));
					ret = -1;
				}
			} else if (fstat(sub, &st2) == 0 && st2.st_dev == st.st_dev &&
				   st2.st_ino == st.st_ino) {
				ret = give(w, sub, &st2, name);
				if (ret == 0)
					ret = walk_dir(w, sub, depth + 1);
			}
			if (sub >= 0)
				close(sub);
		} else if (S_ISREG(st.st_mode) && st.st_nlink == 1) {
			ret = give(w, fd, &st, name);
		}
		close(fd);
	}
	if (ret == 0 && errno != 0) {
		w->err = errno;
		ret = -1;
	}
	closedir(d);
	return ret;
}

int sg_privs_chown_tree(const char *path, const struct sg_privs *p, char *err, size_t errsize)
{
	struct walk w = {.p = p};
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	int r = -1;
	if (fd < 0 || fstat(fd, &st) < 0) {
		w.err = errno;
	} else {
		w.dev = st.st_dev;
		r = give(&w, fd, &st, ".");
		if (r == 0)
			r = walk_dir(&w, fd, 0);
	}
	if (fd >= 0)
		close(fd);
	if (r != 0) {
		char v[300];
		snprintf(err, errsize, "cannot give %s to %s (at %s): %s", path, p->name,
			 w.where[0] != '\0' ? sg_log_value(w.where, v, sizeof(v)) : ".",
			 strerror(w.err != 0 ? w.err : EIO));
		return -1;
	}
	return 0;
}

int sg_privs_drop(const struct sg_privs *p, char *err, size_t errsize)
{
	if (setgroups(0, NULL) < 0 || setgid(p->gid) < 0 || setuid(p->uid) < 0) {
		snprintf(err, errsize, "cannot drop privileges to %s: %s", p->name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0) {
		snprintf(err, errsize, "root privileges could be regained after dropping to %s", p->name);
		return -1;
	}
	/* setuid() clears the dumpable flag only sometimes; keep it off. */
	sg_privs_no_core_dumps();
	return 0;
}

void sg_privs_no_core_dumps(void)
{
	struct rlimit rl = {0, 0};
	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

int sg_privs_become_owner(const char *dir, char *err, size_t errsize)
{
	if (geteuid() != 0)
		return 0;
	struct stat st;
	if (stat(dir, &st) < 0 || st.st_uid == 0)
		return 0;
	struct sg_privs p = {.uid = st.st_uid, .gid = st.st_gid};
	struct passwd *pw = getpwuid(st.st_uid);
	sg_strlcpy(p.name, pw != NULL ? pw->pw_name : "owner", sizeof(p.name));
	if (sg_privs_drop(&p, err, errsize) < 0)
		return -1;
	if (access(dir, R_OK | W_OK | X_OK) < 0) {
		snprintf(err, errsize, "%s is not reachable by its owner %s: %s (make its parents searchable)",
			 dir, p.name, strerror(errno));
		return -1;
	}
	return 0;
}
