/*
 * metrics.h: process-wide counters for /metrics (Prometheus text format).
 * Updated with relaxed atomics from the loop and worker threads; read by the
 * HTTP threads.
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SG_METRICS_MAX_LISTENERS 16
#define SG_METRICS_MAX_MECHS 16

enum sg_metric_auth_result { SG_MA_OK, SG_MA_FAIL, SG_MA_TEMPFAIL, SG_MA_MALFORMED, SG_MA_ABORTED,
			     SG_MA_THROTTLED, SG_MA_COUNT };
enum sg_metric_reject { SG_MR_RELAY, SG_MR_NO_SUCH_USER, SG_MR_SENDER, SG_MR_TOO_BIG, SG_MR_BARE_LF,
			SG_MR_STORE, SG_MR_OTHER, SG_MR_COUNT };

#define SG_METRICS_DURATION_BUCKETS 10 /* 0.01 0.05 0.1 0.5 1 5 10 60 300 +Inf seconds */

struct sg_metrics {
	char listener_names[SG_METRICS_MAX_LISTENERS][32];
	size_t nlisteners;
	atomic_uint_fast64_t connections_current;
	atomic_uint_fast64_t connections_total[SG_METRICS_MAX_LISTENERS];
	atomic_uint_fast64_t tls_handshakes;
	atomic_uint_fast64_t tls_failures;
	char mech_names[SG_METRICS_MAX_MECHS][32];
	size_t nmechs;
	atomic_uint_fast64_t auth[SG_METRICS_MAX_MECHS][SG_MA_COUNT];
	atomic_uint_fast64_t throttled_clients;
	atomic_uint_fast64_t messages_accepted;
	atomic_uint_fast64_t messages_rejected[SG_MR_COUNT];
	atomic_uint_fast64_t bytes_stored;
	atomic_uint_fast64_t session_duration_buckets[SG_METRICS_DURATION_BUCKETS];
	atomic_uint_fast64_t session_duration_count;
	atomic_uint_fast64_t session_duration_ms_sum;
};

/* Set up names (listeners from the config, mechanisms from the registry). */
void sg_metrics_init(struct sg_metrics *m, const char *const *listeners, size_t nlisteners);
size_t sg_metrics_listener_index(const struct sg_metrics *m, const char *name);
size_t sg_metrics_mech_index(const struct sg_metrics *m, const char *mech);
void sg_metrics_session_done(struct sg_metrics *m, uint64_t duration_ms);
/* Prometheus text exposition; caller frees. */
char *sg_metrics_render(const struct sg_metrics *m);

#endif
