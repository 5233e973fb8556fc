/*
 * faults.h: fault injection for sandbox users ("what does my app do when AUTH
 * fails?"). Rules are stored in the faults table of smtpgate.db, so the CLI,
 * the HTTP API and the config file all edit the same list, and the running
 * server sees changes made by another process.
 *
 * A rule: stage (connect, ehlo, auth, mail, rcpt, data), scope (global, a
 * listener name, or an account login), action (reply CODE ENHANCED TEXT,
 * reply-and-close, delay MS, drop), and when it fires: always, the next N
 * times, every Nth time, or with probability P.
 */
#ifndef SG_FAULTS_H
#define SG_FAULTS_H

#include <stdbool.h>
#include <stddef.h>

enum sg_fault_stage {
	SG_FAULT_CONNECT,
	SG_FAULT_EHLO,
	SG_FAULT_AUTH,
	SG_FAULT_MAIL,
	SG_FAULT_RCPT,
	SG_FAULT_DATA,
};

enum sg_fault_kind {
	SG_FAULT_NONE,
	SG_FAULT_REPLY,        /* send code + text instead of running the command */
	SG_FAULT_REPLY_CLOSE,  /* send it, then close (421) */
	SG_FAULT_DELAY,        /* wait delay_ms, then run the command normally */
	SG_FAULT_DROP,         /* close the connection without a reply */
};

/* delay_ms > 0 applies to every kind: wait delay_ms first, then reply /
 * close / run the command (SG_FAULT_DELAY alone). enhanced may be "". */
struct sg_fault_action {
	enum sg_fault_kind kind;
	unsigned code;         /* 535 */
	char enhanced[16];     /* "5.7.8" */
	char text[256];
	unsigned delay_ms;
	long rule_id;
};

enum sg_fault_when {
	SG_FAULT_ALWAYS,
	SG_FAULT_TIMES,        /* the next n matching times, then never */
	SG_FAULT_EVERY,        /* the nth, 2nth, ... matching time */
	SG_FAULT_PROBABILITY,  /* each matching time with probability p */
};

struct sg_fault_rule {
	long id;
	enum sg_fault_stage stage;
	char listener[32];     /* "" = every listener */
	char login[256];       /* "" = every account (and unauthenticated sessions) */
	struct sg_fault_action action;
	enum sg_fault_when when;
	unsigned n;            /* TIMES, EVERY */
	double probability;    /* PROBABILITY, 0..1 */
	unsigned long long matched; /* times the rule's scope matched */
	unsigned long long fired;   /* times it was applied */
	long long created;     /* unix seconds */
	char origin[16];       /* "cli", "api", "config", "account" */
};

struct sg_faults;

int sg_faults_open(const char *data_dir, struct sg_faults **f_r, const char **error_r);
/* store = postgresql: the rules of every node in one table (faults_pg.c);
 * a change on any node reaches the others through NOTIFY once the caller
 * starts pg's listener. pg must outlive the rules. */
struct sg_pg;
int sg_faults_open_pg(struct sg_pg *pg, struct sg_faults **f_r, const char **error_r);
void sg_faults_close(struct sg_faults **f);
/* Which action applies now at this stage? login may be NULL (not yet
 * authenticated); a rule scoped to a login never matches NULL, so for the
 * AUTH stage pass the login the client claims when it is known. Every call
 * that matches a rule counts towards its times/every counters: call once
 * per command. Cheap when there are no rules (the common case): one atomic
 * load; never any database access (a background thread reloads the rules
 * within 200 ms of a change by another process). Thread-safe. */
void sg_faults_check(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
		     const char *login, struct sg_fault_action *out);

/* The same, over the rules scoped to a login only: for the AUTH stage,
 * where the global rules are checked at the AUTH command and the scoped ones
 * once a step of the exchange has revealed the claimed login. */
void sg_faults_check_scoped(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
			    const char *login, struct sg_fault_action *out);

/* ---- administration (CLI, HTTP API, config file); thread-safe ----
 * Errors (*error_r) live in a thread-local buffer valid until the next call
 * on the same thread. */

/* Parse a one-line spec: space-separated key=value words; a value runs up to
 * the next known key, so replies need no quoting:
 *   stage=auth reply=535 5.7.8 Authentication credentials invalid times=2
 *   stage=connect reply=421 4.7.0 Try again later close listener=submission
 *   stage=mail delay=3000 login=alice@example.test probability=0.5
 *   stage=rcpt drop every=3
 * Keys: stage (required), reply, close, delay (ms), drop, listener, login,
 * times, every, probability. 0 or -1. */
int sg_faults_parse_spec(const char *spec, struct sg_fault_rule *r, const char **error_r);
/* Check a rule built by hand (the API, the CLI). 0 or -1. */
int sg_faults_validate(const struct sg_fault_rule *r, const char **error_r);
/* Parse "535 5.7.8 text" into the action (kind set to SG_FAULT_REPLY). */
int sg_faults_parse_reply(const char *reply, struct sg_fault_action *a, const char **error_r);
/* Store a rule; *id_r (may be NULL) receives its id. origin: "cli", "api"
 * (the admin), "config", or "account" (an account through the API; the rule
 * must be scoped to a login). Each origin has its own quota, and each
 * account at most 20 rules, so that accounts can never fill the table for
 * the admin or the config file. The login is stored in its canonical form
 * (sg_faults_login_canon). 0 or -1. */
int sg_faults_add(struct sg_faults *f, const struct sg_fault_rule *r, const char *origin,
		  long *id_r, const char **error_r);
/* parse_spec + add with origin "config" (the `fault = SPEC` config key). */
int sg_faults_add_spec(struct sg_faults *f, const char *spec, const char **error_r);
/* Delete one rule: 1 deleted, 0 no such rule, -1 error. */
int sg_faults_delete(struct sg_faults *f, long id, const char **error_r);
/* Delete every rule (origin NULL) or those of one origin ("config": call once
 * before re-adding the config file's rules at start). *n_r may be NULL. */
int sg_faults_clear(struct sg_faults *f, const char *origin, size_t *n_r, const char **error_r);
/* Current rules, id order, with the live matched/fired counters of this
 * process. *rules_r is malloc'd (free()), NULL when *n_r is 0. 0 or -1. */
int sg_faults_list(struct sg_faults *f, struct sg_fault_rule **rules_r, size_t *n_r,
		   const char **error_r);
/* Logins are compared one way everywhere (issue 10 item 13): exactly, in
 * the canonical form the credential store uses: the local part as typed
 * (case-sensitive), the domain after the last '@' in lower case. */
void sg_faults_login_canon(const char *in, char *out, size_t size);
bool sg_faults_login_eq(const char *a, const char *b);
/* Names for display and parsing. */
const char *sg_fault_stage_name(enum sg_fault_stage s);
int sg_fault_stage_parse(const char *name, enum sg_fault_stage *s);
const char *sg_fault_kind_name(enum sg_fault_kind k);
const char *sg_fault_when_name(enum sg_fault_when w);
/* Make the running instance re-read the table now (tests; the API after a
 * change made through another handle). */
void sg_faults_reload(struct sg_faults *f);

#endif
