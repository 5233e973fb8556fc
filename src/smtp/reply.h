/*
 * reply.h: every reply smtpgate sends, in one table (code, enhanced status
 * code per RFC 3463 / RFC 5248, text, and the rule it implements). The
 * session never writes a reply code anywhere else. ../shared/PROTOCOL.md holds
 * the same table; change both together.
 */
#ifndef SG_REPLY_H
#define SG_REPLY_H

enum sg_reply_id {
	SG_R_GREETING,          /* 220 <host> ESMTP smtpgate */
	SG_R_BYE,               /* 221 2.0.0 Bye */
	SG_R_OK,                /* 250 2.0.0 Ok */
	SG_R_MAIL_OK,           /* 250 2.1.0 Sender ok */
	SG_R_RCPT_OK,           /* 250 2.1.5 Recipient ok */
	SG_R_QUEUED,            /* 250 2.0.0 Ok: queued as <id> */
	SG_R_RSET_OK,
	SG_R_NOOP_OK,
	SG_R_VRFY,              /* 252 2.5.0 */
	SG_R_HELP,              /* 214 2.0.0 */
	SG_R_TLS_GO,            /* 220 2.0.0 Ready to start TLS */
	SG_R_DATA_GO,           /* 354 End data with <CR><LF>.<CR><LF> */
	SG_R_AUTH_OK,           /* 235 2.7.0 */
	SG_R_AUTH_BAD,          /* 535 5.7.8 */
	SG_R_AUTH_BAD_NTLM,     /* 535 5.7.3 */
	SG_R_AUTH_REQUIRED,     /* 530 5.7.0 Authentication required */
	SG_R_TLS_REQUIRED,      /* 530 5.7.0 Must issue a STARTTLS command first */
	SG_R_AUTH_ENCRYPT,      /* 538 5.7.11 */
	SG_R_AUTH_WEAK,         /* 534 5.7.9 */
	SG_R_AUTH_UNKNOWN_MECH, /* 504 5.5.4 */
	SG_R_AUTH_ABORTED,      /* 501 5.7.0 */
	SG_R_AUTH_BAD_B64,      /* 501 5.5.2 */
	SG_R_AUTH_NO_IR,        /* 501 5.7.0 initial response not allowed */
	SG_R_AUTH_LINE_LONG,    /* 500 5.5.6 */
	SG_R_AUTH_MALFORMED,    /* 501 5.5.2 */
	SG_R_AUTH_TEMP,         /* 454 4.7.0 */
	SG_R_AUTH_ALREADY,      /* 503 5.5.1 */
	SG_R_AUTH_IN_TXN,       /* 503 5.5.1 */
	SG_R_AUTH_NOT_AVAILABLE,/* 503 5.5.1 AUTH not available (no mechanisms) */
	SG_R_BAD_SEQ_EHLO,      /* 503 5.5.1 Send EHLO/HELO first */
	SG_R_BAD_SEQ_MAIL,      /* 503 5.5.1 Need MAIL command */
	SG_R_BAD_SEQ_RCPT,      /* 503 5.5.1 Need RCPT command */
	SG_R_NESTED_MAIL,       /* 503 5.5.1 Sender already specified */
	SG_R_TLS_ALREADY,       /* 503 5.5.1 TLS already active */
	SG_R_TLS_UNAVAILABLE,   /* 454 4.7.0 TLS not available */
	SG_R_RELAY_DENIED,      /* 554 5.7.1 */
	SG_R_NO_SUCH_USER,      /* 550 5.1.1 */
	SG_R_SENDER_NOT_OWNED,  /* 553 5.7.1 */
	SG_R_TOO_MANY_RCPTS,    /* 452 4.5.3 */
	SG_R_TOO_BIG,           /* 552 5.3.4 */
	SG_R_LINE_TOO_LONG,     /* 500 5.5.2 */
	SG_R_SYNTAX,            /* 500 5.5.2 Syntax error, command unrecognized */
	SG_R_PARAM_SYNTAX,      /* 501 5.5.4 */
	SG_R_BAD_SENDER_SYNTAX, /* 501 5.1.7 */
	SG_R_BAD_RCPT_SYNTAX,   /* 501 5.1.3 */
	SG_R_PARAM_UNKNOWN,     /* 555 5.5.4 */
	SG_R_NOT_IMPLEMENTED,   /* 502 5.5.1 */
	SG_R_BARE_LF,           /* 550 5.5.2 bare LF/CR in message */
	SG_R_STORE_FAILED,      /* 451 4.3.0 */
	SG_R_LOCAL_ERROR,       /* 451 4.3.0 */
	SG_R_TOO_MANY_ERRORS,   /* 421 4.7.0 */
	SG_R_TIMEOUT,           /* 421 4.4.2 */
	SG_R_SHUTDOWN,          /* 421 4.3.2 */
	SG_R_TOO_MANY_CONN,     /* 421 4.7.0 */
	SG_R_NO_VALID_RCPTS,    /* 554 5.5.1 No valid recipients */
	SG_R_UTF8_REQUIRED,     /* 553 5.6.7 */
	SG_R_COUNT
};

struct sg_reply {
	unsigned code;
	const char *enhanced;
	const char *text;       /* may hold one %s (host name, id, login) */
	const char *rule;       /* where it comes from */
};

const struct sg_reply *sg_reply_get(enum sg_reply_id id);

#endif
