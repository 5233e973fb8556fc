/*
 * session.h: one SMTP session, an explicit state machine (RFC 5321 4.1.4):
 *
 *   HANDSHAKE -> GREETED -> READY (EHLO/HELO) -> MAIL -> RCPT -> DATA -> READY
 *                              \-> AUTH exchange -> READY
 *   STARTTLS: READY -> HANDSHAKE -> GREETED (EHLO and AUTH forgotten, RFC 3207 4.2)
 *   BUSY: waiting for a worker (AUTH step, MAIL/RCPT store lookup, message
 *         commit); no input is read. No store query ever runs on the loop.
 *
 * Commands come from one table (session.c): verb, the states it is allowed
 * in, and the handler in cmd_<verb>.c. Every reply goes through
 * sess_reply(), which takes an id from the reply table (smtp/reply.h).
 */
#ifndef SG_SESSION_H
#define SG_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/pool.h"
#include "sasl/mech.h"
#include "smtp/data.h"
#include "smtp/reply.h"

struct sg_server;
struct sg_listener;
struct sg_loop;
struct sg_conn;
struct event;

enum sess_state {
	ST_HANDSHAKE = 1u << 0,
	ST_GREETED = 1u << 1,
	ST_READY = 1u << 2,
	ST_MAIL = 1u << 3,
	ST_RCPT = 1u << 4,
	ST_DATA = 1u << 5,
	ST_AUTH = 1u << 6,
	ST_BUSY = 1u << 7,
	ST_CLOSING = 1u << 8,
};

struct sess_rcpt {
	char addr[257];
	char owner[256];                /* mx: the inbox it goes to ("" when authenticated) */
	unsigned notify;        /* RFC 3461 NOTIFY (relay/queue.h SG_NOTIFY_*), 0 = not given */
	char orcpt[520];        /* ORCPT, xtext-decoded "type;address", "" = not given */
};

/* A MAIL or RCPT whose policy needs the store (cmd_mail.c): what the
 * command asked for, parsed on the loop, and what the worker found. */
struct sess_lookup {
	bool rcpt;                      /* else MAIL */
	char path[257];
	char login[SG_LOGIN_MAX + 1];   /* MAIL: the session's login */
	/* MAIL: parameters applied when the checks pass */
	bool smtputf8;
	unsigned long long size;
	int dsn_ret;
	char envid[101];
	bool recheck;                   /* re-check the account (auth_gen/auth_fp) */
	uint64_t auth_gen;
	bool owns;                      /* sender ownership */
	/* RCPT: parameters */
	unsigned notify;
	char orcpt[520];
	/* results (worker) */
	int recheck_rc;                 /* 1 unchanged, 0 changed, -1 store error */
	uint64_t gen;
	uint8_t fp[32];
	int owns_rc;                    /* sg_cred_owns_address() */
	int local_rc;                   /* RCPT: 1 local domain, 0 not, -1 store error */
	int owner_rc;                   /* RCPT: sg_cred_find_owner() */
	char owner[SG_LOGIN_MAX + 1];
};

struct sess_job {
	struct sg_job job;
	struct sg_session *s;
	int kind;                       /* JOB_AUTH_STEP, JOB_STORE or JOB_LOOKUP */
	/* AUTH */
	bool start;
	bool no_input;                  /* server-first start: step gets in == NULL */
	struct sg_buf in;               /* secret */
	struct sg_buf out;
	enum sg_mech_status status;
	struct sg_mech_result res;
	/* STORE */
	int store_rc;
	char id[64];
	const char *error;
	char **logins;                  /* inboxes; as many as the transaction's owners */
	size_t nlogins;
	struct sg_buf prefix;
	struct sg_buf **own_prefix;     /* mx: logins[i]'s own block (its recipients only) */
	int body_fd;                    /* the DATA spool (owned: closed by sess_job_free) */
	size_t body_len;
	struct sg_route *route;         /* relay mode (server/route.c), else NULL */
	/* LOOKUP */
	struct sess_lookup lk;
};

