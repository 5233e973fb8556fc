/*
 * message.c: reading stored messages for the API.
 *
 * Summaries (message lists) read only the header section (at most
 * HEADER_MAX bytes) with a small parser: the headers smtpgate added at the
 * top (Return-Path, X-Smtpgate-Envelope, X-Smtpgate-Rcpt, RFC 5322 section
 * 3.6.7 trace fields) and From/To/Subject/Date/Message-ID, decoded with
 * GMime's RFC 2047 decoder. Details (one message) are parsed whole by GMime
 * 3: every header, the first text/plain and text/html parts that are not
 * attachments, and the attachments (name, type, decoded size).
 *
 * Everything handed to jansson is valid UTF-8 (json_string refuses
 * anything else): values are decoded, then repaired with g_utf8_make_valid.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <jansson.h>

#include "core/util.h"
#include "http/http_int.h"
#include "store/mail.h"
#include "store/search.h"

#define HEADER_MAX (256 * 1024)
#define BODY_TEXT_MAX (4 * 1024 * 1024)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void do_init(void)
{
	g_mime_init();
}

void sg_msg_init(void)
{
	pthread_once(&init_once, do_init);
}

/* A json string from bytes of unknown quality. */
static json_t *jstr(const char *s)
{
	if (s == NULL)
		return json_null();
	if (g_utf8_validate(s, -1, NULL)) {
		json_t *j = json_string(s);
		if (j != NULL)
			return j;
	}
	char *fixed = g_utf8_make_valid(s, -1);
	json_t *j = json_string(fixed);
	g_free(fixed);
	return j != NULL ? j : json_string("");
}

static char *decode_header(const char *raw)
{
	char *d = g_mime_utils_header_decode_text(NULL, raw);
	char *out;
	if (d == NULL)
		return sg_strdup(raw);
	if (g_utf8_validate(d, -1, NULL)) {
		out = sg_strdup(d);
	} else {
		char *fixed = g_utf8_make_valid(d, -1);
		out = sg_strdup(fixed);
		g_free(fixed);
	}
	g_free(d);
	return out;
}

/* ---- summaries ---- */

static void strip_angle(const char *in, char *out, size_t size)
{
	while (*in == ' ' || *in == '\t')
		in++;
	size_t n = strlen(in);
	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == '\t'))
		n--;
	if (n >= 2 && in[0] == '<' && in[n - 1] == '>') {
		in++;
		n -= 2;
	}
	if (n >= size)
		n = size - 1;
	memcpy(out, in, n);
	out[n] = '\0';
}

/* "listener=submission; client=127.0.0.1; auth=PLAIN; login=...; tls=...; cipher=..." */
static void parse_envelope(struct sg_msg_summary *s, const char *v)
{
	char *copy = sg_strdup(v);
	char *p = copy;
	while (p != NULL && *p != '\0') {
		char *semi = strchr(p, ';');
		if (semi != NULL)
			*semi = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		char *eq = strchr(p, '=');
		if (eq != NULL) {
			*eq = '\0';
			const char *val = eq + 1;
			if (strcmp(p, "listener") == 0)
				sg_strlcpy(s->listener, val, sizeof(s->listener));
			else if (strcmp(p, "client") == 0)
				sg_strlcpy(s->client, val, sizeof(s->client));
			else if (strcmp(p, "auth") == 0)
				sg_strlcpy(s->mech, val, sizeof(s->mech));
			else if (strcmp(p, "login") == 0)
				sg_strlcpy(s->auth_login, val, sizeof(s->auth_login));
			else if (strcmp(p, "tls") == 0)
				sg_strlcpy(s->tls_version, val, sizeof(s->tls_version));
			else if (strcmp(p, "cipher") == 0)
				sg_strlcpy(s->cipher, val, sizeof(s->cipher));
		}
		p = semi != NULL ? semi + 1 : NULL;
	}
	free(copy);
}

static void take_header(struct sg_msg_summary *s, const char *name, const char *value)
{
	char tmp[1024];
	/* Envelope data is read only from the server's own block: the fields
	 * smtpgate writes in front of the message, which end with its Received
	 * field. Anything after that came from the client (issue 10 item 16). */
	if (strcasecmp(name, "Received") == 0) {
		s->past_server_block = true;
		return;
	}
	bool server = !s->past_server_block;
	if (!server && (strcasecmp(name, "Return-Path") == 0 || sg_prefix_ci(name, "X-Smtpgate-")))
		return;
	if (strcasecmp(name, "Return-Path") == 0 && s->envelope_from == NULL) {
		strip_angle(value, tmp, sizeof(tmp));
		s->envelope_from = sg_strdup(tmp);
	} else if (strcasecmp(name, "X-Smtpgate-Envelope") == 0 && s->listener[0] == '\0') {
		parse_envelope(s, value);
	} else if (strcasecmp(name, "X-Smtpgate-Rcpt") == 0 && s->nrcpts < 1000) {
		strip_angle(value, tmp, sizeof(tmp));
		s->rcpts = sg_realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*s->rcpts));
		s->rcpts[s->nrcpts++] = sg_strdup(tmp);
	} else if (strcasecmp(name, "From") == 0 && s->from == NULL) {
		s->from = decode_header(value);
	} else if (strcasecmp(name, "To") == 0 && s->to == NULL) {
		s->to = decode_header(value);
	} else if (strcasecmp(name, "Subject") == 0 && s->subject == NULL) {
		s->subject = decode_header(value);
	} else if (strcasecmp(name, "Date") == 0 && s->date == NULL) {
		s->date = decode_header(value);
	} else if (strcasecmp(name, "Message-ID") == 0 && s->message_id == NULL) {
		s->message_id = decode_header(value);
	}
}

