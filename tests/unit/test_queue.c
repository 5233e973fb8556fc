/* The relay queue (src/relay/queue.h): the envelope format round trip and
 * its refusals, torn appends, commit layout and durability rules, removal,
 * and the start-up scan that rebuilds the schedule and removes debris. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/util.h"
#include "relay/queue.h"

static void sample(struct sg_envelope *e)
{
	sg_envelope_init(e);
	sg_queue_new_id(e->id);
	e->arrival = 1764678000;
	e->from = sg_strdup("alice@example.test");
	e->login = sg_strdup("alice");
	e->body = SG_BODY_8BITMIME;
	e->ret = SG_RET_HDRS;
	e->envid = sg_strdup("QQ314159 with space%");
	sg_envelope_add_rcpt(e, "bob@remote.test", SG_NOTIFY_FAILURE | SG_NOTIFY_DELAY,
			     "rfc822;bob@remote.test");
	sg_envelope_add_rcpt(e, "\"odd -\"@remote.test", 0, NULL);
	sg_envelope_add_rcpt(e, "-", SG_NOTIFY_NEVER, NULL);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct sg_envelope e, p;
	sample(&e);
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	sg_envelope_format(&e, &b);
	sg_qrec_attempt(&b, 1764678100);
	sg_qrec_result(&b, 'D', 0, 1764678100, NULL, "mx.remote.test", "smtp; 250 2.0.0 ok");
	sg_qrec_result(&b, 'T', 1, 1764678100, "4.4.1", NULL, "smtp; 451 try later");
	sg_qrec_result(&b, 'F', 2, 1764678100, "5.1.1", "mx", "smtp; 550 5.1.1 no such user");
	sg_qrec_done(&b, 2);
	sg_qrec_warned(&b, 1764678200);
	const char *err = NULL;
	sg_envelope_init(&p);
	assert_int_equal(sg_envelope_parse((const char *)b.data, b.len, &p, &err), 0);
	assert_string_equal(p.id, e.id);
	assert_string_equal(p.from, "alice@example.test");
	assert_string_equal(p.login, "alice");
	assert_string_equal(p.envid, "QQ314159 with space%");
	assert_int_equal(p.body, SG_BODY_8BITMIME);
	assert_int_equal(p.ret, SG_RET_HDRS);
	assert_int_equal(p.nrcpts, 3);
	assert_string_equal(p.rcpts[1].addr, "\"odd -\"@remote.test");
	assert_string_equal(p.rcpts[2].addr, "-");
	assert_int_equal(p.rcpts[0].notify, SG_NOTIFY_FAILURE | SG_NOTIFY_DELAY);
	assert_int_equal(p.rcpts[2].notify, SG_NOTIFY_NEVER);
	assert_string_equal(p.rcpts[0].orcpt, "rfc822;bob@remote.test");
	assert_null(p.rcpts[1].orcpt);
	assert_int_equal(p.rcpts[0].state, SG_QR_DELIVERED);
	assert_int_equal(p.rcpts[1].state, SG_QR_PENDING);
	assert_string_equal(p.rcpts[1].status, "4.4.1");
	assert_string_equal(p.rcpts[1].diag, "smtp; 451 try later");
	assert_int_equal(p.rcpts[2].state, SG_QR_FAILED);
	assert_true(p.rcpts[2].done);
	assert_false(p.rcpts[0].done);
	assert_int_equal(p.attempts, 1);
	assert_int_equal(p.last_attempt, 1764678100);
	assert_true(p.warned);
	assert_int_equal(sg_envelope_pending(&p), 1);
	assert_false(sg_envelope_finished(&p));
	assert_int_equal(p.valid_len, b.len);
	/* the null sender */
	free(e.from);
	e.from = sg_strdup("");
	sg_buf_reset(&b);
	sg_envelope_format(&e, &b);
	sg_envelope_free(&p);
	sg_envelope_init(&p);
	assert_int_equal(sg_envelope_parse((const char *)b.data, b.len, &p, &err), 0);
	assert_string_equal(p.from, "");
	sg_envelope_free(&p);
	sg_envelope_free(&e);
	sg_buf_free(&b);
}

static void test_torn_tail(void **state)
{
	(void)state;
	struct sg_envelope e, p;
	sample(&e);
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	sg_envelope_format(&e, &b);
	size_t header = b.len;
	sg_buf_append_str(&b, "D 0 17646781");  /* no LF: cut by a crash */
	const char *err = NULL;
	sg_envelope_init(&p);
	assert_int_equal(sg_envelope_parse((const char *)b.data, b.len, &p, &err), 0);
	assert_int_equal(p.valid_len, header);
	assert_int_equal(p.rcpts[0].state, SG_QR_PENDING);
	sg_envelope_free(&p);
	sg_envelope_free(&e);
	sg_buf_free(&b);
}

