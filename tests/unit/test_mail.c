/* Maildir capture store: commit layout and modes, several inboxes, the read
 * side (list newest first, read, delete, delete all) and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/util.h"
#include "store/mail.h"

struct fx {
	char dir[64];
	struct sg_mail_store *s;
};

static int setup(void **state)
{
	struct fx *f = sg_calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/sg-test-mail-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	const char *err = NULL;
	if (sg_mail_open(f->dir, &f->s, &err) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sg_mail_close(&f->s);
	char *cmd = sg_asprintf("rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	free(cmd);
	free(f);
	return 0;
}

static size_t count_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return (size_t)-1;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static size_t count_in(struct fx *f, const char *login, const char *sub)
{
	char *p = sg_asprintf("%s/mail/%s/%s", f->dir, login, sub);
	size_t n = count_files(p);
	free(p);
	return n;
}

static void bufs(struct sg_buf *prefix, struct sg_buf *body, const char *a, const char *b)
{
	sg_buf_init(prefix, 1 << 20);
	sg_buf_init(body, 1 << 20);
	sg_buf_append_str(prefix, a);
	sg_buf_append_str(body, b);
}

static void test_commit_one(void **state)
{
	struct fx *f = *state;
	struct sg_buf prefix, body;
	bufs(&prefix, &body, "Received: from test\r\n", "Subject: hi\r\n\r\nbody\r\n");
	const char *logins[] = {"alice"};
	char id[SG_MAIL_ID_MAX];
	const char *err = NULL;
	assert_int_equal(sg_mail_commit(f->s, logins, 1, &prefix, &body, id, &err), 0);
	assert_true(sg_mail_id_valid(id));
	assert_int_equal(count_in(f, "alice", "new"), 1);
	assert_int_equal(count_in(f, "alice", "tmp"), 0);
	assert_int_equal(count_in(f, "alice", "cur"), 0);

	struct stat st;
	char *inbox = sg_asprintf("%s/mail/alice", f->dir);
	assert_int_equal(stat(inbox, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(inbox);
	char *path = sg_mail_path(f->s, "alice", id);
	assert_non_null(path);
	char *want = sg_asprintf("%s/mail/alice/new/%s", f->dir, id);
	assert_string_equal(path, want);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, prefix.len + body.len);
	free(want);
	free(path);

	struct sg_buf out;
	sg_buf_init(&out, 1 << 20);
	assert_int_equal(sg_mail_read(f->s, "alice", id, &out, &err), 1);
	assert_string_equal(sg_buf_str(&out),
			    "Received: from test\r\nSubject: hi\r\n\r\nbody\r\n");
	sg_buf_free(&out);
	/* a too-small buffer is an error, not a truncated message */
	sg_buf_init(&out, 10);
	assert_int_equal(sg_mail_read(f->s, "alice", id, &out, &err), -1);
	sg_buf_free(&out);

	/* a second message gets another id */
	char id2[SG_MAIL_ID_MAX];
	assert_int_equal(sg_mail_commit(f->s, logins, 1, NULL, &body, id2, &err), 0);
	assert_string_not_equal(id, id2);
	assert_int_equal(count_in(f, "alice", "new"), 2);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
}