/* Walk the header section (RFC 5322 section 2.2: unfold continuation lines). */
static void parse_headers(struct sg_msg_summary *s, char *text, size_t len)
{
	struct sg_buf cur;
	sg_buf_init(&cur, 64 * 1024);
	size_t i = 0;
	bool have = false;
	while (i < len) {
		size_t e = i;
		while (e < len && text[e] != '\n')
			e++;
		size_t l = e - i;
		if (l > 0 && text[i + l - 1] == '\r')
			l--;
		if (l == 0)
			break; /* end of the header section */
		if ((text[i] == ' ' || text[i] == '\t') && have) {
			sg_buf_append(&cur, " ", 1);
			size_t k = i;
			while (k < i + l && (text[k] == ' ' || text[k] == '\t'))
				k++;
			sg_buf_append(&cur, text + k, i + l - k);
		} else {
			if (have) {
				char *c = (char *)cur.data;
				char *colon = strchr(c, ':');
				if (colon != NULL) {
					*colon = '\0';
					const char *v = colon + 1;
					while (*v == ' ' || *v == '\t')
						v++;
					take_header(s, c, v);
				}
			}
			sg_buf_reset(&cur);
			sg_buf_append(&cur, text + i, l);
			have = true;
		}
		i = e + 1;
	}
	if (have) {
		char *c = (char *)cur.data;
		char *colon = strchr(c, ':');
		if (colon != NULL) {
			*colon = '\0';
			const char *v = colon + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			take_header(s, c, v);
		}
	}
	sg_buf_free(&cur);
}

int sg_msg_summary_load(struct sg_mail_store *mail, const char *login, const char *id,
			int64_t mtime_ns, uint64_t size, struct sg_msg_summary *s)
{
	memset(s, 0, sizeof(*s));
	sg_strlcpy(s->id, id, sizeof(s->id));
	sg_strlcpy(s->login, login, sizeof(s->login));
	s->mtime_ms = mtime_ns / 1000000;
	s->size = size;
	int fd = sg_mail_open_message(mail, login, id);
	if (fd < 0)
		return -1;
	char *text = sg_malloc(HEADER_MAX + 1);
	size_t len = 0;
	while (len < HEADER_MAX) {
		ssize_t n = read(fd, text + len, HEADER_MAX - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		text[len] = '\0';
		if (strstr(text, "\n\n") != NULL || strstr(text, "\r\n\r\n") != NULL)
			break;
	}
	text[len] = '\0';
	if (size == 0) {
		off_t end = lseek(fd, 0, SEEK_END);
		s->size = end > 0 ? (uint64_t)end : len;
	}
	close(fd);
	parse_headers(s, text, len);
	free(text);
	return 0;
}

void sg_msg_summary_free(struct sg_msg_summary *s)
{
	free(s->envelope_from);
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	free(s->from);
	free(s->to);
	free(s->subject);
	free(s->date);
	free(s->message_id);
	memset(s, 0, sizeof(*s));
}

void *sg_msg_summary_json(const struct sg_msg_summary *s)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "inbox", jstr(s->login));
	json_object_set_new(o, "from", jstr(s->from != NULL ? s->from : s->envelope_from));
	json_object_set_new(o, "envelope_from", jstr(s->envelope_from != NULL ? s->envelope_from : ""));
	json_t *to = json_array();
	for (size_t i = 0; i < s->nrcpts; i++)
		json_array_append_new(to, jstr(s->rcpts[i]));
	json_object_set_new(o, "to", to);
	json_object_set_new(o, "header_to", jstr(s->to));
	json_object_set_new(o, "subject", jstr(s->subject != NULL ? s->subject : ""));
	json_object_set_new(o, "date", jstr(s->date));
	json_object_set_new(o, "message_id", jstr(s->message_id));
	json_object_set_new(o, "received_ms", json_integer(s->mtime_ms));
	json_object_set_new(o, "size", json_integer((json_int_t)s->size));
	json_object_set_new(o, "listener", jstr(s->listener));
	json_object_set_new(o, "client_ip", jstr(s->client));
	if (s->mech[0] != '\0' && strcmp(s->mech, "none") != 0)
		json_object_set_new(o, "auth", json_pack("{s:o,s:o}", "mechanism", jstr(s->mech),
							 "login", jstr(s->auth_login)));
	else
		json_object_set_new(o, "auth", json_null());
	if (s->tls_version[0] != '\0' && strcmp(s->tls_version, "none") != 0)
		json_object_set_new(o, "tls", json_pack("{s:o,s:o}", "version", jstr(s->tls_version),
							"cipher", jstr(s->cipher)));
	else
		json_object_set_new(o, "tls", json_null());
	return o;
}

static bool contains_ci(const char *hay, const char *needle)
{
	return hay != NULL && strcasestr(hay, needle) != NULL;
}

bool sg_msg_summary_match(const struct sg_msg_summary *s, const char *q)
{
	if (q == NULL || q[0] == '\0')
		return true;
	if (contains_ci(s->from, q) || contains_ci(s->to, q) || contains_ci(s->subject, q) ||
	    contains_ci(s->envelope_from, q) || contains_ci(s->id, q))
		return true;
	for (size_t i = 0; i < s->nrcpts; i++)
		if (contains_ci(s->rcpts[i], q))
			return true;
	return false;
}

/* ---- details ----
 *
 * Everything done to one message for the API is bounded in advance,
 * whatever the message contains (issue 10 item 1). GLib and GMime allocate
 * with g_malloc, which aborts the whole process (SMTP included) when memory
 * runs out, so the inputs handed to them are bounded instead:
 *   - a pre-scan of the file (one linear pass, no allocation) refuses to
 *     hand GMime a file over DETAIL_FILE_MAX bytes, with more than
 *     MIME_PARTS_MAX Content-Type lines (which bounds the part count and the
 *     nesting depth) or more than HEADER_LINES_MAX header-like lines;
 *   - the walk over the parsed tree stops at MIME_DEPTH_MAX levels and
 *     MIME_PARTS_MAX parts;
 *   - a text part is decoded only when its encoded size is at most
 *     TEXT_PART_MAX;
 *   - cid: images are inlined in one pass into an output capped at
 *     BODY_TEXT_MAX, at most INLINE_SUBST_MAX substitutions, each image
 *     encoded once (at most CID_IMAGE_MAX decoded bytes);
 *   - at most PARSE_SLOTS parses run at once on the whole HTTP side, so the
 *     memory of all of them together is bounded too.
 * A message over a limit is shown degraded: "degraded": true and "notes"
 * say what was left out (images not inlined, parts not listed, the text
 * shown raw), never an error and never an abort. */