static void expect_bad(const char *records)
{
	struct sg_envelope e, p;
	sample(&e);
	struct sg_buf b;
	sg_buf_init(&b, 1 << 20);
	sg_envelope_format(&e, &b);
	sg_buf_append_str(&b, records);
	const char *err = NULL;
	sg_envelope_init(&p);
	if (sg_envelope_parse((const char *)b.data, b.len, &p, &err) == 0)
		fail_msg("accepted: %s", records);
	assert_non_null(err);
	sg_envelope_free(&e);
	sg_buf_free(&b);
}

static void test_refusals(void **state)
{
	(void)state;
	expect_bad("D 3 1 - -\n");             /* no such recipient */
	expect_bad("D -1 1 - -\n");
	expect_bad("N 0\n");                   /* done before a final state */
	expect_bad("D 0 1 - -\nD 0 1 - -\n");  /* final twice */
	expect_bad("F 0 1 2.1.1 - -\n");       /* a failure with a success status */
	expect_bad("T 0 1 5.1.1 - -\n");
	expect_bad("F 0 1 5.1 - -\n");
	expect_bad("F 0 1 5.1.1000 - -\n");
	expect_bad("X 1\n");
	expect_bad("A\n");
	expect_bad("A  1\n");
	expect_bad("A 1 \n");
	expect_bad("A x\n");
	expect_bad("D 0 1 %zz -\n");
	expect_bad("D 0 1 %00 -\n");
	expect_bad("rcpt x - -\n");           /* header after the end */
	expect_bad("\n");
	const char *err = NULL;
	struct sg_envelope p;
	const char *bad[] = {
		"",
		"smtpgate-queue 2\n",
		"smtpgate-queue 1\nid 1.0123456789abcdef\n.\n",
		"smtpgate-queue 1\nid x\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sg_envelope_init(&p);
		assert_int_equal(sg_envelope_parse(bad[i], strlen(bad[i]), &p, &err), -1);
	}
}

static void test_notify(void **state)
{
	(void)state;
	unsigned n;
	assert_int_equal(sg_notify_parse("SUCCESS,FAILURE", &n), 0);
	assert_int_equal(n, SG_NOTIFY_SUCCESS | SG_NOTIFY_FAILURE);
	assert_int_equal(sg_notify_parse("never", &n), 0);
	assert_int_equal(n, SG_NOTIFY_NEVER);
	assert_int_equal(sg_notify_parse("NEVER,DELAY", &n), -1);
	assert_int_equal(sg_notify_parse("SUCCESS,", &n), -1);
	assert_int_equal(sg_notify_parse("", &n), -1);
	assert_int_equal(sg_notify_parse("SOMETIMES", &n), -1);
	char b[40];
	assert_string_equal(sg_notify_str(SG_NOTIFY_SUCCESS | SG_NOTIFY_DELAY, b, sizeof(b)),
			    "SUCCESS,DELAY");
	assert_true(sg_queue_id_valid("1764678000.0123456789abcdef"));
	assert_false(sg_queue_id_valid("1764678000.0123456789abcdeF"));
	assert_false(sg_queue_id_valid("../1.0123456789abcdef"));
	assert_false(sg_queue_id_valid("1764678000.0123456789abcdef0"));
}

struct fx {
	char dir[64];
	struct sg_queue *q;
};

