/*
 * privs.h: privilege separation for a server started as root.
 *
 * `serve` started as root loads its TLS key and binds its listeners, hands the
 * data directory to the unprivileged user (configurable, default "smtpgate";
 * it must exist: no fallback to a shared account such as nobody, whose other
 * processes could then read the keys), then drops to it before reading
 * any client byte, and refuses to go on if root could be regained. Command-line
 * tools run by root on a data directory owned by that user switch to it
 * first, so every file in the directory keeps one owner.
 */
#ifndef SG_PRIVS_H
#define SG_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct sg_privs {
	uid_t uid;
	gid_t gid;
	char name[64];
};

/* The one command that creates the service user (%s = its name). */
#define SG_PRIVS_USERADD_FMT \
	"useradd --system --home-dir /var/lib/smtpgate --no-create-home --shell /usr/sbin/nologin %s"

/* Resolve the user to run as; refuses uid 0, a missing user (naming the
 * command that creates it) and shared accounts (nobody). */
int sg_privs_resolve(const char *user, struct sg_privs *p, char *err, size_t errsize);
/* Give every entry of the tree that is not already theirs to p. The tree may
 * be changed by p while this runs: it descends by directory descriptors
 * (openat O_NOFOLLOW|O_DIRECTORY) and changes owners through descriptors
 * (fchownat AT_EMPTY_PATH), never by path; symlinks, files with several
 * hard links and other file systems are left alone. */
int sg_privs_chown_tree(const char *path, const struct sg_privs *p, char *err, size_t errsize);
/* setgroups, setgid, setuid; then check that root cannot be regained. */
int sg_privs_drop(const struct sg_privs *p, char *err, size_t errsize);
/* No core dumps: secrets live in this process's memory. */
void sg_privs_no_core_dumps(void);
/* When root and dir belongs to someone else: become its owner. 0 or -1. */
int sg_privs_become_owner(const char *dir, char *err, size_t errsize);

#endif