#define DETAIL_FILE_MAX ((uint64_t)32 << 20)
#define MIME_PARTS_MAX 500
#define MIME_DEPTH_MAX 32
#define HEADER_LINES_MAX 20000
#define TEXT_PART_MAX ((int64_t)8 << 20)
#define INLINE_SUBST_MAX 64
#define CID_MAX 32
#define CID_IMAGE_MAX (2 * 1024 * 1024)
#define RAW_EXCERPT_MAX (256 * 1024)
#define HEADER_VALUE_MAX (16 * 1024)
#define PARSE_SLOTS 2
#define PARSE_WAIT_MS 15000

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static unsigned slots_busy;

/* Take a parse slot, waiting at most PARSE_WAIT_MS. */
static bool slot_take(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += PARSE_WAIT_MS / 1000;
	pthread_mutex_lock(&slot_lock);
	while (slots_busy >= PARSE_SLOTS)
		if (pthread_cond_timedwait(&slot_cv, &slot_lock, &ts) == ETIMEDOUT)
			break;
	bool ok = slots_busy < PARSE_SLOTS;
	if (ok)
		slots_busy++;
	pthread_mutex_unlock(&slot_lock);
	return ok;
}

static void slot_give(void)
{
	pthread_mutex_lock(&slot_lock);
	slots_busy--;
	pthread_cond_signal(&slot_cv);
	pthread_mutex_unlock(&slot_lock);
}

struct scan {
	uint64_t size;
	size_t content_types;    /* lines starting "Content-Type" */
	size_t header_lines;     /* lines starting "<token>:" */
	uint64_t body_offset;    /* first byte after the top header section */
};

static bool tok_char(unsigned char c)
{
	return c > 32 && c < 127 && c != ':';
}

/* One pass over the file, no allocation. 0, or -1 on a read error. */
static int prescan(int fd, struct scan *sc)
{
	/* "Content-Type" at a line start, whatever follows (an upper bound) */
	static const char ct[] = "content-type";
	uint8_t chunk[65536];
	bool line_start = true, in_token = false, top_headers = true;
	size_t col = 0, ctpos = 0;
	bool ct_alive = false;
	int nl_run = 0;
	memset(sc, 0, sizeof(*sc));
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			unsigned char c = chunk[i];
			sc->size++;
			if (c == '\n') {
				line_start = true;
				if (top_headers && ++nl_run == 2) {
					top_headers = false;
					sc->body_offset = sc->size;
				}
				continue;
			}
			if (c != '\r')
				nl_run = 0;
			if (line_start) {
				line_start = false;
				col = 0;
				ctpos = 0;
				ct_alive = true;
				in_token = tok_char(c);
			}
			if (ct_alive) {
				if (ctpos < sizeof(ct) - 1 && (c | 0x20) == (unsigned char)ct[ctpos]) {
					if (++ctpos == sizeof(ct) - 1) {
						sc->content_types++;
						ct_alive = false;
					}
				} else {
					ct_alive = false;
				}
			}
			if (in_token) {
				if (c == ':' && col > 0) {
					sc->header_lines++;
					in_token = false;
				} else if (!tok_char(c)) {
					in_token = false;
				}
			}
			col++;
		}
	}
	if (top_headers)
		sc->body_offset = sc->size;
	return 0;
}

static void note(json_t *notes, const char *text)
{
	json_array_append_new(notes, json_string(text));
}

static GMimeMessage *parse_fd(int fd)
{
	if (lseek(fd, 0, SEEK_SET) != 0) {
		close(fd);
		return NULL;
	}
	GMimeStream *stream = g_mime_stream_fs_new(fd); /* owns fd */
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	g_object_unref(stream);
	/* parts stay substreams of the file instead of copies in memory */
	g_mime_parser_set_persist_stream(parser, TRUE);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	return msg;
}

/* Open, pre-scan and parse a message within the limits. NULL with *why set
 * (a static note) when it is over a limit, NULL with *why NULL when absent
 * or unreadable. */
static GMimeMessage *parse_bounded(struct sg_mail_store *mail, const char *login, const char *id,
				   struct scan *sc, const char **why)
{
	*why = NULL;
	int fd = sg_mail_open_message(mail, login, id);
	if (fd < 0)
		return NULL;
	if (prescan(fd, sc) < 0) {
		close(fd);
		return NULL;
	}
	if (sc->size > DETAIL_FILE_MAX)
		*why = "the message is too large to be parsed for display; download it raw";
	else if (sc->content_types > MIME_PARTS_MAX)
		*why = "the message has too many MIME parts to be parsed for display";
	else if (sc->header_lines > HEADER_LINES_MAX)
		*why = "the message has too many header lines to be parsed for display";
	if (*why != NULL) {
		close(fd);
		return NULL;
	}
	return parse_fd(fd);
}

struct walk {
	GMimeObject *cids[CID_MAX]; /* image parts with a Content-ID (cid: URLs in the HTML) */
	size_t ncids;
	json_t *atts;
	char *text;
	char *html;
	size_t idx;               /* attachment counter */
	size_t want;              /* for sg_msg_attachment: the index wanted */
	GMimeObject *found;
	size_t parts;
	bool too_deep, too_many, text_too_big;
};

