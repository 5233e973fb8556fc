/*
 * relay/queue.h: the relay queue on disk, under <data_dir>/queue/.
 *
 *   queue/msg/<id>   the message (our trace header + the client's data, CRLF
 *                    line ends, not dot-stuffed): written once, never changed
 *   queue/env/<id>   the envelope: a header block written once, then one
 *                    fsync'd append per state change (attempt results,
 *                    notifications); the envelope is the unit of state
 *   queue/tmp/       files being written (removed at start)
 *   queue/ctl/       control requests from `smtpgate queue` (relay/runner.c)
 *
 * Durability contract (the anchors are OpenSMTPD's queue_fs.c and Postfix's
 * incoming -> active): sg_queue_commit() returns 0 only after msg/<id> and
 * env/<id> were each written in tmp/, fsync'd, renamed into place and both
 * directories fsync'd; the message file is renamed first, so an envelope
 * never names a missing message. A message file without an envelope is the
 * debris of an unfinished commit (never acknowledged) or of a finished
 * removal, and sg_queue_scan() removes it. sg_queue_append() writes a whole
 * record block in one write(2) and fsyncs it; a crash in the middle leaves a
 * last line without its LF, which the parser ignores and sg_queue_load()
 * cuts off before anything more is appended. The in-memory schedule is
 * rebuilt from the envelope files at start (sg_queue_scan()).
 *
 * Envelope file (text, one record per line, fields separated by one space;
 * values escaped by sg_qesc(): %XX for controls, space, '%' and octets above
 * 0x7e, and "-" for an empty or absent value):
 *
 *   smtpgate-queue 1
 *   id 1764678000.0123456789abcdef
 *   arrival 1764678000           (seconds since the epoch)
 *   from <addr>                  ("-" is the null sender <>)
 *   login <AUTH login>
 *   size <octets of msg/<id>>
 *   body 7bit | 8bitmime | -     (RFC 6152 BODY=)
 *   smtputf8 0 | 1               (RFC 6531)
 *   ret full | hdrs | -          (RFC 3461 4.3 RET=)
 *   envid <xtext-decoded ENVID>  (RFC 3461 4.4)
 *   dsn 0 | 1                    (this message is itself a DSN: never bounced)
 *   rcpt <addr> <notify> <orcpt> (notify: "-", "NEVER" or a list of
 *                                 SUCCESS,FAILURE,DELAY; orcpt "type;addr")
 *   .                            (end of the header block)
 *   A <time>                     an attempt ended (attempts += 1)
 *   D <i> <time> <mta> <diag>    recipient i delivered
 *   F <i> <time> <status> <mta> <diag>   recipient i failed permanently
 *   T <i> <time> <status> <mta> <diag>   recipient i deferred (last reason)
 *   N <i>                        recipient i's final state was reported (or
 *                                needs no report): it is done
 *   W <time>                     the delay warning was sent
 *
 * Thread-safety: the functions are reentrant; one envelope must be changed
 * by one thread at a time (the runner's scheduler guarantees it). Blocking:
 * everything here does disk I/O and runs on the runner's or the session
 * workers' threads, never on an event loop.
 */
#ifndef SG_RELAY_QUEUE_H
#define SG_RELAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SG_QUEUE_ID_MAX 40
#define SG_QUEUE_MAX_RCPTS 1000
#define SG_QUEUE_LINE_MAX 4096 /* one envelope line, LF excluded */
#define SG_QUEUE_ENV_MAX (4u * 1024 * 1024)

/* RFC 3461 4.1 NOTIFY */
enum {
	SG_NOTIFY_NEVER = 1u << 0,
	SG_NOTIFY_SUCCESS = 1u << 1,
	SG_NOTIFY_FAILURE = 1u << 2,
	SG_NOTIFY_DELAY = 1u << 3,
};

enum sg_qr_state { SG_QR_PENDING, SG_QR_DELIVERED, SG_QR_FAILED };
enum sg_q_ret { SG_RET_DEFAULT, SG_RET_FULL, SG_RET_HDRS };
enum sg_q_body { SG_BODY_DEFAULT, SG_BODY_7BIT, SG_BODY_8BITMIME };

struct sg_qrcpt {
	char *addr;
	char *orcpt;            /* "rfc822;user@example.org" (xtext-decoded) or NULL */
	unsigned notify;        /* SG_NOTIFY_*; 0 = not given (FAILURE, DELAY) */
	enum sg_qr_state state;
	bool done;              /* N record: reported or nothing to report */
	char status[16];        /* last enhanced status, "4.4.1" */
	char *remote_mta;       /* last remote MTA, or NULL */
	char *diag;             /* last diagnostic, "smtp; 550 5.1.1 ...", or NULL */
	int64_t time;           /* time of the last result */
};

