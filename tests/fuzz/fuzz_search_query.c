/*
 * fuzz_search_query: the search query language (src/store/search.h).
 * Checked: sg_search_parse never crashes on any input; every query it
 * accepts runs against a real FTS5 index without an SQL error (the FTS5
 * expression it builds is always well-formed, whatever quotes, operators
 * and bytes the input holds).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "store/search.h"

static struct sg_search *idx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static char dir[] = "/tmp/sg-fuzz-search-XXXXXX";
	const char *err = NULL;
	if (mkdtemp(dir) == NULL || sg_search_open(dir, &idx, &err) < 0)
		abort();
	struct sg_search_doc d = {.inbox = "a@example.test", .id = "1.0123456789abcdef",
				  .received_ms = 1700000000000, .subject = "Hello \"world\" café",
				  .sender = "x@y.test", .rcpts = "a+tag@example.test",
				  .body = "the quick brown fox", .attachments = "r.pdf",
				  .has_attachment = true, .tags = "tag"};
	if (sg_search_put(idx, &d, &err) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2 * SG_SEARCH_Q_MAX)
		return 0;
	char *q = malloc(size + 1);
	memcpy(q, data, size);
	q[size] = '\0';
	struct sg_search_parsed p;
	const char *err = NULL;
	if (sg_search_parse(q, &p, &err) == 0) {
		const char *const inboxes[1] = {"a@example.test"};
		struct sg_search_query sq = {.parsed = &p, .inboxes = inboxes, .ninboxes = 1, .limit = 10};
		struct sg_search_hit *hits = NULL;
		size_t n = 0, total = 0;
		if (sg_search_run(idx, &sq, &hits, &n, &total, &err) < 0) {
			fprintf(stderr, "query %s: %s\n", q, err);
			abort();
		}
		free(hits);
	}
	sg_search_parsed_free(&p);
	free(q);
	return 0;
}