static bool is_attachment(GMimeObject *part)
{
	if (GMIME_IS_MESSAGE_PART(part))
		return true;
	if (!GMIME_IS_PART(part))
		return false;
	GMimePart *p = (GMimePart *)part;
	if (g_mime_part_is_attachment(p) || g_mime_part_get_filename(p) != NULL)
		return true;
	GMimeContentType *ct = g_mime_object_get_content_type(part);
	return !g_mime_content_type_is_type(ct, "text", "plain") &&
	       !g_mime_content_type_is_type(ct, "text", "html");
}

static ssize_t decoded_size(GMimeObject *part)
{
	GMimeStream *null = g_mime_stream_null_new();
	ssize_t n = -1;
	if (GMIME_IS_MESSAGE_PART(part)) {
		GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)part);
		if (m != NULL)
			n = g_mime_object_write_to_stream((GMimeObject *)m, NULL, null);
	} else {
		GMimeDataWrapper *w = g_mime_part_get_content((GMimePart *)part);
		if (w != NULL)
			n = g_mime_data_wrapper_write_to_stream(w, null);
	}
	g_object_unref(null);
	return n;
}

/* Encoded length of a leaf part's content, -1 if unknown. */
static int64_t encoded_size(GMimeObject *part)
{
	if (!GMIME_IS_PART(part))
		return -1;
	GMimeDataWrapper *w = g_mime_part_get_content((GMimePart *)part);
	GMimeStream *st = w != NULL ? g_mime_data_wrapper_get_stream(w) : NULL;
	return st != NULL ? g_mime_stream_length(st) : -1;
}

static void leaf(GMimeObject *part, struct walk *w)
{
	if (is_attachment(part)) {
		size_t idx = w->idx++;
		if (w->atts == NULL) {
			if (idx == w->want && w->found == NULL)
				w->found = part;
			return;
		}
		GMimeContentType *ct = g_mime_object_get_content_type(part);
		char *type = ct != NULL ? g_mime_content_type_get_mime_type(ct) : g_strdup("application/octet-stream");
		const char *name = GMIME_IS_PART(part) ? g_mime_part_get_filename((GMimePart *)part) : NULL;
		const char *cid = g_mime_object_get_content_id(part);
		const char *disp = g_mime_object_get_disposition(part);
		json_t *a = json_object();
		json_object_set_new(a, "index", json_integer((json_int_t)idx));
		json_object_set_new(a, "name", jstr(name != NULL ? name : GMIME_IS_MESSAGE_PART(part) ? "message.eml" : ""));
		json_object_set_new(a, "type", jstr(type));
		json_object_set_new(a, "size", json_integer((json_int_t)decoded_size(part)));
		json_object_set_new(a, "content_id", jstr(cid));
		json_object_set_new(a, "inline", json_boolean(disp != NULL && strcasecmp(disp, "inline") == 0));
		json_array_append_new(w->atts, a);
		if (cid != NULL && GMIME_IS_PART(part) && w->ncids < CID_MAX &&
		    g_mime_content_type_is_type(ct, "image", "*"))
			w->cids[w->ncids++] = part;
		g_free(type);
		return;
	}
	if (w->atts == NULL || !GMIME_IS_TEXT_PART(part))
		return;
	GMimeContentType *ct = g_mime_object_get_content_type(part);
	bool html = g_mime_content_type_is_type(ct, "text", "html");
	if ((html && w->html != NULL) || (!html && w->text != NULL))
		return;
	int64_t esize = encoded_size(part);
	if (esize < 0 || esize > TEXT_PART_MAX) {
		w->text_too_big = true;
		return;
	}
	char *t = g_mime_text_part_get_text((GMimeTextPart *)part);
	if (html)
		w->html = t;
	else
		w->text = t;
}

/* Our own walk (not g_mime_message_foreach) so that depth and part count
 * are bounded whatever the tree looks like. */
static void walk_obj(GMimeObject *obj, struct walk *w, unsigned depth)
{
	if (obj == NULL)
		return;
	if (depth > MIME_DEPTH_MAX) {
		w->too_deep = true;
		return;
	}
	if (w->parts >= MIME_PARTS_MAX) {
		w->too_many = true;
		return;
	}
	w->parts++;
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = (GMimeMultipart *)obj;
		int n = g_mime_multipart_get_count(mp);
		for (int i = 0; i < n && !w->too_many; i++)
			walk_obj(g_mime_multipart_get_part(mp, i), w, depth + 1);
		return;
	}
	leaf(obj, w);
}

static json_t *text_json(const char *t, bool *truncated)
{
	if (t == NULL)
		return json_null();
	size_t n = strlen(t);
	if (n <= BODY_TEXT_MAX)
		return jstr(t);
	*truncated = true;
	/* cut at a character boundary */
	while (n > BODY_TEXT_MAX || (n > 0 && ((unsigned char)t[n] & 0xc0) == 0x80))
		n--;
	char *cut = sg_strndup(t, n);
	json_t *j = jstr(cut);
	free(cut);
	return j;
}

struct cid_img {
	GMimeObject *part;
	const char *cid;
	size_t cidlen;
	char *uri;               /* g_malloc'd data: URI, built once */
	bool failed;
};

/* Build the data: URI of one image once, if it fits in budget bytes. */
static const char *img_uri(struct cid_img *im, size_t budget)
{
	if (im->uri != NULL)
		return strlen(im->uri) <= budget ? im->uri : NULL;
	if (im->failed)
		return NULL;
	int64_t esize = encoded_size(im->part);
	/* base64 of the decoded image is at most about the encoded size (which
	 * is base64 or larger) plus the prefix */
	if (esize < 0 || esize > (int64_t)CID_IMAGE_MAX * 2 || (uint64_t)esize / 3 * 4 > budget + 4096) {
		if (esize < 0 || esize > (int64_t)CID_IMAGE_MAX * 2)
			im->failed = true;
		return NULL;
	}
	GMimeDataWrapper *dw = g_mime_part_get_content((GMimePart *)im->part);
	if (dw == NULL) {
		im->failed = true;
		return NULL;
	}
	GMimeStream *mem = g_mime_stream_mem_new();
	ssize_t n = g_mime_data_wrapper_write_to_stream(dw, mem);
	GByteArray *ba = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)mem);
	if (n > 0 && ba != NULL && ba->len <= CID_IMAGE_MAX) {
		char *type = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(im->part));
		char *b64 = g_base64_encode(ba->data, ba->len);
		im->uri = g_strconcat("data:", type, ";base64,", b64, NULL);
		g_free(b64);
		g_free(type);
	} else {
		im->failed = true;
	}
	g_object_unref(mem);
	if (im->uri == NULL)
		return NULL;
	return strlen(im->uri) <= budget ? im->uri : NULL;
}

