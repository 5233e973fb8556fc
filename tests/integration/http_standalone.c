/*
 * http_standalone: the sandbox HTTP server without the SMTP side, for
 * developing and testing src/http against a data directory.
 *
 *   http_standalone DATA_DIR PORT [open|closed] [CERT KEY]
 *
 * Lines on stdin feed the event stream:
 *   auth LOGIN RESULT REASON MECH [injected]
 *   msg LOGIN ID SIZE
 *   fault STAGE LISTENER LOGIN        (prints the action sg_faults_check returns)
 * EOF or SIGTERM stops it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/metrics.h"
#include "core/util.h"
#include "http/http.h"
#include "store/cred.h"
#include "store/events.h"
#include "store/faults.h"
#include "store/mail.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: http_standalone DATA_DIR PORT [open]\n");
		return 2;
	}
	const char *dir = argv[1];
	const char *err = NULL;
	char *dbpath = sg_asprintf("%s/smtpgate.db", dir);
	struct sg_cred_store *creds = NULL;
	struct sg_mail_store *mail = NULL;
	struct sg_events *ev = NULL;
	struct sg_faults *faults = NULL;
	static struct sg_metrics metrics;
	const char *listeners[] = {"mx", "submission", "submissions"};
	if (sg_cred_open(dbpath, &creds, &err) < 0 || sg_mail_open(dir, &mail, &err) < 0 ||
	    sg_events_open(dir, &ev, &err) < 0 || sg_faults_open(dir, &faults, &err) < 0) {
		fprintf(stderr, "open: %s\n", err);
		return 1;
	}
	sg_metrics_init(&metrics, listeners, 3);
	uint64_t p;
	if (sg_parse_u64(argv[2], 1, 65535, &p) < 0)
		return 2;
	struct sg_http_config cfg = {
		.listen_host = "127.0.0.1",
		.port = (unsigned)p,
		.open = argc > 3 && strcmp(argv[3], "open") == 0,
		.data_dir = dir,
		.tls_cert = argc > 5 ? argv[4] : NULL,
		.tls_key = argc > 5 ? argv[5] : NULL,
	};
	struct sg_http *http = NULL;
	if (sg_http_start(&cfg, creds, mail, ev, faults, &metrics, &http, &err) < 0) {
		fprintf(stderr, "http: %s\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	char line[1024];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char a[5][300];
		memset(a, 0, sizeof(a));
		int n = sscanf(line, "%299s %299s %299s %299s %299s", a[0], a[1], a[2], a[3], a[4]);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		if (n >= 5 && strcmp(a[0], "auth") == 0) {
			struct sg_auth_event e;
			memset(&e, 0, sizeof(e));
			e.time_ms = now;
			sg_strlcpy(e.session, "standalone", sizeof(e.session));
			sg_strlcpy(e.client_ip, "127.0.0.1", sizeof(e.client_ip));
			sg_strlcpy(e.listener, "submission", sizeof(e.listener));
			e.tls = true;
			sg_strlcpy(e.tls_version, "TLSv1.3", sizeof(e.tls_version));
			sg_strlcpy(e.login, a[1], sizeof(e.login));
			sg_strlcpy(e.result, a[2], sizeof(e.result));
			sg_strlcpy(e.reason, a[3], sizeof(e.reason));
			sg_strlcpy(e.mech, a[4], sizeof(e.mech));
			e.injected = strstr(line, "injected") != NULL;
			sg_events_auth(ev, &e);
			size_t mi = sg_metrics_mech_index(&metrics, e.mech);
			atomic_fetch_add(&metrics.auth[mi][strcmp(e.result, "ok") == 0 ? SG_MA_OK : SG_MA_FAIL], 1);
		} else if (n >= 4 && strcmp(a[0], "msg") == 0) {
			struct sg_msg_event e;
			memset(&e, 0, sizeof(e));
			e.time_ms = now;
			sg_strlcpy(e.login, a[1], sizeof(e.login));
			sg_strlcpy(e.id, a[2], sizeof(e.id));
			uint64_t sz = 0;
			sg_parse_u64(a[3], 0, UINT64_MAX, &sz);
			e.size = (size_t)sz;
			sg_events_message(ev, &e);
			atomic_fetch_add(&metrics.messages_accepted, 1);
		} else if (n >= 2 && strcmp(a[0], "fault") == 0) {
			enum sg_fault_stage st;
			struct sg_fault_action act;
			if (sg_fault_stage_parse(a[1], &st) == 0) {
				sg_faults_check(faults, st, n > 2 ? a[2] : NULL,
						n > 3 && strcmp(a[3], "-") != 0 ? a[3] : NULL, &act);
				printf("%s %u %s %s\n", sg_fault_kind_name(act.kind), act.code, act.enhanced,
				       act.text);
			}
		}
		printf("ok\n");
		fflush(stdout);
	}
	sg_http_stop(&http);
	sg_faults_close(&faults);
	sg_events_close(&ev);
	sg_mail_close(&mail);
	sg_cred_close(&creds);
	free(dbpath);
	return 0;
}
