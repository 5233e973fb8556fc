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

struct sg_fault_action {
	enum sg_fault_kind kind;
	unsigned code;         /* 535 */
	char enhanced[16];     /* "5.7.8" */
	char text[256];
	unsigned delay_ms;
	long rule_id;
};

struct sg_faults;

int sg_faults_open(const char *data_dir, struct sg_faults **f_r, const char **error_r);
void sg_faults_close(struct sg_faults **f);
/* Which action applies now at this stage? login may be NULL (not yet
 * authenticated). Must be cheap when there are no rules (the common case):
 * no database access on the hot path unless the rule set changed. */
void sg_faults_check(struct sg_faults *f, enum sg_fault_stage stage, const char *listener,
		     const char *login, struct sg_fault_action *out);

#endif