static bool cid_end(char c)
{
	return c == '\0' || c == '"' || c == '\'' || c == '>' || c == ' ' || c == '\t' || c == '\r' ||
	       c == '\n' || c == ')' || c == '&';
}

/* Inline images: "cid:<Content-ID>" in the HTML becomes a data: URL (RFC 2392
 * section 2), the only kind of image the page's CSP lets the sandboxed frame
 * load, so embedded logos show while remote images stay blocked. One pass;
 * the output never passes BODY_TEXT_MAX and at most INLINE_SUBST_MAX
 * references are replaced: the others stay cid: URLs (*skipped set). */
static char *inline_cids(char *html, const struct walk *w, bool *skipped)
{
	if (html == NULL || w->ncids == 0)
		return html;
	size_t hlen = strlen(html);
	if (hlen >= BODY_TEXT_MAX) {
		*skipped = true; /* the text itself is cut; nothing is inlined */
		return html;
	}
	struct cid_img imgs[CID_MAX];
	size_t nimgs = 0;
	for (size_t i = 0; i < w->ncids; i++) {
		const char *cid = g_mime_object_get_content_id(w->cids[i]);
		if (cid == NULL || cid[0] == '\0')
			continue;
		imgs[nimgs++] = (struct cid_img){.part = w->cids[i], .cid = cid, .cidlen = strlen(cid)};
	}
	struct sg_buf out;
	sg_buf_init(&out, BODY_TEXT_MAX);
	size_t subst = 0;
	const char *p = html;
	bool ok = true;
	while (ok) {
		const char *c = strcasestr(p, "cid:");
		if (c == NULL) {
			ok = sg_buf_append_str(&out, p) == 0;
			break;
		}
		const char *ref = c + 4;
		struct cid_img *hit = NULL;
		for (size_t i = 0; i < nimgs; i++)
			if (strncmp(ref, imgs[i].cid, imgs[i].cidlen) == 0 && cid_end(ref[imgs[i].cidlen])) {
				hit = &imgs[i];
				break;
			}
		ok = sg_buf_append(&out, p, (size_t)(c - p)) == 0;
		if (!ok)
			break;
		if (hit == NULL) {
			ok = sg_buf_append(&out, c, 4) == 0;
			p = ref;
			continue;
		}
		/* what must still fit after this reference: the rest of the html */
		size_t rest = hlen - (size_t)(ref + hit->cidlen - html);
		size_t room = out.max - out.len;
		const char *uri = NULL;
		if (subst < INLINE_SUBST_MAX && room > rest)
			uri = img_uri(hit, room - rest);
		if (uri != NULL) {
			ok = sg_buf_append_str(&out, uri) == 0;
			subst++;
		} else {
			*skipped = true;
			ok = sg_buf_append(&out, c, 4 + hit->cidlen) == 0;
		}
		p = ref + hit->cidlen;
	}
	for (size_t i = 0; i < nimgs; i++)
		g_free(imgs[i].uri);
	if (!ok) {
		/* cannot happen (the budget keeps room for the rest), but never
		 * return half a document */
		*skipped = true;
		sg_buf_free(&out);
		return html;
	}
	g_free(html);
	char *res = g_strndup((const char *)out.data, out.len);
	sg_buf_free(&out);
	return res;
}

/* The degraded view of a message that is not parsed: its body as raw text
 * (at most RAW_EXCERPT_MAX bytes). */
