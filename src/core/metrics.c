/*
 * metrics.c: counters for /metrics, rendered in the Prometheus text
 * exposition format (version 0.0.4): a "# HELP" and a "# TYPE" line per
 * family, then one sample per label set.
 *
 * Names are fixed at init (listeners from the config, mechanisms from the
 * registry plus a last "other" slot), so the index functions only read and
 * any thread may call them.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"
#include "core/metrics.h"
#include "core/util.h"
#include "sasl/mech.h"

static const char *const auth_result_names[SG_MA_COUNT] = {
	"ok", "fail", "tempfail", "malformed", "aborted", "throttled",
};
static const char *const reject_names[SG_MR_COUNT] = {
	"relay", "no_such_user", "sender", "too_big", "bare_lf", "store", "other",
};
/* upper bounds in milliseconds; the last bucket is +Inf */
static const uint64_t bucket_ms[SG_METRICS_DURATION_BUCKETS - 1] = {
	10, 50, 100, 500, 1000, 5000, 10000, 60000, 300000,
};
static const char *const bucket_le[SG_METRICS_DURATION_BUCKETS] = {
	"0.01", "0.05", "0.1", "0.5", "1", "5", "10", "60", "300", "+Inf",
};

void sg_metrics_init(struct sg_metrics *m, const char *const *listeners, size_t nlisteners)
{
	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < nlisteners && m->nlisteners < SG_METRICS_MAX_LISTENERS - 1; i++)
		sg_strlcpy(m->listener_names[m->nlisteners++], listeners[i],
			   sizeof(m->listener_names[0]));
	/* the last slot collects unknown names */
	sg_strlcpy(m->listener_names[m->nlisteners++], "other", sizeof(m->listener_names[0]));
	for (size_t i = 0; sg_mechs[i] != NULL && m->nmechs < SG_METRICS_MAX_MECHS - 1; i++)
		sg_strlcpy(m->mech_names[m->nmechs++], sg_mechs[i]->name, sizeof(m->mech_names[0]));
	sg_strlcpy(m->mech_names[m->nmechs++], "other", sizeof(m->mech_names[0]));
}

size_t sg_metrics_listener_index(const struct sg_metrics *m, const char *name)
{
	for (size_t i = 0; name != NULL && i + 1 < m->nlisteners; i++)
		if (strcmp(m->listener_names[i], name) == 0)
			return i;
	return m->nlisteners > 0 ? m->nlisteners - 1 : 0;
}

size_t sg_metrics_mech_index(const struct sg_metrics *m, const char *mech)
{
	for (size_t i = 0; mech != NULL && i + 1 < m->nmechs; i++)
		if (strcasecmp(m->mech_names[i], mech) == 0)
			return i;
	return m->nmechs > 0 ? m->nmechs - 1 : 0;
}

void sg_metrics_session_done(struct sg_metrics *m, uint64_t duration_ms)
{
	size_t b = SG_METRICS_DURATION_BUCKETS - 1;
	for (size_t i = 0; i < SG_METRICS_DURATION_BUCKETS - 1; i++)
		if (duration_ms <= bucket_ms[i]) {
			b = i;
			break;
		}
	/* buckets hold their own count; the render makes them cumulative */
	atomic_fetch_add_explicit(&m->session_duration_buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->session_duration_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->session_duration_ms_sum, duration_ms, memory_order_relaxed);
}

static uint64_t ld(const atomic_uint_fast64_t *a)
{
	return atomic_load_explicit(a, memory_order_relaxed);
}