struct sg_envelope {
	char id[SG_QUEUE_ID_MAX];
	int64_t arrival;
	char *from;             /* "" for the null sender */
	char *login;            /* "" when none */
	uint64_t size;
	enum sg_q_body body;
	bool smtputf8;
	enum sg_q_ret ret;
	char *envid;            /* xtext-decoded, or NULL */
	bool is_dsn;
	unsigned attempts;
	int64_t last_attempt;   /* 0 = never */
	bool warned;
	size_t nrcpts;
	struct sg_qrcpt *rcpts;
	size_t valid_len;       /* octets of the file up to the last complete line */
};

/* ---- the envelope format (pure) ---- */

void sg_envelope_init(struct sg_envelope *e);
void sg_envelope_free(struct sg_envelope *e);
/* Add a recipient (copies the strings). */
void sg_envelope_add_rcpt(struct sg_envelope *e, const char *addr, unsigned notify,
			  const char *orcpt);
/* The header block (through "."), into out. */
void sg_envelope_format(const struct sg_envelope *e, struct sg_buf *out);
/* Parse a whole envelope file. A last line without LF is ignored (a torn
 * append); e->valid_len says where the complete lines end. 0, or -1 with
 * *error_r (a static or thread-local string). e must be sg_envelope_init()ed;
 * on error it is left freed. */
int sg_envelope_parse(const char *data, size_t len, struct sg_envelope *e, const char **error_r);
/* True when every recipient is done (nothing left to deliver or report). */
bool sg_envelope_finished(const struct sg_envelope *e);
size_t sg_envelope_pending(const struct sg_envelope *e);
/* Escape a value for a record ("-" for NULL or ""). */
void sg_qesc(struct sg_buf *out, const char *value);
/* Parse a NOTIFY list ("SUCCESS,FAILURE", "NEVER"); -1 when invalid (RFC
 * 3461 4.1: NEVER alone, the others in any combination). */
int sg_notify_parse(const char *s, unsigned *out);
const char *sg_notify_str(unsigned n, char *buf, size_t size);

/* Record builders (append to out; the caller collects one attempt's records
 * and hands them to sg_queue_append() in one call). */
void sg_qrec_attempt(struct sg_buf *out, int64_t t);
void sg_qrec_result(struct sg_buf *out, char kind, size_t idx, int64_t t, const char *status,
		    const char *mta, const char *diag);
void sg_qrec_done(struct sg_buf *out, size_t idx);
void sg_qrec_warned(struct sg_buf *out, int64_t t);
/* Apply records to an envelope in memory (the same parser as the file). */
int sg_envelope_apply(struct sg_envelope *e, const char *records, size_t len,
		      const char **error_r);

/* ---- the directory ---- */

struct sg_queue;

/* Create queue/{tmp,msg,env,ctl} under data_dir when missing. */
int sg_queue_open(const char *data_dir, struct sg_queue **q_r, const char **error_r);
void sg_queue_close(struct sg_queue **q);
const char *sg_queue_dir(const struct sg_queue *q);
/* "<seconds>.<16 hex>" */
void sg_queue_new_id(char id[SG_QUEUE_ID_MAX]);
bool sg_queue_id_valid(const char *id);

/* Durable commit of a new message; e->id must be set (sg_queue_new_id) and
 * e->size is set here. The message file is prefix + body (body may be NULL). */
int sg_queue_commit(struct sg_queue *q, struct sg_envelope *e, const struct sg_buf *prefix,
		    const struct sg_buf *body, const char **error_r);
/* The same with the client's data in a spool file (read with pread from
 * offset 0, the fd stays open): memory does not depend on the size. Both
 * commits mark BODY=8BITMIME when no BODY was given and the message holds
 * octets above 127. */
int sg_queue_commit_fd(struct sg_queue *q, struct sg_envelope *e, const struct sg_buf *prefix,
		       int body_fd, size_t body_len, const char **error_r);
/* Read and parse env/<id>. With repair (only the thread that holds the
 * message may ask), a torn last line is cut off the file. 1, 0 when absent,
 * -1 on error (a corrupt file: the holder moves it aside). */
int sg_queue_load(struct sg_queue *q, const char *id, struct sg_envelope *e, bool repair,
		  const char **error_r);
/* Append records and fsync. 0 or -1. */
int sg_queue_append(struct sg_queue *q, const char *id, const struct sg_buf *records,
		    const char **error_r);
/* The message file into out (its cap applies). 0 or -1. */
int sg_queue_read_msg(struct sg_queue *q, const char *id, struct sg_buf *out,
		      const char **error_r);
/* Remove a finished message: env/<id> first (fsync'd), then msg/<id>. */
int sg_queue_remove(struct sg_queue *q, const char *id, const char **error_r);
/* Move a corrupt envelope aside to queue/corrupt/<id> (kept for a human). */
void sg_queue_quarantine(struct sg_queue *q, const char *id);

/* Every envelope id in env/ (unordered); removes tmp/ files and message
 * files without an envelope. cb returns nonzero to stop. */
int sg_queue_scan(struct sg_queue *q, int (*cb)(const char *id, void *arg), void *arg,
		  const char **error_r);

#endif