static void test_commit_many(void **state)
{
	struct fx *f = *state;
	struct sg_buf prefix, body;
	bufs(&prefix, &body, "X-Test: 1\r\n", "\r\nhello\r\n");
	const char *logins[] = {"bob", "carol@example.org", "dave", "bob"};
	char id[SG_MAIL_ID_MAX];
	const char *err = NULL;
	assert_int_equal(sg_mail_commit(f->s, logins, 4, &prefix, &body, id, &err), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(count_in(f, logins[i], "new"), 1);
		assert_int_equal(count_in(f, logins[i], "tmp"), 0);
		struct sg_buf out;
		sg_buf_init(&out, 4096);
		assert_int_equal(sg_mail_read(f->s, logins[i], id, &out, &err), 1);
		assert_string_equal(sg_buf_str(&out), "X-Test: 1\r\n\r\nhello\r\n");
		sg_buf_free(&out);
	}
	/* deleting from one inbox leaves the others */
	assert_int_equal(sg_mail_delete(f->s, "bob", id, &err), 1);
	assert_int_equal(sg_mail_delete(f->s, "bob", id, &err), 0);
	assert_int_equal(count_in(f, "dave", "new"), 1);
	struct sg_buf out;
	sg_buf_init(&out, 4096);
	assert_int_equal(sg_mail_read(f->s, "dave", id, &out, &err), 1);
	assert_int_equal(sg_mail_read(f->s, "bob", id, &out, &err), 0);
	sg_buf_free(&out);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	struct sg_buf prefix, body;
	bufs(&prefix, &body, "", "x");
	char id[SG_MAIL_ID_MAX];
	const char *err = NULL;
	static const char *const bad[] = {"..", ".", "a/b", "", "a b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *logins[] = {"ok", bad[i]};
		assert_int_equal(sg_mail_commit(f->s, logins, 2, &prefix, &body, id, &err), -1);
		assert_non_null(err);
	}
	assert_int_equal(sg_mail_commit(f->s, NULL, 0, &prefix, &body, id, &err), -1);
	/* nothing was delivered by the refused commits */
	assert_int_equal(count_in(f, "ok", "new"), (size_t)-1); /* not even created */

	assert_false(sg_mail_id_valid("../../etc/passwd"));
	assert_false(sg_mail_id_valid("123.abc"));
	assert_false(sg_mail_id_valid("123.0123456789ABCDEF"));
	assert_false(sg_mail_id_valid(".0123456789abcdef"));
	assert_false(sg_mail_id_valid("123.0123456789abcdef0"));
	assert_true(sg_mail_id_valid("123.0123456789abcdef"));
	assert_null(sg_mail_path(f->s, "..", "123.0123456789abcdef"));
	assert_null(sg_mail_path(f->s, "alice", "../x"));
	errno = 0;
	assert_int_equal(sg_mail_open_message(f->s, "alice", "1.0000000000000000"), -1);
	assert_int_equal(errno, ENOENT);

	struct sg_mail_store *s = NULL;
	assert_int_equal(sg_mail_open("/nonexistent-sg-dir", &s, &err), -1);
	assert_null(s);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
}

static void test_list_delete_all(void **state)
{
	struct fx *f = *state;
	struct sg_buf prefix, body;
	bufs(&prefix, &body, "", "m");
	const char *logins[] = {"erin"};
	char ids[5][SG_MAIL_ID_MAX];
	const char *err = NULL;
	struct sg_mail_entry *e = NULL;
	size_t n = 99;
	/* an inbox never created is empty */
	assert_int_equal(sg_mail_list(f->s, "erin", &e, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(e);
	/* back to back, within one kernel tick: still listed newest first, in
	 * commit order (each message's mtime is a distinct nanosecond stamp) */
	for (int i = 0; i < 5; i++)
		assert_int_equal(sg_mail_commit(f->s, logins, 1, &prefix, &body, ids[i], &err), 0);
	/* a message moved to cur/ with flags by a mail client is still found */
	char *from = sg_asprintf("%s/mail/erin/new/%s", f->dir, ids[1]);
	char *to = sg_asprintf("%s/mail/erin/cur/%s:2,S", f->dir, ids[1]);
	assert_int_equal(rename(from, to), 0);
	free(from);
	free(to);
	/* a stray file is ignored */
	char *stray = sg_asprintf("%s/mail/erin/new/not-a-message", f->dir);
	FILE *fp = fopen(stray, "w");
	assert_non_null(fp);
	fclose(fp);

	assert_int_equal(sg_mail_list(f->s, "erin", &e, &n, &err), 0);
	assert_int_equal(n, 5);
	for (int i = 0; i < 5; i++) {
		assert_string_equal(e[i].id, ids[4 - i]);
		assert_int_equal(e[i].size, 1);
	}
	free(e);
	struct sg_buf out;
	sg_buf_init(&out, 100);
	assert_int_equal(sg_mail_read(f->s, "erin", ids[1], &out, &err), 1);
	assert_string_equal(sg_buf_str(&out), "m");
	sg_buf_free(&out);
	assert_int_equal(sg_mail_delete(f->s, "erin", ids[1], &err), 1);
	assert_int_equal(sg_mail_delete(f->s, "erin", ids[2], &err), 1);
	assert_int_equal(sg_mail_list(f->s, "erin", &e, &n, &err), 0);
	assert_int_equal(n, 3);
	free(e);

	size_t deleted = 0;
	assert_int_equal(sg_mail_delete_all(f->s, "erin", &deleted, &err), 0);
	assert_int_equal(deleted, 3);
	assert_int_equal(sg_mail_list(f->s, "erin", &e, &n, &err), 0);
	assert_int_equal(n, 0);
	free(e);
	assert_int_equal(access(stray, F_OK), 0); /* not ours: left alone */
	free(stray);
	assert_int_equal(sg_mail_delete_all(f->s, "nobody-here", &deleted, &err), 0);
	assert_int_equal(deleted, 0);
	assert_int_equal(sg_mail_list(f->s, "a/b", &e, &n, &err), -1);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_many, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_delete_all, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