static json_t *raw_excerpt(struct sg_mail_store *mail, const char *login, const char *id,
			   uint64_t offset, bool *truncated)
{
	int fd = sg_mail_open_message(mail, login, id);
	if (fd < 0)
		return json_null();
	char *t = sg_malloc(RAW_EXCERPT_MAX + 1);
	size_t len = 0;
	if (lseek(fd, (off_t)offset, SEEK_SET) == (off_t)offset) {
		while (len < RAW_EXCERPT_MAX) {
			ssize_t n = read(fd, t + len, RAW_EXCERPT_MAX - len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			len += (size_t)n;
		}
		char extra;
		if (len == RAW_EXCERPT_MAX && read(fd, &extra, 1) == 1)
			*truncated = true;
	}
	close(fd);
	t[len] = '\0';
	for (size_t i = 0; i < len; i++)
		if (t[i] == '\0')
			t[i] = ' ';
	json_t *j = jstr(t);
	free(t);
	return j;
}

void *sg_msg_detail_json(struct sg_mail_store *mail, const char *login, const char *id)
{
	struct sg_mail_entry *entries = NULL;
	size_t n = 0;
	int64_t mtime = 0;
	uint64_t size = 0;
	if (sg_mail_list(mail, login, &entries, &n, NULL) == 0) {
		for (size_t i = 0; i < n; i++)
			if (strcmp(entries[i].id, id) == 0) {
				mtime = entries[i].mtime_ns;
				size = entries[i].size;
			}
		free(entries);
	}
	struct sg_msg_summary s;
	if (sg_msg_summary_load(mail, login, id, mtime, size, &s) < 0)
		return NULL;
	json_t *o = sg_msg_summary_json(&s);
	sg_msg_summary_free(&s);
	json_t *notes = json_array();
	bool truncated = false;
	if (!slot_take()) {
		note(notes, "the server is busy parsing other messages; try again");
		json_object_set_new(o, "busy", json_true());
		json_object_set_new(o, "degraded", json_true());
		json_object_set_new(o, "notes", notes);
		return o;
	}
	struct scan sc;
	const char *why = NULL;
	GMimeMessage *msg = parse_bounded(mail, login, id, &sc, &why);
	if (msg == NULL) {
		slot_give();
		if (why == NULL) {
			json_object_set_new(o, "parse_error", json_true());
			json_decref(notes);
			return o;
		}
		note(notes, why);
		json_object_set_new(o, "headers", json_array());
		json_object_set_new(o, "text", raw_excerpt(mail, login, id, sc.body_offset, &truncated));
		json_object_set_new(o, "html", json_null());
		json_object_set_new(o, "truncated", json_boolean(truncated));
		json_object_set_new(o, "attachments", json_array());
		json_object_set_new(o, "degraded", json_true());
		json_object_set_new(o, "notes", notes);
		return o;
	}
	json_t *hdrs = json_array();
	GMimeHeaderList *hl = g_mime_object_get_header_list((GMimeObject *)msg);
	int hc = g_mime_header_list_get_count(hl);
	for (int i = 0; i < hc && i < 1000; i++) {
		GMimeHeader *hd = g_mime_header_list_get_header_at(hl, i);
		const char *v = g_mime_header_get_value(hd);
		char *cut = v != NULL && strlen(v) > HEADER_VALUE_MAX ? sg_strndup(v, HEADER_VALUE_MAX) : NULL;
		json_array_append_new(hdrs, json_pack("{s:o,s:o}", "name", jstr(g_mime_header_get_name(hd)),
						      "value", jstr(cut != NULL ? cut : v)));
		free(cut);
	}
	if (hc > 1000)
		note(notes, "only the first 1000 header fields are listed");
	json_object_set_new(o, "headers", hdrs);
	struct walk w = {.atts = json_array(), .want = (size_t)-1};
	walk_obj(g_mime_message_get_mime_part(msg), &w, 0);
	bool skipped = false;
	w.html = inline_cids(w.html, &w, &skipped);
	if (skipped)
		note(notes, "some inline images were not embedded (limits on size and count)");
	if (w.too_deep)
		note(notes, "parts nested deeper than the display limit are not shown");
	if (w.too_many)
		note(notes, "only the first parts of the message are listed");
	if (w.text_too_big)
		note(notes, "a text part is too large to be shown; download the message raw");
	json_object_set_new(o, "text", text_json(w.text, &truncated));
	json_object_set_new(o, "html", text_json(w.html, &truncated));
	json_object_set_new(o, "truncated", json_boolean(truncated));
	json_object_set_new(o, "attachments", w.atts);
	json_object_set_new(o, "degraded", json_boolean(json_array_size(notes) > 0));
	json_object_set_new(o, "notes", notes);
	g_free(w.text);
	g_free(w.html);
	g_object_unref(msg);
	slot_give();
	return o;
}

int sg_msg_attachment(struct sg_mail_store *mail, const char *login, const char *id, size_t idx,
		      struct sg_buf *out, char **name_r, char **type_r)
{
	*name_r = NULL;
	*type_r = NULL;
	if (!slot_take())
		return -1;
	struct scan sc;
	const char *why = NULL;
	GMimeMessage *msg = parse_bounded(mail, login, id, &sc, &why);
	if (msg == NULL) {
		slot_give();
		return why != NULL ? -1 : 0;
	}
	struct walk w = {.atts = NULL, .want = idx};
	walk_obj(g_mime_message_get_mime_part(msg), &w, 0);
	int ret = 0;
	if (w.found != NULL) {
		GMimeStream *mem = g_mime_stream_mem_new();
		ssize_t n;
		if (GMIME_IS_MESSAGE_PART(w.found)) {
			GMimeMessage *m = g_mime_message_part_get_message((GMimeMessagePart *)w.found);
			n = m != NULL ? g_mime_object_write_to_stream((GMimeObject *)m, NULL, mem) : -1;
		} else {
			GMimeDataWrapper *dw = g_mime_part_get_content((GMimePart *)w.found);
			n = dw != NULL ? g_mime_data_wrapper_write_to_stream(dw, mem) : -1;
		}
		GByteArray *ba = g_mime_stream_mem_get_byte_array((GMimeStreamMem *)mem);
		if (n >= 0 && ba != NULL && sg_buf_append(out, ba->data, ba->len) == 0) {
			const char *name = GMIME_IS_PART(w.found) ? g_mime_part_get_filename((GMimePart *)w.found)
								  : NULL;
			*name_r = sg_strdup(name != NULL ? name : "attachment");
			GMimeContentType *ct = g_mime_object_get_content_type(w.found);
			char *t = ct != NULL ? g_mime_content_type_get_mime_type(ct) : NULL;
			*type_r = sg_strdup(t != NULL ? t : "application/octet-stream");
			g_free(t);
			ret = 1;
		} else {
			ret = -1;
		}
		g_object_unref(mem);
	}
	g_object_unref(msg);
	slot_give();
	return ret;
}

/* ---- the search index's view of a message ---- */

/* Text of an HTML body for the index: tags, scripts and styles dropped,
 * entities left as they are (the tokenizer splits them off). */
static char *html_to_text(const char *html)
{
	size_t n = strlen(html);
	char *out = sg_malloc(n + 1);
	size_t k = 0;
	bool in_tag = false;
	const char *skip_until = NULL;
	for (size_t i = 0; i < n; i++) {
		if (skip_until != NULL) {
			if (strncasecmp(html + i, skip_until, strlen(skip_until)) == 0) {
				i += strlen(skip_until) - 1;
				skip_until = NULL;
			}
			continue;
		}
		char c = html[i];
		if (in_tag) {
			if (c == '>')
				in_tag = false;
			continue;
		}
		if (c == '<') {
			if (strncasecmp(html + i, "<script", 7) == 0)
				skip_until = "</script>";
			else if (strncasecmp(html + i, "<style", 6) == 0)
				skip_until = "</style>";
			in_tag = skip_until == NULL;
			if (k > 0 && out[k - 1] != ' ')
				out[k++] = ' ';
			continue;
		}
		out[k++] = c;
	}
	out[k] = '\0';
	return out;
}

/* user+tag@domain -> tag (plus-addressing), appended to tags */
static void plus_tag(const char *addr, struct sg_buf *tags)
{
	const char *at = strrchr(addr, '@');
	const char *plus = strchr(addr, '+');
	if (at == NULL || plus == NULL || plus > at || at - plus - 1 <= 0)
		return;
	size_t l = (size_t)(at - plus - 1);
	if (!sg_search_tag_valid(plus + 1, l))
		return;
	if (tags->len > 0)
		sg_buf_append(tags, " ", 1);
	sg_buf_append(tags, plus + 1, l);
}

int sg_msg_index(struct sg_mail_store *mail, struct sg_search *search, const char *login,
		 const char *id, int64_t mtime_ns, const char **error_r)
{
	struct sg_msg_summary s;
	if (sg_msg_summary_load(mail, login, id, mtime_ns, 0, &s) < 0)
		return 0;
	struct sg_buf rcpts, tags, atts;
	sg_buf_init(&rcpts, 256 * 1024);
	sg_buf_init(&tags, 4096);
	sg_buf_init(&atts, 64 * 1024);
	for (size_t i = 0; i < s.nrcpts; i++) {
		sg_buf_printf(&rcpts, "%s ", s.rcpts[i]);
		plus_tag(s.rcpts[i], &tags);
	}
	if (s.to != NULL)
		sg_buf_printf(&rcpts, "%s ", s.to);
	char *sender = sg_asprintf("%s %s", s.from != NULL ? s.from : "",
				   s.envelope_from != NULL ? s.envelope_from : "");
	char *body = NULL;
	bool has_att = false;
	if (slot_take()) {
		struct scan sc;
		const char *why = NULL;
		GMimeMessage *msg = parse_bounded(mail, login, id, &sc, &why);
		if (msg != NULL) {
			struct walk w = {.atts = json_array(), .want = (size_t)-1};
			walk_obj(g_mime_message_get_mime_part(msg), &w, 0);
			size_t na = json_array_size(w.atts);
			has_att = na > 0;
			for (size_t i = 0; i < na; i++) {
				const char *nm = json_string_value(json_object_get(json_array_get(w.atts, i), "name"));
				if (nm != NULL)
					sg_buf_printf(&atts, "%s ", nm);
			}
			if (w.text != NULL)
				body = sg_strdup(w.text);
			else if (w.html != NULL)
				body = html_to_text(w.html);
			json_decref(w.atts);
			g_free(w.text);
			g_free(w.html);
			g_object_unref(msg);
		}
		slot_give();
	}
	struct sg_search_doc d = {
		.inbox = login,
		.id = id,
		.received_ms = mtime_ns / 1000000,
		.subject = s.subject,
		.sender = sender,
		.rcpts = sg_buf_str(&rcpts),
		.body = body,
		.attachments = sg_buf_str(&atts),
		.has_attachment = has_att,
		.tags = sg_buf_str(&tags),
	};
	/* the index wants valid UTF-8 text: repair what the headers hold */
	char *subj = s.subject != NULL && !g_utf8_validate(s.subject, -1, NULL)
			     ? g_utf8_make_valid(s.subject, -1) : NULL;
	if (subj != NULL)
		d.subject = subj;
	char *btxt = body != NULL && !g_utf8_validate(body, -1, NULL) ? g_utf8_make_valid(body, -1) : NULL;
	if (btxt != NULL)
		d.body = btxt;
	int r = sg_search_put(search, &d, error_r);
	g_free(subj);
	g_free(btxt);
	free(body);
	free(sender);
	sg_buf_free(&rcpts);
	sg_buf_free(&tags);
	sg_buf_free(&atts);
	sg_msg_summary_free(&s);
	return r < 0 ? -1 : 1;
}

/* ---- links and the HTML check (the page's message views) ---- */

/* The first text and HTML parts, within the same bounds as a view. 0, or
 * -1 absent/unreadable; *why set when over a limit. */
static int bodies(struct sg_mail_store *mail, const char *login, const char *id, char **text,
		  char **html, const char **why)
{
	*text = *html = NULL;
	*why = NULL;
	if (!slot_take()) {
		*why = "the server is busy parsing other messages; try again";
		return 0;
	}
	struct scan sc;
	GMimeMessage *msg = parse_bounded(mail, login, id, &sc, why);
	if (msg == NULL) {
		slot_give();
		return *why != NULL ? 0 : -1;
	}
	struct walk w = {.atts = json_array(), .want = (size_t)-1};
	walk_obj(g_mime_message_get_mime_part(msg), &w, 0);
	json_decref(w.atts);
	if (w.text != NULL) {
		*text = sg_strdup(w.text);
		g_free(w.text);
	}
	if (w.html != NULL) {
		*html = sg_strdup(w.html);
		g_free(w.html);
	}
	g_object_unref(msg);
	slot_give();
	return 0;
}

#define LINKS_MAX 1000

static void add_link(json_t *arr, const char *url, size_t ul, const char *text, size_t tl,
		     const char *source)
{
	if (json_array_size(arr) >= LINKS_MAX || ul == 0 || ul > 4096)
		return;
	struct sg_buf u;
	sg_buf_init(&u, 8192);
	for (size_t i = 0; i < ul; i++) { /* the common entity in URLs */
		if (strncmp(url + i, "&amp;", 5) == 0 && i + 5 <= ul) {
			sg_buf_append(&u, "&", 1);
			i += 4;
		} else {
			sg_buf_append(&u, url + i, 1);
		}
	}
	char *t = sg_strndup(text != NULL ? text : "", tl > 300 ? 300 : tl);
	json_array_append_new(arr, json_pack("{s:o,s:o,s:s}", "url", jstr(sg_buf_str(&u)), "text",
					     jstr(t), "source", source));
	free(t);
	sg_buf_free(&u);
}

static bool url_end(char c)
{
	return c == '\0' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"' || c == '\'' ||
	       c == '<' || c == '>';
}

void *sg_msg_links_json(struct sg_mail_store *mail, const char *login, const char *id)
{
	char *text, *html;
	const char *why;
	if (bodies(mail, login, id, &text, &html, &why) < 0)
		return NULL;
	json_t *arr = json_array();
	if (html != NULL) {
		const char *p = html;
		while ((p = strcasestr(p, "href")) != NULL) {
			const char *q = p + 4;
			p = q;
			while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
				q++;
			if (*q != '=')
				continue;
			q++;
			while (*q == ' ' || *q == '\t')
				q++;
			char quote = (*q == '"' || *q == '\'') ? *q++ : '\0';
			const char *e = q;
			while (*e != '\0' && (quote != '\0' ? *e != quote : !url_end(*e) && *e != '>'))
				e++;
			/* the anchor's text: up to </a>, tags dropped */
			const char *gt = strchr(e, '>');
			char txt[400];
			size_t tl = 0;
			if (gt != NULL) {
				const char *end = strcasestr(gt, "</a");
				bool in_tag = false;
				for (const char *c = gt + 1; c < (end != NULL ? end : gt + 1) && tl + 1 < sizeof(txt); c++) {
					if (*c == '<')
						in_tag = true;
					else if (*c == '>')
						in_tag = false;
					else if (!in_tag && !(tl > 0 && txt[tl - 1] == ' ' && (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t')))
						txt[tl++] = (*c == '\n' || *c == '\r' || *c == '\t') ? ' ' : *c;
				}
			}
			add_link(arr, q, (size_t)(e - q), txt, tl, "html");
			p = e;
		}
	}
	if (text != NULL) {
		const char *p = text;
		while (*p != '\0') {
			const char *h1 = strstr(p, "http://"), *h2 = strstr(p, "https://");
			const char *h = h1 == NULL ? h2 : h2 == NULL ? h1 : h1 < h2 ? h1 : h2;
			if (h == NULL)
				break;
			const char *e = h;
			while (!url_end(*e))
				e++;
			while (e > h && (e[-1] == '.' || e[-1] == ',' || e[-1] == ')' || e[-1] == ';'))
				e--;
			add_link(arr, h, (size_t)(e - h), "", 0, "text");
			p = e > h ? e : h + 1;
		}
	}
	free(text);
	free(html);
	json_t *o = json_pack("{s:s,s:o}", "id", id, "links", arr);
	if (why != NULL)
		json_object_set_new(o, "note", json_string(why));
	return o;
}

static json_t *check_loaded;
static pthread_once_t check_once = PTHREAD_ONCE_INIT;

static void check_init(void)
{
	check_loaded = json_loads(sg_http_htmlcheck_data(), 0, NULL);
}

static bool word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Occurrences of one feature in the HTML: lower is the HTML in lower case,
 * nows the same without white space (for CSS). */
static size_t feature_count(const char *kind, const char *match, const char *lower, const char *nows)
{
	size_t n = 0, ml = strlen(match);
	if (ml == 0)
		return 0;
	if (strcmp(kind, "tag") == 0) {
		for (const char *p = lower; (p = strstr(p, match)) != NULL; p += ml)
			if (p > lower && p[-1] == '<' && !word_char(p[ml]))
				n++;
	} else if (strcmp(kind, "attr") == 0) {
		for (const char *p = lower; (p = strstr(p, match)) != NULL; p += ml)
			if (p > lower && (p[-1] == ' ' || p[-1] == '\t' || p[-1] == '\n' || p[-1] == '\r') &&
			    !word_char(p[ml]))
				n++;
	} else if (strcmp(kind, "css") == 0) {
		for (const char *p = nows; (p = strstr(p, match)) != NULL; p += ml)
			if ((p == nows || !word_char(p[-1])) && p[ml] == ':')
				n++;
	} else { /* value, at: the text itself */
		for (const char *p = nows; (p = strstr(p, match)) != NULL; p += ml)
			n++;
	}
	return n;
}

void *sg_msg_htmlcheck_json(struct sg_mail_store *mail, const char *login, const char *id)
{
	char *text, *html;
	const char *why;
	if (bodies(mail, login, id, &text, &html, &why) < 0)
		return NULL;
	free(text);
	pthread_once(&check_once, check_init);
	json_t *features = json_array();
	if (html != NULL && check_loaded != NULL) {
		size_t hl = strlen(html);
		char *lower = sg_malloc(hl + 1), *nows = sg_malloc(hl + 1);
		size_t k = 0;
		for (size_t i = 0; i < hl; i++) {
			char c = html[i];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			lower[i] = c;
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
				nows[k++] = c;
		}
		lower[hl] = '\0';
		nows[k] = '\0';
		size_t i;
		json_t *f;
		json_array_foreach(json_object_get(check_loaded, "features"), i, f) {
			const char *kind = json_string_value(json_object_get(f, "kind"));
			const char *match = json_string_value(json_object_get(f, "match"));
			if (kind == NULL || match == NULL)
				continue;
			size_t n = feature_count(kind, match, lower, nows);
			if (n == 0)
				continue;
			json_t *o = json_pack("{s:O,s:O,s:s,s:I,s:O,s:O}", "id", json_object_get(f, "id"),
					      "title", json_object_get(f, "title"), "kind", kind, "count",
					      (json_int_t)n, "unsupported", json_object_get(f, "unsupported"),
					      "partial", json_object_get(f, "partial"));
			if (o != NULL)
				json_array_append_new(features, o);
		}
		free(lower);
		free(nows);
	}
	free(html);
	json_t *o = json_pack("{s:s,s:o}", "id", id, "features", features);
	if (why != NULL)
		json_object_set_new(o, "note", json_string(why));
	return o;
}