struct sg_session {
	struct sg_session *next, *prev;
	struct sg_server *srv;
	struct sg_loop *loop;
	struct sg_listener *lst;
	struct sg_conn *conn;
	char id[24];
	char client_ip[64];
	unsigned client_port;
	unsigned local_port;
	unsigned state;
	bool esmtp;
	char helo[256];
	uint64_t started_ms;
	/* authentication */
	bool authenticated;
	bool accepted_any;              /* by auth_accept_any (no account) */
	char login[SG_LOGIN_MAX + 1];
	const char *auth_mech_name;
	const struct sg_mech *mech;
	void *mech_state;
	bool mech_first_step;
	struct sg_sasl_server_env env;
	uint8_t cb_data[64];
	unsigned auth_failures;
	bool error_challenge;           /* an error challenge was sent: failure counted */
	unsigned error_delay_ms;
	uint64_t auth_gen;              /* store generation when the account was last checked */
	uint8_t auth_fp[32];            /* what the authentication rests on (sess_account_fp) */
	uint8_t auth_tag[16];           /* keyed hash of this exchange's client bytes */
	bool auth_tag_set;
	/* abuse counters */
	unsigned errors;
	/* transaction */
	char mail_from[257];
	bool smtputf8;
	unsigned long long declared_size;
	struct sess_rcpt *rcpts;
	size_t nrcpts;
	int dsn_ret;                    /* RFC 3461 RET: 0 not given, 1 FULL, 2 HDRS (set by MAIL) */
	char dsn_envid[101];            /* ENVID, xtext-decoded (at most 100 octets) */
	char **owners;                  /* inboxes (mx, unauthenticated), at most one per RCPT */
	size_t nowners;
	unsigned txn_seq;
	struct sg_data_reader dr;
	/* DATA is streamed: at most SESS_SPOOL_BUF octets in memory, the rest
	 * written to an unnamed spool file as it arrives (cmd_data.c). */
	struct sg_buf body;
	int spool_fd;                   /* -1 outside DATA */
	size_t spooled;                 /* octets written to the spool */
	int spool_errno;                /* a spool write failed: 451 at the end */
	/* I/O */
	char *line;
	size_t line_size;
	struct sess_job *job;           /* in flight on the pool, or NULL */
	struct event *delay_ev;         /* failed-AUTH delay */
	struct event *life_ev;          /* whole-session limit */
	struct event *deadline_ev;      /* the line being read must be complete by then */
	bool deadline_armed;
	enum sg_reply_id delayed_reply;
	bool delayed_close;
	bool quit;
	bool after_starttls;
	bool zombie;            /* connection gone, a job still out */
	bool tls_counted;
	char *fault_line;       /* command held back by a fault-injection delay */
	struct event *fault_ev;
	struct sess_job *fault_job; /* AUTH step result held back by a login-scoped delay */
	bool auth_fault_done;   /* this AUTH exchange's login-scoped rules were checked */
};

struct sg_session *sess_new(struct sg_listener *lst, int fd, const char *ip, unsigned port,
			    unsigned local_port);
void sess_free(struct sg_session *s);
/* Server stopping: close idle sessions now, others after their transaction. */
void sess_shutdown(struct sg_session *s);

/* Used by the command handlers (cmd_*.c). */
void sess_reply(struct sg_session *s, enum sg_reply_id id, ...);
void sess_reply_raw(struct sg_session *s, const char *text);
/* Count a protocol error; past max_errors the session ends with 421. */
void sess_error(struct sg_session *s, enum sg_reply_id id, ...);
void sess_reset_txn(struct sg_session *s);
void sess_close(struct sg_session *s, enum sg_reply_id id);
void sess_submit(struct sg_session *s, struct sess_job *j);
bool sess_tls(const struct sg_session *s);
/* Auth event log + metrics for one attempt (cmd_auth.c). */
void sess_auth_event(struct sg_session *s, const char *mech, const char *login, const char *result,
		     const char *reason, bool injected);
const char *sess_log_login(const struct sg_session *s);
/* The state an authenticated session rests on: the account's id, login and
 * password hash, hashed into fp. 1 (enabled account), 0 (deleted or
 * disabled), -1 (store error). Any thread. */
int sess_account_fp(struct sg_cred_store *creds, const char *login, uint8_t fp[32]);

void cmd_ehlo(struct sg_session *s, char *args);
void cmd_helo(struct sg_session *s, char *args);
void cmd_starttls(struct sg_session *s, char *args);
void cmd_auth(struct sg_session *s, char *args);
void cmd_auth_line(struct sg_session *s, char *line, size_t len);
void cmd_auth_too_long(struct sg_session *s);
void cmd_mail(struct sg_session *s, char *args);
void cmd_rcpt(struct sg_session *s, char *args);
void cmd_data(struct sg_session *s, char *args);
void cmd_data_input(struct sg_session *s);
void cmd_rset(struct sg_session *s, char *args);
void cmd_noop(struct sg_session *s, char *args);
void cmd_vrfy(struct sg_session *s, char *args);
void cmd_help(struct sg_session *s, char *args);
void cmd_quit(struct sg_session *s, char *args);

/* AUTH and STORE job completion (on the loop). */
void auth_job_done(struct sg_session *s, struct sess_job *j);
void store_job_done(struct sg_session *s, struct sess_job *j);
void auth_abort(struct sg_session *s);
/* Worker side of the jobs, and their release. */
void auth_job_work(struct sess_job *j);
void store_job_work(struct sess_job *j);
void lookup_job_work(struct sess_job *j);
void lookup_job_done(struct sg_session *s, struct sess_job *j);
void sess_job_free(struct sess_job *j);
/* Mechanisms offered on this connection, strongest first (for EHLO). */
size_t auth_offered(struct sg_session *s, const struct sg_mech **out, size_t max);

enum { JOB_AUTH_STEP = 1, JOB_STORE = 2, JOB_LOOKUP = 3 };

#define SESS_SPOOL_BUF (64 * 1024)
/* Close the transaction's spool file, if any. */
void sess_spool_close(struct sg_session *s);

#endif
