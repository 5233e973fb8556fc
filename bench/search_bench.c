/*
 * search_bench: how long the full-text index (src/store/search.c) takes to
 * answer typical queries over an inbox of N messages. Builds an index of N
 * synthetic messages (a vocabulary of 5,000 words, Zipf-like frequencies,
 * 200 senders, 20 % with an attachment) in a temporary directory, then runs
 * each query ROUNDS times and prints the median and worst wall time.
 *
 *   search_bench N [N...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "store/search.h"

#define VOCAB 5000
#define ROUNDS 15

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static char words[VOCAB][12];

static const char *word(void)
{
	/* skewed: low indexes are common, high ones rare */
	uint64_t a = next() % VOCAB, b = next() % VOCAB;
	return words[a < b ? a : b];
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void run(size_t n)
{
	char dir[] = "/tmp/sg-search-bench-XXXXXX";
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	struct sg_search *s = NULL;
	const char *err = NULL;
	if (sg_search_open(dir, &s, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	double t0 = now_ms();
	sg_search_batch(s, true);
	const char *inbox = "bench@example.test";
	char body[4096], subject[256], sender[128], rcpts[128], id[64];
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		for (int w = 0; w < 150 && k + 20 < sizeof(body); w++)
			k += (size_t)snprintf(body + k, sizeof(body) - k, "%s ", word());
		snprintf(subject, sizeof(subject), "%s %s %s", word(), word(), word());
		snprintf(sender, sizeof(sender), "Sender %zu <sender%zu@host%zu.test>", i % 200, i % 200,
			 i % 17);
		snprintf(rcpts, sizeof(rcpts), "bench@example.test");
		snprintf(id, sizeof(id), "%zu.%016zx", 1700000000 + i, i);
		bool att = next() % 5 == 0;
		struct sg_search_doc d = {
			.inbox = inbox, .id = id, .received_ms = (int64_t)(1700000000000 + i * 1000),
			.subject = subject, .sender = sender, .rcpts = rcpts, .body = body,
			.attachments = att ? "report.pdf" : "", .has_attachment = att,
		};
		if (i % 5000 == 4999) {
			sg_search_batch(s, false);
			sg_search_batch(s, true);
		}
		if (sg_search_put(s, &d, &err) < 0) {
			fprintf(stderr, "put: %s\n", err);
			exit(1);
		}
	}
	sg_search_batch(s, false);
	double built = now_ms() - t0;
	printf("inbox of %zu messages (index built in %.1f s)\n", n, built / 1000);
	char q1[64], q2[64], q3[96], q4[96];
	snprintf(q1, sizeof(q1), "%s", words[10]);
	snprintf(q2, sizeof(q2), "%s", words[4000]);
	snprintf(q3, sizeof(q3), "from:sender7@host7.test %s", words[50]);
	snprintf(q4, sizeof(q4), "\"%s %s\" -%s has:attachment", words[1], words[2], words[3]);
	const char *queries[] = {q1, q2, q3, q4, "is:unread after:2023-11-15", ""};
	const char *names[] = {"common word", "rare word", "from: + word", "phrase, negation, has:",
			       "is:unread after:", "everything (newest 50)"};
	const char *const inboxes[1] = {inbox};
	for (size_t qi = 0; qi < sizeof(queries) / sizeof(queries[0]); qi++) {
		double t[ROUNDS];
		size_t total = 0;
		for (int r = 0; r < ROUNDS; r++) {
			struct sg_search_parsed p;
			if (sg_search_parse(queries[qi], &p, &err) < 0) {
				fprintf(stderr, "parse: %s\n", err);
				exit(1);
			}
			struct sg_search_query q = {.parsed = &p, .inboxes = inboxes, .ninboxes = 1, .limit = 51};
			struct sg_search_hit *hits = NULL;
			size_t nh = 0;
			double a = now_ms();
			if (sg_search_run(s, &q, &hits, &nh, &total, &err) < 0) {
				fprintf(stderr, "run: %s\n", err);
				exit(1);
			}
			t[r] = now_ms() - a;
			free(hits);
			sg_search_parsed_free(&p);
		}
		qsort(t, ROUNDS, sizeof(double), cmp_d);
		printf("  %-26s %8zu matches  median %7.2f ms  worst %7.2f ms\n", names[qi], total,
		       t[ROUNDS / 2], t[ROUNDS - 1]);
	}
	sg_search_close(&s);
	char *cmd = sg_asprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	free(cmd);
}

int main(int argc, char **argv)
{
	for (int i = 0; i < VOCAB; i++) {
		uint64_t x = next();
		int len = 3 + (int)(x % 7);
		for (int k = 0; k < len; k++)
			words[i][k] = (char)('a' + (next() % 26));
		words[i][len] = '\0';
	}
	if (argc < 2) {
		fprintf(stderr, "usage: search_bench N [N...]\n");
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		uint64_t n;
		if (sg_parse_u64(argv[i], 1, 10000000, &n) < 0)
			return 2;
		run((size_t)n);
	}
	return 0;
}
