#include "core/privs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

int sg_privs_resolve(const char *user, struct sg_privs *p, char *err, size_t errsize)
{
	struct passwd *pw = getpwnam(user);
	if (pw == NULL && strcmp(user, "smtpgate") == 0)
		pw = getpwnam("nobody");
	if (pw == NULL) {
		snprintf(err, errsize, "user '%s' does not exist (create it, e.g. useradd --system %s)",
			 user, user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errsize, "refusing to run as root: set 'user' to an unprivileged account");
		return -1;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	sg_strlcpy(p->name, pw->pw_name, sizeof(p->name));
	return 0;
}

static const struct sg_privs *walk_target;
static int walk_errno;

static int walk(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (st->st_uid == walk_target->uid && st->st_gid == walk_target->gid)
		return 0;
	if (lchown(path, walk_target->uid, walk_target->gid) < 0) {
		walk_errno = errno;
		return 1;
	}
	return 0;
}

int sg_privs_chown_tree(const char *path, const struct sg_privs *p, char *err, size_t errsize)
{
	walk_target = p;
	walk_errno = 0;
	int r = nftw(path, walk, 32, FTW_PHYS | FTW_MOUNT);
	if (r != 0) {
		snprintf(err, errsize, "cannot give %s to %s: %s", path, p->name,
			 strerror(walk_errno ? walk_errno : errno));
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