static int setup(void **state)
{
	struct fx *f = sg_calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/sg-test-queue-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	const char *err = NULL;
	if (sg_queue_open(f->dir, &f->q, &err) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	sg_queue_close(&f->q);
	char *cmd = sg_asprintf("rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	free(cmd);
	free(f);
	return 0;
}

static int collect(const char *id, void *arg)
{
	struct sg_buf *b = arg;
	sg_buf_printf(b, "%s\n", id);
	return 0;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_commit_load_append_remove(void **state)
{
	struct fx *f = *state;
	struct sg_envelope e, p;
	sample(&e);
	struct sg_buf prefix, body;
	sg_buf_init(&prefix, 1024);
	sg_buf_init(&body, 1024);
	sg_buf_append_str(&prefix, "Received: from x\r\n");
	sg_buf_append_str(&body, "Subject: hi\r\n\r\nbody\r\n");
	const char *err = NULL;
	assert_int_equal(sg_queue_commit(f->q, &e, &prefix, &body, &err), 0);
	assert_int_equal(e.size, prefix.len + body.len);
	char *mp = sg_asprintf("%s/queue/msg/%s", f->dir, e.id);
	struct stat st;
	assert_int_equal(stat(mp, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal((size_t)st.st_size, e.size);
	struct sg_buf m;
	sg_buf_init(&m, 1 << 20);
	assert_int_equal(sg_queue_read_msg(f->q, e.id, &m, &err), 0);
	assert_int_equal(m.len, e.size);
	assert_memory_equal(m.data, "Received: from x\r\nSubject: hi\r\n\r\nbody\r\n", m.len);
	/* an attempt */
	struct sg_buf rec;
	sg_buf_init(&rec, 4096);
	sg_qrec_attempt(&rec, 100);
	sg_qrec_result(&rec, 'D', 0, 100, NULL, "relay", "smtp; 250 ok");
	assert_int_equal(sg_queue_append(f->q, e.id, &rec, &err), 0);
	/* a torn append after it: cut off by load */
	char *ep = sg_asprintf("%s/queue/env/%s", f->dir, e.id);
	int fd = open(ep, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "F 1 100 5.", 10), 10);
	close(fd);
	assert_int_equal(sg_queue_load(f->q, e.id, &p, true, &err), 1);
	assert_int_equal(p.attempts, 1);
	assert_int_equal(p.rcpts[0].state, SG_QR_DELIVERED);
	assert_int_equal(p.rcpts[1].state, SG_QR_PENDING);
	assert_int_equal(stat(ep, &st), 0);
	assert_int_equal((size_t)st.st_size, p.valid_len);
	sg_envelope_free(&p);
	/* the next append lands on a clean line */
	sg_buf_reset(&rec);
	sg_qrec_result(&rec, 'F', 1, 101, "5.1.1", NULL, "smtp; 550 no");
	assert_int_equal(sg_queue_append(f->q, e.id, &rec, &err), 0);
	assert_int_equal(sg_queue_load(f->q, e.id, &p, true, &err), 1);
	assert_int_equal(p.rcpts[1].state, SG_QR_FAILED);
	sg_envelope_free(&p);
	/* unknown ids are absent, never a path */
	assert_int_equal(sg_queue_load(f->q, "../../etc/passwd", &p, true, &err), 0);
	assert_int_equal(sg_queue_load(f->q, "1.0123456789abcdef", &p, true, &err), 0);
	/* debris: a message without envelope, a tmp file */
	char *orphan = sg_asprintf("%s/queue/msg/1.0123456789abcdef", f->dir);
	char *tmpf = sg_asprintf("%s/queue/tmp/1.0123456789abcdef.env", f->dir);
	write_file(orphan, "x");
	write_file(tmpf, "x");
	struct sg_buf ids;
	sg_buf_init(&ids, 4096);
	assert_int_equal(sg_queue_scan(f->q, collect, &ids, &err), 0);
	char want[64];
	snprintf(want, sizeof(want), "%s\n", e.id);
	assert_string_equal(sg_buf_str(&ids), want);
	assert_int_equal(stat(orphan, &st), -1);
	assert_int_equal(stat(tmpf, &st), -1);
	assert_int_equal(stat(mp, &st), 0);
	/* removal */
	assert_int_equal(sg_queue_remove(f->q, e.id, &err), 0);
	assert_int_equal(stat(mp, &st), -1);
	assert_int_equal(stat(ep, &st), -1);
	sg_buf_reset(&ids);
	assert_int_equal(sg_queue_scan(f->q, collect, &ids, &err), 0);
	assert_int_equal(ids.len, 0);
	/* a corrupt envelope is refused and can be put aside */
	sample(&p);
	assert_int_equal(sg_queue_commit(f->q, &p, &prefix, NULL, &err), 0);
	char *cp = sg_asprintf("%s/queue/env/%s", f->dir, p.id);
	write_file(cp, "smtpgate-queue 1\nbogus\n");
	struct sg_envelope c;
	assert_int_equal(sg_queue_load(f->q, p.id, &c, true, &err), -1);
	sg_queue_quarantine(f->q, p.id);
	assert_int_equal(stat(cp, &st), -1);
	char *qp = sg_asprintf("%s/queue/corrupt/%s", f->dir, p.id);
	assert_int_equal(stat(qp, &st), 0);
	sg_envelope_free(&p);
	free(cp);
	free(qp);
	free(orphan);
	free(tmpf);
	free(mp);
	free(ep);
	sg_buf_free(&ids);
	sg_buf_free(&rec);
	sg_buf_free(&m);
	sg_buf_free(&prefix);
	sg_buf_free(&body);
	sg_envelope_free(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_notify),
		cmocka_unit_test_setup_teardown(test_commit_load_append_remove, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
