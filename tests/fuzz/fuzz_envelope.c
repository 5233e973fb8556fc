/*
 * fuzz_envelope: the relay queue's envelope file parser (src/relay/queue.h),
 * which reads files back after a crash, so it must survive any bytes.
 * Checks: a parse either fails with a message or yields an envelope within
 * the header's contract (valid_len <= size and at a line end, 1 to
 * SG_QUEUE_MAX_RCPTS recipients, a valid id, states and statuses agreeing,
 * "done" only after a final state); the header block formatted from a parsed
 * envelope parses again to the same header; applying the records after the
 * header to that fresh parse reaches the same recipient states.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "relay/queue.h"

static void check(const struct sg_envelope *e, size_t size, const uint8_t *data)
{
	if (e->valid_len > size || (e->valid_len > 0 && data[e->valid_len - 1] != '\n'))
		sg_fuzz_fail("envelope: valid_len %zu of %zu", e->valid_len, size);
	if (e->nrcpts == 0 || e->nrcpts > SG_QUEUE_MAX_RCPTS)
		sg_fuzz_fail("envelope: %zu recipients", e->nrcpts);
	if (!sg_queue_id_valid(e->id) || e->from == NULL || e->login == NULL)
		sg_fuzz_fail("envelope: header incomplete");
	for (size_t i = 0; i < e->nrcpts; i++) {
		const struct sg_qrcpt *r = &e->rcpts[i];
		if (r->addr == NULL)
			sg_fuzz_fail("envelope: rcpt %zu without address", i);
		if (r->done && r->state == SG_QR_PENDING)
			sg_fuzz_fail("envelope: rcpt %zu done while pending", i);
		if (r->state == SG_QR_DELIVERED && strcmp(r->status, "2.0.0") != 0)
			sg_fuzz_fail("envelope: delivered with %s", r->status);
		/* failed: 5.x.x, or 4.x.x when a deferral expired (4.4.7, RFC 3464 2.3.4) */
		if (r->state == SG_QR_FAILED && r->status[0] != '5' && r->status[0] != '4')
			sg_fuzz_fail("envelope: failed with %s", r->status);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_envelope e;
	sg_envelope_init(&e);
	const char *err = NULL;
	if (sg_envelope_parse((const char *)data, size, &e, &err) < 0) {
		if (err == NULL)
			sg_fuzz_fail("envelope: error without a message");
		return 0;
	}
	check(&e, size, data);
	/* the header again, then the records on top */
	struct sg_buf b;
	sg_buf_init(&b, SG_QUEUE_ENV_MAX);
	sg_envelope_format(&e, &b);
	struct sg_envelope p;
	sg_envelope_init(&p);
	if (sg_envelope_parse((const char *)b.data, b.len, &p, &err) < 0)
		sg_fuzz_fail("envelope: own header refused: %s", err);
	if (p.nrcpts != e.nrcpts || strcmp(p.id, e.id) != 0 || strcmp(p.from, e.from) != 0 ||
	    strcmp(p.login, e.login) != 0 || p.ret != e.ret || p.body != e.body ||
	    p.is_dsn != e.is_dsn || (p.envid == NULL) != (e.envid == NULL) ||
	    (p.envid != NULL && strcmp(p.envid, e.envid) != 0))
		sg_fuzz_fail("envelope: header round trip differs");
	for (size_t i = 0; i < p.nrcpts; i++)
		if (strcmp(p.rcpts[i].addr, e.rcpts[i].addr) != 0 ||
		    p.rcpts[i].notify != e.rcpts[i].notify ||
		    (p.rcpts[i].orcpt == NULL) != (e.rcpts[i].orcpt == NULL))
			sg_fuzz_fail("envelope: rcpt %zu round trip differs", i);
	/* the records: where the header block ends in the input */
	const char *d = (const char *)data;
	const char *end = NULL;
	for (size_t o = 0; o + 2 <= size; o++)
		if (d[o] == '.' && d[o + 1] == '\n' && (o == 0 || d[o - 1] == '\n')) {
			end = d + o + 2;
			break;
		}
	if (end == NULL)
		sg_fuzz_fail("envelope: parsed without a header end");
	size_t rl = e.valid_len - (size_t)(end - d);
	if (sg_envelope_apply(&p, end, rl, &err) < 0)
		sg_fuzz_fail("envelope: records refused on replay: %s", err);
	for (size_t i = 0; i < p.nrcpts; i++)
		if (p.rcpts[i].state != e.rcpts[i].state || p.rcpts[i].done != e.rcpts[i].done)
			sg_fuzz_fail("envelope: rcpt %zu state differs on replay", i);
	if (p.attempts != e.attempts || p.warned != e.warned)
		sg_fuzz_fail("envelope: attempts differ on replay");
	sg_envelope_free(&p);
	sg_envelope_free(&e);
	sg_buf_free(&b);
	return 0;
}
