/* The reply table: every entry present, codes and enhanced codes agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/reply.h"

static void test_table(void **state)
{
	for (int id = 0; id < SG_R_COUNT; id++) {
		const struct sg_reply *r = sg_reply_get((enum sg_reply_id)id);
		assert_true(r->code >= 200 && r->code < 600);
		assert_non_null(r->text);
		assert_non_null(r->rule);
		if (r->enhanced != NULL) {
			/* RFC 3463: the class digit matches the reply's first digit */
			assert_int_equal(r->enhanced[0] - '0', (int)(r->code / 100));
			assert_int_equal(r->enhanced[1], '.');
		}
	}
}

static void test_protocol_md(void **state)
{
	/* The decisions of ../shared/PROTOCOL.md */
	assert_int_equal(sg_reply_get(SG_R_AUTH_BAD)->code, 535);
	assert_string_equal(sg_reply_get(SG_R_AUTH_BAD)->enhanced, "5.7.8");
	assert_string_equal(sg_reply_get(SG_R_AUTH_BAD_NTLM)->enhanced, "5.7.3");
	assert_string_equal(sg_reply_get(SG_R_AUTH_ENCRYPT)->enhanced, "5.7.11");
	assert_int_equal(sg_reply_get(SG_R_AUTH_ENCRYPT)->code, 538);
	assert_string_equal(sg_reply_get(SG_R_AUTH_UNKNOWN_MECH)->enhanced, "5.5.4");
	assert_string_equal(sg_reply_get(SG_R_AUTH_LINE_LONG)->enhanced, "5.5.6");
	assert_int_equal(sg_reply_get(SG_R_RELAY_DENIED)->code, 554);
	assert_int_equal(sg_reply_get(SG_R_SENDER_NOT_OWNED)->code, 553);
	assert_int_equal(sg_reply_get(SG_R_TOO_MANY_RCPTS)->code, 452);
	assert_int_equal(sg_reply_get(SG_R_TOO_BIG)->code, 552);
	assert_string_equal(sg_reply_get(SG_R_TOO_BIG)->enhanced, "5.3.4");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_protocol_md),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
