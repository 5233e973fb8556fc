/* Metrics: names, index lookups (unknown -> "other"), the session duration
 * histogram (cumulative buckets, sum, count) and the Prometheus text
 * rendering (HELP and TYPE before every family). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

static struct sg_metrics m;

static void test_render(void **state)
{
	(void)state;
	const char *listeners[] = {"mx", "submission"};
	sg_metrics_init(&m, listeners, 2);
	size_t mx = sg_metrics_listener_index(&m, "mx");
	size_t other = sg_metrics_listener_index(&m, "nope");
	assert_int_equal(mx, 0);
	assert_string_equal(m.listener_names[other], "other");
	size_t plain = sg_metrics_mech_index(&m, "plain");
	assert_string_equal(m.mech_names[plain], "PLAIN");
	assert_string_equal(m.mech_names[sg_metrics_mech_index(&m, "X-UNKNOWN")], "other");

	atomic_fetch_add(&m.connections_total[mx], 3);
	atomic_fetch_add(&m.connections_current, 1);
	atomic_fetch_add(&m.auth[plain][SG_MA_FAIL], 2);
	atomic_fetch_add(&m.auth[plain][SG_MA_OK], 5);
	atomic_fetch_add(&m.messages_accepted, 4);
	atomic_fetch_add(&m.messages_rejected[SG_MR_RELAY], 1);
	atomic_fetch_add(&m.bytes_stored, 12345);
	sg_metrics_session_done(&m, 5);      /* <= 0.01 s */
	sg_metrics_session_done(&m, 700);    /* <= 1 s */
	sg_metrics_session_done(&m, 999999); /* +Inf */

	char *t = sg_metrics_render(&m);
	assert_non_null(strstr(t, "# HELP smtpgate_connections_total "));
	assert_non_null(strstr(t, "# TYPE smtpgate_connections_total counter\n"));
	assert_non_null(strstr(t, "smtpgate_connections_total{listener=\"mx\"} 3\n"));
	assert_non_null(strstr(t, "smtpgate_connections_current 1\n"));
	assert_non_null(strstr(t, "smtpgate_auth_attempts_total{mechanism=\"PLAIN\",result=\"fail\"} 2\n"));
	assert_non_null(strstr(t, "smtpgate_auth_attempts_total{mechanism=\"PLAIN\",result=\"ok\"} 5\n"));
	assert_non_null(strstr(t, "smtpgate_messages_accepted_total 4\n"));
	assert_non_null(strstr(t, "smtpgate_messages_rejected_total{reason=\"relay\"} 1\n"));
	assert_non_null(strstr(t, "smtpgate_stored_bytes_total 12345\n"));
	assert_non_null(strstr(t, "# TYPE smtpgate_session_duration_seconds histogram\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_bucket{le=\"0.01\"} 1\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_bucket{le=\"0.5\"} 1\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_bucket{le=\"1\"} 2\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_bucket{le=\"300\"} 2\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_count 3\n"));
	assert_non_null(strstr(t, "smtpgate_session_duration_seconds_sum 1000.704\n"));
	/* every sample line belongs to a family announced by a TYPE line */
	char current[128] = "";
	for (const char *line = t; *line != '\0';) {
		const char *nl = strchr(line, '\n');
		assert_non_null(nl); /* every line ends with a line feed */
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(sscanf(line + 7, "%127s", current), 1);
		} else if (line[0] != '#') {
			assert_true(current[0] != '\0');
			assert_int_equal(strncmp(line, current, strlen(current)), 0);
		}
		line = nl + 1;
	}
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
