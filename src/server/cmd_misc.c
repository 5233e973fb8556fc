/* STARTTLS, RSET, NOOP, VRFY, HELP, QUIT */
#include <string.h>

#include "core/conn.h"
#include "core/log.h"
#include "server/server.h"
#include "server/session.h"

void cmd_starttls(struct sg_session *s, char *args)
{
	if (*args != '\0') {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	if (sess_tls(s)) {
		sess_error(s, SG_R_TLS_ALREADY);
		return;
	}
	if (s->srv->tls == NULL) {
		sess_reply(s, SG_R_TLS_UNAVAILABLE);
		return;
	}
	if (s->state & (ST_MAIL | ST_RCPT)) {
		sess_error(s, SG_R_NESTED_MAIL);
		return;
	}
	sess_reply(s, SG_R_TLS_GO);
	/* RFC 3207 4.2: discard any knowledge obtained from the client (EHLO,
	 * AUTH) and anything it pipelined after STARTTLS. */
	sess_reset_txn(s);
	s->esmtp = false;
	s->helo[0] = '\0';
	s->authenticated = false;
	s->accepted_any = false;
	s->login[0] = '\0';
	s->auth_mech_name = NULL;
	s->after_starttls = true;
	s->state = ST_HANDSHAKE;
	sg_conn_set_timeout(s->conn, s->srv->cfg.timeout_tls_ms);
	sg_conn_starttls(s->conn, s->srv->tls);
}

void cmd_rset(struct sg_session *s, char *args)
{
	if (*args != '\0') {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	sess_reset_txn(s);
	sess_reply(s, SG_R_RSET_OK);
}

void cmd_noop(struct sg_session *s, char *args)
{
	sess_reply(s, SG_R_NOOP_OK);
}

void cmd_vrfy(struct sg_session *s, char *args)
{
	/* RFC 5321 3.5.3: 252, never confirming which accounts exist. */
	if (*args == '\0') {
		sess_error(s, SG_R_PARAM_SYNTAX);
		return;
	}
	sess_reply(s, SG_R_VRFY);
}

void cmd_help(struct sg_session *s, char *args)
{
	sess_reply(s, SG_R_HELP);
}

void cmd_quit(struct sg_session *s, char *args)
{
	s->quit = true;
	sess_close(s, SG_R_BYE);
}