static void family(struct sg_buf *b, const char *name, const char *type, const char *help)
{
	sg_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values are our own names (config, registry); escape anyway
 * (exposition format: backslash, double quote and line feed). */
static const char *label(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0' && o + 3 < size; i++) {
		char c = in[i];
		if (c == '\\' || c == '"') {
			out[o++] = '\\';
			out[o++] = c;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return out;
}

char *sg_metrics_render(const struct sg_metrics *m)
{
	struct sg_buf b;
	char l1[80];
	sg_buf_init(&b, 1 << 20);

	family(&b, "smtpgate_connections_current", "gauge", "SMTP connections open now.");
	sg_buf_printf(&b, "smtpgate_connections_current %llu\n",
		      (unsigned long long)ld(&m->connections_current));
	family(&b, "smtpgate_connections_total", "counter", "SMTP connections accepted, by listener.");
	for (size_t i = 0; i < m->nlisteners; i++)
		sg_buf_printf(&b, "smtpgate_connections_total{listener=\"%s\"} %llu\n",
			      label(m->listener_names[i], l1, sizeof(l1)),
			      (unsigned long long)ld(&m->connections_total[i]));
	family(&b, "smtpgate_tls_handshakes_total", "counter", "TLS handshakes completed.");
	sg_buf_printf(&b, "smtpgate_tls_handshakes_total %llu\n",
		      (unsigned long long)ld(&m->tls_handshakes));
	family(&b, "smtpgate_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
	sg_buf_printf(&b, "smtpgate_tls_handshake_failures_total %llu\n",
		      (unsigned long long)ld(&m->tls_failures));
	family(&b, "smtpgate_auth_attempts_total", "counter",
	       "SMTP AUTH attempts, by mechanism and result.");
	for (size_t i = 0; i < m->nmechs; i++)
		for (size_t r = 0; r < SG_MA_COUNT; r++)
			sg_buf_printf(&b, "smtpgate_auth_attempts_total{mechanism=\"%s\",result=\"%s\"} %llu\n",
				      label(m->mech_names[i], l1, sizeof(l1)), auth_result_names[r],
				      (unsigned long long)ld(&m->auth[i][r]));
	family(&b, "smtpgate_throttled_clients_total", "counter",
	       "Clients refused or slowed down by the throttle.");
	sg_buf_printf(&b, "smtpgate_throttled_clients_total %llu\n",
		      (unsigned long long)ld(&m->throttled_clients));
	family(&b, "smtpgate_messages_accepted_total", "counter", "Messages stored (250 after DATA).");
	sg_buf_printf(&b, "smtpgate_messages_accepted_total %llu\n",
		      (unsigned long long)ld(&m->messages_accepted));
	family(&b, "smtpgate_messages_rejected_total", "counter", "Messages or recipients refused, by reason.");
	for (size_t r = 0; r < SG_MR_COUNT; r++)
		sg_buf_printf(&b, "smtpgate_messages_rejected_total{reason=\"%s\"} %llu\n",
			      reject_names[r], (unsigned long long)ld(&m->messages_rejected[r]));
	family(&b, "smtpgate_stored_bytes_total", "counter", "Bytes written to the capture store.");
	sg_buf_printf(&b, "smtpgate_stored_bytes_total %llu\n",
		      (unsigned long long)ld(&m->bytes_stored));
	family(&b, "smtpgate_session_duration_seconds", "histogram", "SMTP session durations.");
	uint64_t cum = 0;
	for (size_t i = 0; i < SG_METRICS_DURATION_BUCKETS; i++) {
		cum += ld(&m->session_duration_buckets[i]);
		sg_buf_printf(&b, "smtpgate_session_duration_seconds_bucket{le=\"%s\"} %llu\n",
			      bucket_le[i], (unsigned long long)cum);
	}
	uint64_t sum = ld(&m->session_duration_ms_sum);
	sg_buf_printf(&b, "smtpgate_session_duration_seconds_sum %llu.%03llu\n",
		      (unsigned long long)(sum / 1000), (unsigned long long)(sum % 1000));
	sg_buf_printf(&b, "smtpgate_session_duration_seconds_count %llu\n",
		      (unsigned long long)ld(&m->session_duration_count));

	char *out = sg_strdup(sg_buf_str(&b));
	sg_buf_free(&b);
	return out;
}
