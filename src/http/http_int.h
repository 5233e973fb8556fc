/*
 * http_int.h: what http.c (server, access control, events stream), api.c
 * (the JSON API), message.c (reading stored messages) and page.c (the
 * embedded web page) share. Not a public interface.
 */
#ifndef SG_HTTP_INT_H
#define SG_HTTP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "http/http.h"

struct MHD_Connection;

/* Who is asking. admin: the admin token, or --http-open. Otherwise login
 * is the account authenticated with HTTP Basic and sees only its inbox. */
struct sg_http_principal {
	bool admin;
	char login[256];
};

/* A request as the handlers see it. */
struct sg_http_req {
	struct sg_http *h;
	struct MHD_Connection *conn;
	const char *method;
	const char *path;          /* without the query */
	const struct sg_buf *body;
	struct sg_http_principal who;
};

/* A response built by a handler; http.c sends it. */
struct sg_http_resp {
	unsigned status;
	const char *content_type;  /* static string */
	struct sg_buf body;
	char disposition[640];     /* Content-Disposition, when not "" */
	int fd;                    /* > 0: send this file (http.c closes it) instead of body */
	const char *allow;         /* 405: the Allow header (static string) */
};

/* --- http.c --- */
struct sg_http_ctx {
	struct sg_cred_store *creds;
	struct sg_mail_store *mail;
	struct sg_events *events;
	struct sg_faults *faults;
	struct sg_metrics *metrics;
	char *data_dir;
	struct sg_search *search;    /* the full-text index, NULL without */
	bool accept_any;
	unsigned max_messages_per_inbox, max_message_age;
	char spamd_address[128];     /* "" = no spam score */
	struct sg_indexer *indexer;
	struct sg_http_relay relay;   /* control == NULL: no relay (api_queue.c) */
};
const struct sg_http_ctx *sg_http_ctx(const struct sg_http *h);
const char *sg_http_arg(const struct sg_http_req *r, const char *name);
bool sg_http_may_see(const struct sg_http_principal *who, const char *login);
/* {"error": msg} with status */
void sg_http_error(struct sg_http_resp *resp, unsigned status, const char *msg);
/* The first query parameter of the request not in allowed (NULL-terminated),
 * copied to out; false when every one is known. */
bool sg_http_unknown_arg(const struct sg_http_req *r, const char *const *allowed, char *out,
			 size_t size);
/* A stream ticket for EventSource (which cannot send headers). */
int sg_http_ticket_new(struct sg_http *h, const struct sg_http_principal *who, char *out,
		       size_t size);

/* --- api.c --- */
/* Route an /api/v1/... or /metrics request (authenticated). */
void sg_api_handle(struct sg_http_req *r, struct sg_http_resp *resp);

/* --- api_queue.c (relay queue control, release) --- */
void sg_api_queue(struct sg_http_req *r, struct sg_http_resp *resp, const char *rest);
void sg_api_release(struct sg_http_req *r, struct sg_http_resp *resp, const char *login,
		    const char *id);
void sg_api_queue_metrics(const struct sg_http_ctx *ctx, struct sg_buf *out);

/* --- message.c --- */
struct sg_msg_summary {
	char id[64];
	char login[256];           /* inbox */
	int64_t mtime_ms;
	uint64_t size;
	char *envelope_from;       /* Return-Path */
	char **rcpts;              /* X-Smtpgate-Rcpt */
	size_t nrcpts;
	char *from, *to, *subject, *date, *message_id; /* decoded header values */
	char listener[32], client[64], mech[32], auth_login[256], tls_version[32], cipher[128];
	bool past_server_block;    /* parsing: the server's Received field was seen */
};
/* Read and parse the header section of a stored message. 0, or -1 (absent). */
int sg_msg_summary_load(struct sg_mail_store *mail, const char *login, const char *id,
			int64_t mtime_ns, uint64_t size, struct sg_msg_summary *s);
void sg_msg_summary_free(struct sg_msg_summary *s);
/* The summary as a JSON object (jansson json_t *, as void * to keep jansson
 * out of this header). */
void *sg_msg_summary_json(const struct sg_msg_summary *s);
/* Does the summary match a search (case-insensitive substring of from, to,
 * subject, recipients)? */
bool sg_msg_summary_match(const struct sg_msg_summary *s, const char *q);
/* Parse a whole message with GMime: headers, text, html, attachments.
 * Returns a json_t * (as void *), or NULL when it cannot be read. */
void *sg_msg_detail_json(struct sg_mail_store *mail, const char *login, const char *id);
/* Attachment number idx (0-based, as listed by detail), decoded. 1 found,
 * 0 absent, -1 error. name_r/type_r are malloc'd. */
int sg_msg_attachment(struct sg_mail_store *mail, const char *login, const char *id, size_t idx,
		      struct sg_buf *out, char **name_r, char **type_r);
void sg_msg_init(void);
/* Index one stored message (search.h): 1 indexed, 0 absent, -1 error.
 * Bounded like every other parse (the same parse slots). */
struct sg_search;
int sg_msg_index(struct sg_mail_store *mail, struct sg_search *search, const char *login,
		 const char *id, int64_t mtime_ns, const char **error_r);

/* The links of a message (HTML href with the anchor text, URLs in the
 * text part) and the HTML-check report (features of src/http/htmlcheck.json
 * found in its HTML). json_t * or NULL when absent. Bounded like a view. */
void *sg_msg_links_json(struct sg_mail_store *mail, const char *login, const char *id);
void *sg_msg_htmlcheck_json(struct sg_mail_store *mail, const char *login, const char *id);

/* --- spamd.c --- */
/* Ask spamd at addr (HOST:PORT) to score the message open on msg_fd. 1
 * scored, 0 not sent (too large: *error_r says why), -1 error (*error_r). */
int sg_spamd_check(const char *addr, int msg_fd, double *score, double *threshold, bool *spam,
		   const char **error_r);

/* --- index.c: the background indexer --- */
struct sg_indexer;
/* Start the indexer thread: it catches up with the Maildirs, then indexes
 * each captured message announced on the events stream (never on an SMTP
 * loop). NULL when the index cannot be opened (search then falls back to
 * a scan). It also applies retention (max_per_inbox messages, max_age_s
 * seconds; 0 = no limit) after each new message and every 30 s. */
struct sg_indexer *sg_indexer_start(const char *data_dir, struct sg_mail_store *mail,
				    struct sg_events *events, struct sg_search *search,
				    unsigned max_per_inbox, unsigned max_age_s);
void sg_indexer_stop(struct sg_indexer **ix);
/* Wait (at most timeout_ms) until every message announced so far is
 * indexed: a search made after a 250 finds that message (read-your-writes),
 * however busy the indexer stays with later ones. */
void sg_indexer_flush(struct sg_indexer *ix, unsigned timeout_ms);

/* --- page.c --- */
struct sg_http_asset {
	const char *path;
	const char *content_type;
	const char *body;
};
const struct sg_http_asset *sg_http_asset_find(const char *path);
/* src/http/htmlcheck.json (compiled in): the HTML-check data. */
const char *sg_http_htmlcheck_data(void);

#endif
