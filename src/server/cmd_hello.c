/* EHLO and HELO (RFC 5321 4.1.1.1) */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/buf.h"
#include "core/conn.h"
#include "core/log.h"
#include "core/util.h"
#include "server/server.h"
#include "server/session.h"

static bool helo_arg_ok(const char *a)
{
	size_t n = strlen(a);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= ' ' || c == 127)
			return false;
	}
	return true;
}

static bool hello_common(struct sg_session *s, char *args, bool esmtp)
{
	/* Some clients send trailing words; RFC 5321 allows only the domain,
	 * take the first word. */
	char *sp = strchr(args, ' ');
	if (sp != NULL)
		*sp = '\0';
	if (!helo_arg_ok(args)) {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return false;
	}
	sess_reset_txn(s);
	if (s->helo[0] == '\0') /* the greeting wait is over */
		sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_command_ms);
	sg_strlcpy(s->helo, args, sizeof(s->helo));
	s->esmtp = esmtp;
	s->state = ST_READY;
	return true;
}

void cmd_helo(struct sg_session *s, char *args)
{
	if (!hello_common(s, args, false))
		return;
	char line[400];
	snprintf(line, sizeof(line), "250 %s\r\n", s->srv->cfg.hostname);
	sess_reply_raw(s, line);
}

void cmd_ehlo(struct sg_session *s, char *args)
{
	if (!hello_common(s, args, true))
		return;
	const struct sg_config *cfg = &s->srv->cfg;
	struct sg_buf b;
	sg_buf_init(&b, 4096);
	sg_buf_printf(&b, "250-%s Hello %s [%s]\r\n", cfg->hostname, s->helo, s->client_ip);
	sg_buf_printf(&b, "250-PIPELINING\r\n250-SIZE %llu\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n",
		      cfg->max_message_size);
	sg_buf_append_str(&b, "250-DSN\r\n"); /* RFC 3461 (relay mode reports; capture keeps them) */
	if (!sess_tls(s) && s->srv->tls != NULL)
		sg_buf_append_str(&b, "250-STARTTLS\r\n");
	if (!s->authenticated) {
		const struct sg_mech *offered[32];
		size_t n = auth_offered(s, offered, 32);
		if (n > 0) {
			sg_buf_append_str(&b, "250-AUTH");
			for (size_t i = 0; i < n; i++)
				sg_buf_printf(&b, " %s", offered[i]->name);
			sg_buf_append_str(&b, "\r\n");
		}
	}
	sg_buf_append_str(&b, "250-HELP\r\n250 SMTPUTF8\r\n");
	sess_reply_raw(s, sg_buf_str(&b));
	sg_buf_free(&b);
}
