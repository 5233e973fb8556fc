/*
 * client/job.h: one complete client session on one connection, as the probe
 * (and later the relay) needs it:
 *
 *   connect -> [implicit TLS] -> greeting -> EHLO -> [STARTTLS -> TLS -> EHLO]
 *           -> [AUTH exchange] -> [MAIL, RCPT..., DATA, message] -> QUIT
 *
 * The job stops at the first failure and says where (stage), what happened
 * (outcome) and the server's reply, and keeps the transcript and the facts
 * gathered on the way (capabilities before and after TLS, TLS details). It
 * prints nothing.
 */
#ifndef SG_CLIENT_JOB_H
#define SG_CLIENT_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "client/smtpc.h"
#include "client/tls.h"
#include "client/transcript.h"
#include "sasl/mech.h"

struct event_base;

enum sg_tls_mode { SG_TLSM_NONE, SG_TLSM_STARTTLS, SG_TLSM_IMPLICIT };

enum sg_job_stage {
	SG_JOB_CONNECT,
	SG_JOB_TLS,
	SG_JOB_GREETING,
	SG_JOB_EHLO,
	SG_JOB_STARTTLS,
	SG_JOB_EHLO_TLS,
	SG_JOB_AUTH,
	SG_JOB_MAIL,
	SG_JOB_RCPT,
	SG_JOB_DATA,
	SG_JOB_MESSAGE,
	SG_JOB_QUIT,
	SG_JOB_DONE,
};

enum sg_job_outcome {
	SG_JOB_OK,
	SG_JOB_IO_FAILED,       /* see io_err, error */
	SG_JOB_CERT_FAILED,     /* TLS up, certificate not verified, not insecure */
	SG_JOB_NO_STARTTLS,     /* STARTTLS required but not offered */
	SG_JOB_REPLY_REFUSED,   /* a reply other than the expected one; see reply */
	SG_JOB_AUTH_CLIENT,     /* the mechanism could not start or cancelled; see error */
};

struct sg_job_opts {
	const char *host;
	unsigned port;
	enum sg_tls_mode tls_mode;
	struct sg_ctls *tls;         /* required unless SG_TLSM_NONE */
	bool insecure;               /* go on when the certificate does not verify */
	const char *ehlo;            /* default "localhost" */
	unsigned timeout_ms;
	const struct sg_mech *mech;  /* NULL: no AUTH */
	struct sg_sasl_client_env env; /* authcid, password, token, authzid; the rest is filled */
	bool show_secrets;
	/* --send: all three set */
	const char *mail_from;
	const char *rcpt_to;
	const char *message;         /* header + body, LF or CRLF line ends, not dot-stuffed */
};

struct sg_job_reply {
	int code;
	char enh[12];
	char text[1024]; /* text of every line without enhanced codes, joined by " / " */
};

#define SG_JOB_CAPS_MAX 64
#define SG_JOB_MECHS_MAX 32

struct sg_job_caps {
	bool seen;
	size_t ncaps;
	char *caps[SG_JOB_CAPS_MAX];   /* EHLO keywords with parameters, first line excluded */
	size_t nmechs;
	char *mechs[SG_JOB_MECHS_MAX]; /* from "AUTH m1 m2" and the legacy "AUTH=m1 m2" */
	bool starttls;
	bool auth;
};

struct sg_job {
	struct sg_job_opts opts;
	/* results */
	bool done;
	enum sg_job_stage stage;     /* where it ended (SG_JOB_DONE on success) */
	enum sg_job_outcome outcome;
	enum sg_smtpc_err io_err;
	char error[400];
	struct sg_job_reply reply;   /* the refusing reply (REPLY_REFUSED) or the last AUTH reply */
	struct sg_job_reply auth_reply; /* the last reply of the AUTH exchange */
	char greeting[512];
	bool connected;
	char peer[80];
	struct sg_ctls_info tls;
	bool tls_active;
	char cb_type[16];            /* channel binding in use for -PLUS */
	struct sg_job_caps caps_plain; /* EHLO before TLS (empty with implicit TLS) */
	struct sg_job_caps caps_tls;   /* EHLO after TLS */
	bool auth_attempted;
	bool auth_ok;
	bool auth_aborted;           /* we sent "*" */
	bool sent;                   /* message accepted */
	struct sg_job_reply send_reply;
	struct sg_transcript transcript;
	/* internal */
	struct sg_smtpc *conn;
	struct event_base *base;
	void *saslc;
	uint8_t cb_data[64];
	size_t cb_len;
	bool quitting;
};

/* Run the job on base to the end (dispatching the loop itself). */
void sg_job_run(struct event_base *base, struct sg_job *job);
/* The capabilities that count (after TLS when TLS is on). */
const struct sg_job_caps *sg_job_caps(const struct sg_job *job);
bool sg_job_offers(const struct sg_job *job, const char *mech);
void sg_job_free(struct sg_job *job);
const char *sg_job_stage_name(enum sg_job_stage s);

#endif
