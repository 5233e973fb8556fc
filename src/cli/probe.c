/*
 * probe.c: `smtpgate probe`: test a server's SMTP AUTH and explain the result.
 *
 * All protocol work is in src/client (job.h); this file parses options, reads
 * the secret from stdin, runs one job per mechanism, and renders the
 * transcript, the TLS summary, the mechanism lists, a diagnosis in plain words
 * (human or JSON) and the exit code.
 */
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "client/job.h"
#include "core/buf.h"
#include "core/secret.h"
#include "core/util.h"
#include "sasl/mech.h"

enum {
	EXIT_OK = 0,
	EXIT_AUTH = 1,
	EXIT_USAGE = 2,
	EXIT_CONN = 3,
	EXIT_PROTO = 4,
};

static const char probe_help[] =
	"NAME\n"
	"    smtpgate probe - test a server's SMTP AUTH, with decoded transcripts and a diagnosis\n"
	"\n"
	"SYNOPSIS\n"
	"    smtpgate probe HOST[:PORT] [--tls none|starttls|implicit] [--auth MECH|all]\n"
	"                   [--user LOGIN] [--password-stdin | --token-stdin]\n"
	"                   [--cafile FILE | --insecure] [--client-cert FILE --client-key FILE]\n"
	"                   [--ehlo NAME] [--send --from ADDR --to ADDR [--subject TEXT]]\n"
	"                   [--json] [--show-secrets] [--timeout SECONDS]\n"
	"\n"
	"DESCRIPTION\n"
	"    Connects to HOST, reads the greeting, says EHLO, upgrades to TLS when asked,\n"
	"    authenticates with one or every SASL mechanism, optionally sends a test\n"
	"    message, and says QUIT. It prints the whole conversation (C: client, S: server,\n"
	"    * remarks), each base64 challenge and response followed by its decoded\n"
	"    meaning in parentheses, the TLS details, the mechanisms the server offers,\n"
	"    which of them the probe supports and which it tried, the result, and a\n"
	"    diagnosis in plain words: what the server's answer means and what to fix.\n"
	"\n"
	"    Passwords and tokens are masked in the output (****) unless --show-secrets.\n"
	"    Values derived from them (CRAM-MD5 digests, SCRAM proofs, NTLM responses)\n"
	"    are shown: they do not reveal the password without an offline attack.\n"
	"\n"
	"OPTIONS\n"
	"    HOST[:PORT]      server name or address ([v6addr]:port for IPv6). Default port:\n"
	"                     587 with --tls starttls, 465 with implicit, 25 with none.\n"
	"    --tls MODE       none: plaintext; starttls (default): EHLO, STARTTLS, EHLO\n"
	"                     again (RFC 3207); implicit: TLS from the first byte (RFC 8314).\n"
	"    --auth MECH      the SASL mechanism to use (PLAIN, LOGIN, CRAM-MD5,\n"
	"                     SCRAM-SHA-1, SCRAM-SHA-256, their -PLUS variants, XOAUTH2,\n"
	"                     OAUTHBEARER, NTLM, GSSAPI, EXTERNAL). It is tried even when\n"
	"                     the server does not offer it. Default with --user: the\n"
	"                     strongest mechanism both sides support.\n"
	"    --auth all       every offered mechanism the probe supports, each on a fresh\n"
	"                     connection, then a table of the results.\n"
	"    --user LOGIN     the login (authentication identity).\n"
	"    --password-stdin read the password from the first line of standard input.\n"
	"    --token-stdin    read an OAuth 2.0 bearer token from standard input (XOAUTH2,\n"
	"                     OAUTHBEARER).\n"
	"    --cafile FILE    trust the CA certificates in FILE (PEM) instead of the system's.\n"
	"    --insecure       go on when the server's certificate does not verify (still\n"
	"                     reported). Never use it against a production server.\n"
	"    --client-cert FILE, --client-key FILE\n"
	"                     present a TLS client certificate (for EXTERNAL).\n"
	"    --ehlo NAME      the name sent with EHLO (default: localhost).\n"
	"    --send           after a successful AUTH (or without AUTH), send a short test\n"
	"                     message from --from to --to with --subject, and report the\n"
	"                     server's reply to MAIL, RCPT and the message (not with\n"
	"                     --auth all).\n"
	"    --json           print one JSON document instead of the text report.\n"
	"    --show-secrets   show passwords and tokens in the transcript.\n"
	"    --timeout SECS   limit for each step: connecting, the greeting, each reply, the\n"
	"                     TLS handshake (default 30).\n"
	"    -h, --help       this text.\n"
	"\n"
	"EXIT STATUS\n"
	"    0  success: connected (and authenticated, and the message accepted, when asked;\n"
	"       with --auth all: every tried mechanism succeeded)\n"
	"    1  authentication refused (535, 530, 534, 538, 504, 454 ...), no AUTH offered,\n"
	"       or MAIL/RCPT refused for a policy reason (530, 550/553/554 5.7.x)\n"
	"    2  usage error\n"
	"    3  connection or TLS failure: name not resolved, refused, timeout, handshake\n"
	"       failure, certificate not verified, STARTTLS not offered or refused\n"
	"    4  protocol error or unexpected reply\n"
	"\n"
	"EXAMPLES\n"
	"    echo \"$PW\" | smtpgate probe mail.example.com --user alice --password-stdin\n"
	"    smtpgate probe mail.example.com:465 --tls implicit --auth all --user alice \\\n"
	"        --password-stdin < pwfile\n"
	"    smtpgate probe 127.0.0.1:2587 --cafile ca.pem --auth SCRAM-SHA-256-PLUS \\\n"
	"        --user alice --password-stdin --send --from alice@example.org --to bob@example.org\n";

struct probe_opts {
	char host[256];
	unsigned port;
	enum sg_tls_mode tls;
	const char *auth; /* NULL, "all" or a mechanism name */
	const char *user;
	bool password_stdin, token_stdin;
	const char *cafile, *cert, *key, *ehlo;
	bool insecure, send, json, show_secrets;
	const char *from, *to, *subject;
	unsigned timeout_ms;
	char *secret;
};

struct attempt {
	const char *mech; /* NULL: no authentication */
	struct sg_job job;
	bool skipped;
	char skip_reason[200];
	int exit_code;
	struct sg_buf diag;
};

static const char *tls_name(enum sg_tls_mode m)
{
	return m == SG_TLSM_NONE ? "none" : m == SG_TLSM_STARTTLS ? "starttls" : "implicit";
}

/* ---- the diagnosis ---------------------------------------------------- */

static void diag(struct attempt *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diag(struct attempt *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (a->diag.len > 0)
		sg_buf_append(&a->diag, "\n", 1);
	sg_buf_vprintf(&a->diag, fmt, ap);
	va_end(ap);
}

static void mech_list(const struct sg_job *job, char *out, size_t size)
{
	const struct sg_job_caps *c = sg_job_caps(job);
	out[0] = '\0';
	size_t used = 0;
	for (size_t i = 0; i < c->nmechs; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? " " : "", c->mechs[i]);
		if (n < 0 || (size_t)n >= size - used)
			break;
		used += (size_t)n;
	}
	if (c->nmechs == 0)
		sg_strlcpy(out, "none", size);
}

static bool text_has(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = text; *p; p++)
		if (strncasecmp(p, word, n) == 0)
			return true;
	return false;
}

static int diagnose_io(struct attempt *a, const struct probe_opts *o)
{
	struct sg_job *j = &a->job;
	switch (j->io_err) {
	case SG_SMTPC_E_RESOLVE:
		diag(a, "The host name %s does not resolve. Check its spelling, or use an IP address.",
		     o->host);
		return EXIT_CONN;
	case SG_SMTPC_E_CONNECT:
		if (text_has(j->error, "refused"))
			diag(a, "Nothing accepts connections on %s port %u: the service is not running, "
				"listens on another port or address, or a firewall rejects the connection. "
				"Submission is usually on 587 (STARTTLS) or 465 (implicit TLS).",
			     o->host, o->port);
		else
			diag(a, "The connection to %s port %u failed (%s): the network or a firewall "
				"is in the way.", o->host, o->port, j->error);
		return EXIT_CONN;
	case SG_SMTPC_E_TIMEOUT:
		if (j->stage == SG_JOB_CONNECT)
			diag(a, "No answer to the TCP connection within %u s: a firewall is probably "
				"dropping the packets (many networks block outgoing port 25), or the "
				"host is down.", o->timeout_ms / 1000);
		else if (j->stage == SG_JOB_GREETING && o->tls != SG_TLSM_IMPLICIT)
			diag(a, "The server accepted the connection but sent no greeting within %u s. "
				"If this port expects implicit TLS (usually 465), use --tls implicit.",
			     o->timeout_ms / 1000);
		else if (j->stage == SG_JOB_TLS)
			diag(a, "The TLS handshake did not finish within %u s. If this port speaks "
				"plaintext SMTP first (25, 587), use --tls starttls.",
			     o->timeout_ms / 1000);
		else
			diag(a, "The server stopped answering (%s). It may be overloaded, or "
				"deliberately slow with clients it distrusts (tarpitting); --timeout "
				"gives it longer.", j->error);
		return EXIT_CONN;
	case SG_SMTPC_E_TLS:
		if (text_has(j->error, "wrong version number") || text_has(j->error, "packet length") ||
		    text_has(j->error, "record layer failure") || text_has(j->error, "not a TLS") ||
		    (o->tls == SG_TLSM_IMPLICIT && o->port != 465))
			diag(a, "%s: the server answered with something that is not TLS. This port probably speaks plaintext SMTP first: use "
				"--tls starttls (or --tls none).", j->error);
		else
			diag(a, "%s. The server may require a TLS version or "
				"cipher this client refuses (TLS 1.2 is the minimum), or a client "
				"certificate (--client-cert).", j->error);
		return EXIT_CONN;
	case SG_SMTPC_E_CLOSED:
		diag(a, "The server closed the connection (%s). Servers do that to clients they "
			"block (blacklisted address, too many connections), or after a protocol error.",
		     j->error);
		return EXIT_CONN;
	case SG_SMTPC_E_PROTOCOL:
		diag(a, "The server's answer is not valid SMTP (%s). Is this an SMTP server? With "
			"an implicit-TLS port, use --tls implicit.", j->error);
		return EXIT_PROTO;
	default:
		diag(a, "Connection error: %s.", j->error);
		return EXIT_CONN;
	}
}

static int diagnose_auth_reply(struct attempt *a, const struct probe_opts *o)
{
	struct sg_job *j = &a->job;
	const struct sg_job_reply *r = &j->reply;
	const char *mech = j->opts.mech != NULL ? j->opts.mech->name : "?";
	char offered[512];
	mech_list(j, offered, sizeof(offered));
	bool not_offered = sg_job_caps(j)->seen && !sg_job_offers(j, mech);
	if (not_offered && r->code >= 500 && r->code != 530 && r->code != 534 && r->code != 538 &&
	    r->code != 523) {
		diag(a, "%d: the server does not offer %s. It offers: %s.", r->code, mech, offered);
		return EXIT_AUTH;
	}
	if (not_offered)
		diag(a, "Note: the server does not offer %s here (it offers: %s).", mech, offered);
	switch (r->code) {
	case 535:
		if (o->token_stdin) {
			diag(a, "535: the server refused the token for %s with %s: it is expired, "
				"signed with a key the server does not trust, meant for another "
				"audience or issuer, or names another account (the server's 334 JSON "
				"error above, when there is one, says which).",
			     o->user ? o->user : "(no login)", mech);
			return EXIT_AUTH;
		}
		diag(a, "535: the server refused the credentials for %s with %s. The password is "
			"wrong, the login is unknown, or the account is disabled (servers give the "
			"same answer for all three, on purpose).", o->user ? o->user : "(no login)", mech);
		if (o->user != NULL && strchr(o->user, '@') != NULL)
			diag(a, "Check the login format: this server may expect the local part only "
				"(\"%.*s\") rather than the full address.",
			     (int)(strchr(o->user, '@') - o->user), o->user);
		else if (o->user != NULL)
			diag(a, "Check the login format: many servers expect the full address "
				"(\"%s@yourdomain\") rather than the local part.", o->user);
		if (strcmp(r->enh, "5.7.3") == 0 || strcasecmp(mech, "NTLM") == 0)
			diag(a, "For NTLM the domain matters too (DOMAIN\\user), and some servers accept "
				"only NTLMv2.");
		return EXIT_AUTH;
	case 530:
		if (text_has(r->text, "STARTTLS") || strcmp(r->enh, "5.7.0") == 0 ||
		    !j->tls_active)
			diag(a, "530: the server wants something first: %s%s", r->text,
			     j->tls_active ? "."
					   : ". Authentication is only accepted over TLS here: use "
					     "--tls starttls or --tls implicit.");
		else
			diag(a, "530: authentication required: %s.", r->text);
		return EXIT_AUTH;
	case 538:
		diag(a, "538: %s needs an encrypted connection on this server. Use --tls starttls "
			"or --tls implicit.", mech);
		return EXIT_AUTH;
	case 534:
		diag(a, "534: the server considers %s too weak (policy). Use a stronger mechanism; "
			"offered: %s.", mech, offered);
		return EXIT_AUTH;
	case 523:
		diag(a, "523: the server wants encryption for this mechanism: use TLS.");
		return EXIT_AUTH;
	case 504:
		diag(a, "504: the server does not support %s. It offers: %s.", mech, offered);
		return EXIT_AUTH;
	case 454:
	case 451:
	case 452:
		diag(a, "%d: a temporary failure on the server side (its authentication service or "
			"credential store is unavailable, or it is throttling you). Try again later; "
			"the server's log says which.", r->code);
		return EXIT_AUTH;
	case 503:
		diag(a, "503: the server does not accept AUTH now (%s): already authenticated, "
			"inside a mail transaction, or before EHLO.", r->text);
		return EXIT_PROTO;
	case 500:
	case 501:
		diag(a, "%d: the server could not parse what the probe sent for %s (%s).", r->code,
		     mech, r->text);
		return EXIT_PROTO;
	case 421:
		diag(a, "421: the server is closing the connection (%s): too many errors, or it is "
			"shutting down.", r->text);
		return EXIT_AUTH;
	default:
		diag(a, "Unexpected reply %d to AUTH: %s.", r->code, r->text);
		return r->code >= 500 ? EXIT_AUTH : EXIT_PROTO;
	}
}

static int diagnose_send_reply(struct attempt *a, const struct probe_opts *o)
{
	struct sg_job *j = &a->job;
	const struct sg_job_reply *r = &j->reply;
	bool policy = r->code == 530 || strncmp(r->enh, "5.7.", 4) == 0 || r->code == 553 ||
		      r->code == 554;
	if (r->code == 530) {
		diag(a, "530 to %s: the server requires authentication before accepting mail (%s). "
			"Use --user and --password-stdin.", j->stage == SG_JOB_MAIL ? "MAIL" : "RCPT",
		     r->text);
	} else if (j->stage == SG_JOB_MAIL && (r->code == 553 || r->code == 550) &&
		   (text_has(r->text, "owned") || text_has(r->text, "not allowed") ||
		    text_has(r->text, "sender") || strcmp(r->enh, "5.7.1") == 0)) {
		diag(a, "%d to MAIL: the server does not let %s send as <%s> (%s). Use a sender "
			"address that belongs to the account.", r->code,
		     j->auth_ok ? o->user : "an unauthenticated client", o->from, r->text);
	} else if (j->stage == SG_JOB_RCPT &&
		   (text_has(r->text, "relay") || (strcmp(r->enh, "5.7.1") == 0 && r->code == 554) ||
		    r->code == 554)) {
		if (j->auth_ok)
			diag(a, "%d to RCPT: the server refuses to relay to <%s> even after "
				"authentication (%s): the account may not send outside, or this is an "
				"MX port, not submission.", r->code, o->to, r->text);
		else
			diag(a, "%d to RCPT: relaying to <%s> needs authentication (%s). Authenticate "
				"with --user and --password-stdin, or send to a local address.",
			     r->code, o->to, r->text);
	} else if (r->code == 550 && (strncmp(r->enh, "5.1.", 4) == 0 || text_has(r->text, "user"))) {
		diag(a, "550 to RCPT: the recipient <%s> does not exist on this server (%s).", o->to,
		     r->text);
	} else if (r->code == 552) {
		diag(a, "552: the message is too big for this server (%s).", r->text);
	} else if (r->code >= 400 && r->code < 500) {
		diag(a, "%d to %s: a temporary refusal (%s); try again later.", r->code,
		     sg_job_stage_name(j->stage), r->text);
	} else {
		diag(a, "%d to %s: %s.", r->code, sg_job_stage_name(j->stage), r->text);
	}
	return policy ? EXIT_AUTH : EXIT_PROTO;
}

static void diagnose_cert(struct attempt *a, const struct probe_opts *o)
{
	const struct sg_ctls_info *t = &a->job.tls;
	if (t->expired)
		diag(a, "The server's certificate expired on %s. The server's administrator must "
			"renew it.", t->not_after);
	else if (text_has(t->verify_error, "self-signed") || text_has(t->verify_error, "self signed"))
		diag(a, "The server's certificate is self-signed (%s). If you trust it, pass its CA "
			"with --cafile; --insecure skips the check (test setups only).", t->subject);
	else if (text_has(t->verify_error, "does not name"))
		diag(a, "The certificate is for %s (names: %s), not for %s. Connect with a name it "
			"lists.", t->subject, t->san[0] ? t->san : "none", o->host);
	else if (text_has(t->verify_error, "local issuer") || text_has(t->verify_error, "issuer"))
		diag(a, "The certificate's issuer (%s) is not trusted here: the server may not send "
			"its intermediate certificates, or it uses a private CA (pass it with "
			"--cafile).", t->issuer);
	else
		diag(a, "The server's certificate did not verify: %s.", t->verify_error);
}

static int diagnose(struct attempt *a, const struct probe_opts *o)
{
	struct sg_job *j = &a->job;
	switch (j->outcome) {
	case SG_JOB_IO_FAILED:
		return diagnose_io(a, o);
	case SG_JOB_CERT_FAILED:
		diagnose_cert(a, o);
		return EXIT_CONN;
	case SG_JOB_NO_STARTTLS: {
		char offered[512];
		mech_list(j, offered, sizeof(offered));
		diag(a, "The server does not offer STARTTLS%s. Use --tls implicit if this is an "
			"implicit-TLS port (465), or --tls none to test without encryption "
			"(passwords then travel in clear).",
		     j->caps_plain.auth ? "" : " (nor AUTH)");
		return EXIT_CONN;
	}
	case SG_JOB_AUTH_CLIENT:
		diag(a, "The probe could not %s: %s.", j->auth_aborted ? "continue the exchange" : "start",
		     j->error);
		if (j->auth_aborted)
			return EXIT_PROTO;
		return EXIT_USAGE;
	case SG_JOB_REPLY_REFUSED:
		switch (j->stage) {
		case SG_JOB_GREETING:
			diag(a, "The server refused the session in its greeting (%d %s): it does not "
				"want connections from this address, or it is overloaded.",
			     j->reply.code, j->reply.text);
			return EXIT_CONN;
		case SG_JOB_EHLO:
		case SG_JOB_EHLO_TLS:
			diag(a, "The server refused EHLO (%d %s). Try another --ehlo name (some servers "
				"want a fully-qualified name).", j->reply.code, j->reply.text);
			return EXIT_PROTO;
		case SG_JOB_STARTTLS:
			diag(a, "The server refused STARTTLS (%d %s): its TLS is misconfigured or "
				"temporarily unavailable.", j->reply.code, j->reply.text);
			return EXIT_CONN;
		case SG_JOB_AUTH:
			return diagnose_auth_reply(a, o);
		case SG_JOB_MAIL:
		case SG_JOB_RCPT:
		case SG_JOB_DATA:
		case SG_JOB_MESSAGE:
			return diagnose_send_reply(a, o);
		default:
			diag(a, "Unexpected reply %d %s.", j->reply.code, j->reply.text);
			return EXIT_PROTO;
		}
	case SG_JOB_OK:
		break;
	}
	/* success */
	const struct sg_job_caps *c = sg_job_caps(j);
	if (j->auth_ok)
		diag(a, "Authentication with %s succeeded%s.", j->opts.mech->name,
		     j->opts.tls_mode == SG_TLSM_NONE && (j->opts.mech->flags & SG_MECH_F_PLAINTEXT)
			     ? " -- over a plaintext connection: anyone on the path saw the password"
			     : "");
	if (j->sent)
		diag(a, "The server accepted the test message: %d %s.", j->send_reply.code,
		     j->send_reply.text);
	if (!c->auth) {
		if (!j->tls_active && j->caps_plain.starttls)
			diag(a, "The server offers no AUTH before TLS but advertises STARTTLS: it "
				"probably offers AUTH only after STARTTLS. Use --tls starttls.");
		else if (o->port == 25)
			diag(a, "The server offers no AUTH on port 25 (an MX usually does not). "
				"Submission is usually on port 587 (--tls starttls) or 465 (--tls "
				"implicit).");
		else
			diag(a, "The server offers no AUTH at all on this port.");
		if (a->mech == NULL && o->user != NULL)
			return EXIT_AUTH;
	}
	return EXIT_OK;
}

/* ---- running ---------------------------------------------------------- */

static void job_setup(struct sg_job *job, const struct probe_opts *o, struct sg_ctls *tls,
		      const struct sg_mech *mech)
{
	memset(job, 0, sizeof(*job));
	job->opts.host = o->host;
	job->opts.port = o->port;
	job->opts.tls_mode = o->tls;
	job->opts.tls = tls;
	job->opts.insecure = o->insecure;
	job->opts.ehlo = o->ehlo;
	job->opts.timeout_ms = o->timeout_ms;
	job->opts.mech = mech;
	job->opts.show_secrets = o->show_secrets;
	job->opts.env.authcid = o->user;
	job->opts.env.password = o->password_stdin ? o->secret : NULL;
	job->opts.env.token = o->token_stdin ? o->secret : NULL;
	job->opts.env.service = "smtp";
}

static char *make_message(const struct probe_opts *o)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	uint8_t rnd[8];
	sg_random(rnd, sizeof(rnd));
	char id[17];
	sg_hex(rnd, sizeof(rnd), id);
	return sg_asprintf("From: <%s>\nTo: <%s>\nSubject: %s\nDate: %s\nMessage-ID: <%s.probe@%s>\n"
			   "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
			   "This is a test message sent by smtpgate probe.\n",
			   o->from, o->to, o->subject ? o->subject : "smtpgate probe test", date, id,
			   o->ehlo ? o->ehlo : "localhost");
}

/* Can this mechanism start with what we were given (before connecting)? */
static bool mech_can_start(const struct sg_mech *m, const struct probe_opts *o, char *why,
			   size_t whysize)
{
	if (m->client_start == NULL || m->client_step == NULL) {
		snprintf(why, whysize, "no client side in this build");
		return false;
	}
	if ((m->flags & SG_MECH_F_CHANNEL_BINDING) && o->tls == SG_TLSM_NONE) {
		snprintf(why, whysize, "needs TLS (channel binding)");
		return false;
	}
	struct sg_sasl_client_env env = {0};
	uint8_t cb[32] = {0};
	env.authcid = o->user;
	env.password = o->password_stdin ? o->secret : NULL;
	env.token = o->token_stdin ? o->secret : NULL;
	env.host = o->host;
	env.port = o->port;
	env.service = "smtp";
	if (o->tls != SG_TLSM_NONE) {
		env.cb_type = "tls-exporter";
		env.cb_data = cb;
		env.cb_len = sizeof(cb);
	}
	const char *err = NULL;
	void *st = m->client_start(&env, &err);
	if (st == NULL) {
		snprintf(why, whysize, "%s", err != NULL ? err : "cannot start");
		return false;
	}
	m->client_free(st);
	return true;
}

/* ---- output ----------------------------------------------------------- */

/* Peer text goes to a terminal: C0 controls, DEL, C1 controls (U+0080..U+009F,
 * e.g. CSI) and bytes that are not valid UTF-8 are shown as \xHH. */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = *p >= 0xf0 && *p <= 0xf4 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if (n == 2 && p[0] == 0xc2 && p[1] <= 0x9f)
		return 0; /* C1 control */
	return n;
}

static void put_escaped(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t n = *p >= 0x80 ? utf8_len(p) : 1;
		if (n == 0 || *p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\x%02x", *p);
			p++;
			continue;
		}
		fwrite(p, 1, n, f);
		p += n;
	}
}

static void print_transcript(const struct sg_transcript *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct sg_tr_entry *e = &t->e[i];
		fputs(e->dir == SG_TR_CLIENT ? "  C: " : e->dir == SG_TR_SERVER ? "  S: " : "  * ",
		      stdout);
		put_escaped(stdout, e->line);
		if (e->decoded != NULL) {
			fputs("  (", stdout);
			put_escaped(stdout, e->decoded);
			fputs(")", stdout);
		}
		fputc('\n', stdout);
	}
}

static void print_tls(const struct sg_job *j)
{
	const struct sg_ctls_info *t = &j->tls;
	if (!j->tls_active) {
		printf("TLS: not used%s\n", j->caps_plain.starttls ? " (the server offers STARTTLS)" : "");
		return;
	}
	printf("TLS: %s, %s (%d bits)\n", t->version, t->cipher, t->cipher_bits);
	if (t->have_cert) {
		printf("  certificate subject: %s\n", t->subject);
		printf("  issuer:              %s\n", t->issuer);
		printf("  valid:               %s to %s%s\n", t->not_before, t->not_after,
		       t->expired ? " (EXPIRED)" : "");
		if (t->san[0])
			printf("  names:               %s\n", t->san);
	}
	if (t->verified)
		printf("  verified:            yes\n");
	else
		printf("  verified:            NO: %s%s\n", t->verify_error,
		       j->opts.insecure ? " (ignored: --insecure)" : "");
	if (t->client_cert_sent)
		printf("  client certificate:  sent\n");
	if (j->cb_type[0])
		printf("  channel binding:     %s available\n", j->cb_type);
}

static void supported_lists(const struct sg_job *j, struct sg_buf *sup, struct sg_buf *unsup)
{
	const struct sg_job_caps *c = sg_job_caps(j);
	for (size_t i = 0; i < c->nmechs; i++) {
		const struct sg_mech *m = sg_mech_find(c->mechs[i]);
		struct sg_buf *b = (m != NULL && m->client_start != NULL) ? sup : unsup;
		if (b->len)
			sg_buf_append_str(b, " ");
		sg_buf_append_str(b, c->mechs[i]);
	}
}

static void print_mechs(const struct sg_job *j, struct attempt *atts, size_t n)
{
	char offered[512];
	mech_list(j, offered, sizeof(offered));
	struct sg_buf sup, unsup;
	sg_buf_init(&sup, 4096);
	sg_buf_init(&unsup, 4096);
	supported_lists(j, &sup, &unsup);
	printf("Mechanisms:\n  offered by the server: %s%s\n", offered,
	       j->tls_active && j->caps_plain.seen ? " (after STARTTLS)" : "");
	if (j->tls_active && j->caps_plain.seen) {
		const struct sg_job_caps *p = &j->caps_plain;
		printf("  offered before TLS:    ");
		if (p->nmechs == 0)
			printf("none");
		for (size_t i = 0; i < p->nmechs; i++)
			printf("%s%s", i ? " " : "", p->mechs[i]);
		printf("\n");
	}
	printf("  supported by probe:    %s\n", sup.len ? sg_buf_str(&sup) : "none");
	if (unsup.len)
		printf("  not supported:         %s\n", sg_buf_str(&unsup));
	printf("  tried:                 ");
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (atts[i].mech != NULL && !atts[i].skipped)
			printf("%s%s", k++ ? " " : "", atts[i].mech);
	printf("%s\n", k ? "" : "none");
	sg_buf_free(&sup);
	sg_buf_free(&unsup);
}

static const char *result_word(const struct attempt *a)
{
	if (a->skipped)
		return "skipped";
	if (a->exit_code == EXIT_OK)
		return "ok";
	if (a->exit_code == EXIT_AUTH)
		return "refused";
	return "error";
}

static void print_result_line(const struct attempt *a, const struct probe_opts *o)
{
	const struct sg_job *j = &a->job;
	if (a->mech == NULL && a->exit_code == 0)
		printf("Result: connected, no authentication tried%s\n",
		       j->opts.mail_from == NULL ? "" : j->sent ? "; message accepted"
							 : "; message NOT accepted");
	else if (a->mech == NULL && j->outcome == SG_JOB_REPLY_REFUSED)
		printf("Result: failed at %s: %d%s%s %s (exit %d)\n", sg_job_stage_name(j->stage),
		       j->reply.code, j->reply.enh[0] ? " " : "", j->reply.enh, j->reply.text,
		       a->exit_code);
	else if (a->mech == NULL)
		printf("Result: failed at %s (exit %d)\n", sg_job_stage_name(j->stage), a->exit_code);
	else if (j->auth_ok && a->exit_code == 0)
		printf("Result: AUTH %s succeeded as %s (%d%s%s)%s\n", a->mech, o->user ? o->user : "",
		       j->auth_reply.code, j->auth_reply.enh[0] ? " " : "", j->auth_reply.enh,
		       j->sent ? "; message accepted" : "");
	else if (j->auth_attempted && j->stage == SG_JOB_AUTH && j->reply.code != 0)
		printf("Result: AUTH %s failed: %d%s%s %s (exit %d)\n", a->mech, j->reply.code,
		       j->reply.enh[0] ? " " : "", j->reply.enh, j->reply.text, a->exit_code);
	else if (j->auth_ok && j->outcome == SG_JOB_REPLY_REFUSED)
		printf("Result: AUTH %s succeeded as %s, then failed at %s: %d%s%s %s (exit %d)\n",
		       a->mech, o->user ? o->user : "", sg_job_stage_name(j->stage), j->reply.code,
		       j->reply.enh[0] ? " " : "", j->reply.enh, j->reply.text, a->exit_code);
	else if (j->auth_ok)
		printf("Result: AUTH %s succeeded as %s, then failed at %s (exit %d)\n", a->mech,
		       o->user ? o->user : "", sg_job_stage_name(j->stage), a->exit_code);
	else
		printf("Result: AUTH %s not completed: failed at %s (exit %d)\n", a->mech,
		       sg_job_stage_name(j->stage), a->exit_code);
}

static void print_attempt(struct attempt *a, const struct probe_opts *o, bool header)
{
	if (header)
		printf("\n=== %s ===\n", a->mech ? a->mech : "capabilities");
	if (a->skipped) {
		printf("  skipped: %s\n", a->skip_reason);
		return;
	}
	printf("Transcript:\n");
	print_transcript(&a->job.transcript);
	printf("\n");
	print_result_line(a, o);
	if (a->diag.len) {
		printf("Diagnosis:\n");
		const char *s = sg_buf_str(&a->diag);
		while (*s) {
			size_t n = strcspn(s, "\n");
			printf("  - %.*s\n", (int)n, s);
			s += n;
			if (*s == '\n')
				s++;
		}
	}
}

/* Peer text may be anything: invalid UTF-8 is rendered with \xHH escapes. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	if (j != NULL)
		return j;
	struct sg_buf b;
	sg_buf_init(&b, 65536);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p >= 0x80)
			sg_buf_printf(&b, "\\x%02x", *p);
		else
			sg_buf_append(&b, p, 1);
	}
	j = json_string(sg_buf_str(&b));
	sg_buf_free(&b);
	return j != NULL ? j : json_string("");
}

static json_t *json_reply(const struct sg_job_reply *r)
{
	if (r->code == 0)
		return json_null();
	return json_pack("{s:i,s:s,s:o}", "code", r->code, "enhanced", r->enh, "text", jstr(r->text));
}

static json_t *json_caps(const struct sg_job_caps *c)
{
	if (!c->seen)
		return json_null();
	json_t *caps = json_array(), *mechs = json_array();
	for (size_t i = 0; i < c->ncaps; i++)
		json_array_append_new(caps, jstr(c->caps[i]));
	for (size_t i = 0; i < c->nmechs; i++)
		json_array_append_new(mechs, jstr(c->mechs[i]));
	return json_pack("{s:o,s:o,s:b}", "capabilities", caps, "auth_mechanisms", mechs, "starttls",
			 c->starttls);
}

static json_t *json_tls(const struct sg_job *j)
{
	if (!j->tls_active)
		return json_null();
	const struct sg_ctls_info *t = &j->tls;
	json_t *o = json_pack("{s:s,s:s,s:i,s:b,s:b,s:b}", "version", t->version, "cipher", t->cipher,
			      "bits", t->cipher_bits, "verified", t->verified, "expired", t->expired,
			      "client_certificate", t->client_cert_sent);
	if (t->have_cert) {
		json_object_set_new(o, "subject", jstr(t->subject));
		json_object_set_new(o, "issuer", jstr(t->issuer));
		json_object_set_new(o, "not_before", json_string(t->not_before));
		json_object_set_new(o, "not_after", json_string(t->not_after));
		json_object_set_new(o, "names", json_string(t->san));
	}
	json_object_set_new(o, "verify_error", t->verified ? json_null() : jstr(t->verify_error));
	json_object_set_new(o, "channel_binding", j->cb_type[0] ? json_string(j->cb_type) : json_null());
	return o;
}

static json_t *json_attempt(const struct attempt *a)
{
	const struct sg_job *j = &a->job;
	json_t *o = json_object();
	json_object_set_new(o, "mechanism", a->mech ? json_string(a->mech) : json_null());
	json_object_set_new(o, "result", json_string(result_word(a)));
	json_object_set_new(o, "exit_code", json_integer(a->exit_code));
	if (a->skipped) {
		json_object_set_new(o, "reason", json_string(a->skip_reason));
		return o;
	}
	json_object_set_new(o, "stage", json_string(sg_job_stage_name(j->stage)));
	json_object_set_new(o, "authenticated", json_boolean(j->auth_ok));
	json_object_set_new(o, "reply", json_reply(&j->reply));
	json_object_set_new(o, "auth_reply", json_reply(&j->auth_reply));
	json_object_set_new(o, "error", j->error[0] ? jstr(j->error) : json_null());
	if (j->opts.mail_from != NULL) {
		json_object_set_new(o, "message_accepted", json_boolean(j->sent));
		json_object_set_new(o, "send_reply", json_reply(&j->send_reply));
	}
	json_t *d = json_array();
	const char *s = sg_buf_str(&a->diag);
	while (*s) {
		size_t n = strcspn(s, "\n");
		char *line = sg_strndup(s, n);
		json_array_append_new(d, jstr(line));
		free(line);
		s += n;
		if (*s == '\n')
			s++;
	}
	json_object_set_new(o, "diagnosis", d);
	json_t *tr = json_array();
	for (size_t i = 0; i < j->transcript.n; i++) {
		const struct sg_tr_entry *e = &j->transcript.e[i];
		json_t *x = json_pack("{s:s,s:o,s:I}", "dir",
				      e->dir == SG_TR_CLIENT ? "C" : e->dir == SG_TR_SERVER ? "S" : "*",
				      "line", jstr(e->line), "ms", (json_int_t)e->ms);
		if (e->decoded != NULL)
			json_object_set_new(x, "decoded", jstr(e->decoded));
		json_array_append_new(tr, x);
	}
	json_object_set_new(o, "transcript", tr);
	return o;
}

static void print_json(struct attempt *atts, size_t n, const struct sg_job *info,
		       const struct probe_opts *o, int exit_code)
{
	json_t *root = json_object();
	json_object_set_new(root, "target", json_pack("{s:s,s:i,s:s,s:s}", "host", o->host, "port",
						      (int)o->port, "tls", tls_name(o->tls), "peer",
						      info->peer));
	json_object_set_new(root, "connected", json_boolean(info->connected));
	json_object_set_new(root, "greeting", jstr(info->greeting));
	json_object_set_new(root, "tls", json_tls(info));
	json_object_set_new(root, "ehlo_before_tls", json_caps(&info->caps_plain));
	json_object_set_new(root, "ehlo_after_tls", json_caps(&info->caps_tls));
	struct sg_buf sup, unsup;
	sg_buf_init(&sup, 4096);
	sg_buf_init(&unsup, 4096);
	supported_lists(info, &sup, &unsup);
	json_t *offered = json_array(), *supported = json_array(), *tried = json_array();
	const struct sg_job_caps *c = sg_job_caps(info);
	for (size_t i = 0; i < c->nmechs; i++) {
		json_array_append_new(offered, jstr(c->mechs[i]));
		const struct sg_mech *m = sg_mech_find(c->mechs[i]);
		if (m != NULL && m->client_start != NULL)
			json_array_append_new(supported, json_string(c->mechs[i]));
	}
	for (size_t i = 0; i < n; i++)
		if (atts[i].mech != NULL && !atts[i].skipped)
			json_array_append_new(tried, json_string(atts[i].mech));
	json_object_set_new(root, "mechanisms", json_pack("{s:o,s:o,s:o}", "offered", offered,
							  "supported", supported, "tried", tried));
	sg_buf_free(&sup);
	sg_buf_free(&unsup);
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_attempt(&atts[i]));
	json_object_set_new(root, "attempts", arr);
	json_object_set_new(root, "exit_code", json_integer(exit_code));
	json_object_set_new(root, "result",
			    json_string(exit_code == 0 ? "success" : exit_code == 1 ? "auth_refused"
								  : exit_code == 3 ? "connection_failed"
										   : "protocol_error"));
	char *s = json_dumps(root, JSON_INDENT(2));
	if (s != NULL) {
		puts(s);
		free(s);
	}
	json_decref(root);
}

/* ---- options ---------------------------------------------------------- */

static int usage_error(const char *fmt, const char *arg)
{
	fputs("smtpgate probe: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\n(see 'smtpgate probe --help')\n", stderr);
	return EXIT_USAGE;
}

static int parse_target(const char *arg, struct probe_opts *o, bool *have_port)
{
	const char *host = arg, *port = NULL;
	size_t hlen;
	if (arg[0] == '[') {
		const char *end = strchr(arg, ']');
		if (end == NULL)
			return -1;
		host = arg + 1;
		hlen = (size_t)(end - host);
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -1;
	} else {
		const char *colon = strchr(arg, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			colon = NULL; /* a bare IPv6 address */
		hlen = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
		if (colon != NULL)
			port = colon + 1;
	}
	if (hlen == 0 || hlen >= sizeof(o->host))
		return -1;
	memcpy(o->host, host, hlen);
	o->host[hlen] = '\0';
	if (port != NULL) {
		uint64_t p;
		if (sg_parse_u64(port, 1, 65535, &p) < 0)
			return -1;
		o->port = (unsigned)p;
		*have_port = true;
	}
	return 0;
}

static char *read_secret(void)
{
	char buf[8192];
	size_t n = 0;
	int c;
	while ((c = getchar()) != EOF && c != '\n') {
		if (n + 1 >= sizeof(buf)) {
			sg_wipe(buf, sizeof(buf));
			return NULL;
		}
		buf[n++] = (char)c;
	}
	if (n > 0 && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	char *s = sg_strdup(buf);
	sg_wipe(buf, sizeof(buf));
	return s;
}

enum {
	OPT_TLS = 256, OPT_AUTH, OPT_USER, OPT_PWSTDIN, OPT_TOKSTDIN, OPT_CAFILE, OPT_INSECURE,
	OPT_CERT, OPT_KEY, OPT_EHLO, OPT_SEND, OPT_FROM, OPT_TO, OPT_SUBJECT, OPT_JSON, OPT_SHOW,
	OPT_TIMEOUT,
};

static const struct option long_opts[] = {
	{"tls", required_argument, NULL, OPT_TLS},
	{"auth", required_argument, NULL, OPT_AUTH},
	{"user", required_argument, NULL, OPT_USER},
	{"password-stdin", no_argument, NULL, OPT_PWSTDIN},
	{"token-stdin", no_argument, NULL, OPT_TOKSTDIN},
	{"cafile", required_argument, NULL, OPT_CAFILE},
	{"insecure", no_argument, NULL, OPT_INSECURE},
	{"client-cert", required_argument, NULL, OPT_CERT},
	{"client-key", required_argument, NULL, OPT_KEY},
	{"ehlo", required_argument, NULL, OPT_EHLO},
	{"send", no_argument, NULL, OPT_SEND},
	{"from", required_argument, NULL, OPT_FROM},
	{"to", required_argument, NULL, OPT_TO},
	{"subject", required_argument, NULL, OPT_SUBJECT},
	{"json", no_argument, NULL, OPT_JSON},
	{"show-secrets", no_argument, NULL, OPT_SHOW},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static bool addr_ok(const char *a)
{
	for (const char *p = a; *p; p++)
		if (*p == '<' || *p == '>' || *p == '\r' || *p == '\n' || *p == ' ')
			return false;
	return strlen(a) < 400;
}

static int parse_opts(int argc, char **argv, struct probe_opts *o)
{
	bool have_port = false;
	memset(o, 0, sizeof(*o));
	o->tls = SG_TLSM_STARTTLS;
	o->timeout_ms = 30000;
	optind = 1;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(probe_help, stdout);
			return -1;
		case OPT_TLS:
			if (strcmp(optarg, "none") == 0)
				o->tls = SG_TLSM_NONE;
			else if (strcmp(optarg, "starttls") == 0)
				o->tls = SG_TLSM_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				o->tls = SG_TLSM_IMPLICIT;
			else
				return usage_error("--tls must be none, starttls or implicit, not '%s'",
						   optarg);
			break;
		case OPT_AUTH:
			o->auth = optarg;
			break;
		case OPT_USER:
			o->user = optarg;
			break;
		case OPT_PWSTDIN:
			o->password_stdin = true;
			break;
		case OPT_TOKSTDIN:
			o->token_stdin = true;
			break;
		case OPT_CAFILE:
			o->cafile = optarg;
			break;
		case OPT_INSECURE:
			o->insecure = true;
			break;
		case OPT_CERT:
			o->cert = optarg;
			break;
		case OPT_KEY:
			o->key = optarg;
			break;
		case OPT_EHLO:
			o->ehlo = optarg;
			break;
		case OPT_SEND:
			o->send = true;
			break;
		case OPT_FROM:
			o->from = optarg;
			break;
		case OPT_TO:
			o->to = optarg;
			break;
		case OPT_SUBJECT:
			o->subject = optarg;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_SHOW:
			o->show_secrets = true;
			break;
		case OPT_TIMEOUT: {
			uint64_t t;
			if (sg_parse_u64(optarg, 1, 3600, &t) < 0)
				return usage_error("--timeout takes 1 to 3600 seconds, not '%s'", optarg);
			o->timeout_ms = (unsigned)t * 1000;
			break;
		}
		default:
			return usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return usage_error("%s", optind >= argc ? "missing HOST[:PORT]"
							 : "exactly one HOST[:PORT] is expected");
	if (parse_target(argv[optind], o, &have_port) < 0)
		return usage_error("bad HOST[:PORT] '%s'", argv[optind]);
	if (!have_port)
		o->port = o->tls == SG_TLSM_STARTTLS ? 587 : o->tls == SG_TLSM_IMPLICIT ? 465 : 25;
	if (o->password_stdin && o->token_stdin)
		return usage_error("%s", "--password-stdin and --token-stdin exclude each other");
	if (o->cafile != NULL && o->insecure)
		return usage_error("%s", "--cafile and --insecure exclude each other");
	if ((o->cert != NULL) != (o->key != NULL))
		return usage_error("%s", "--client-cert and --client-key go together");
	if (o->tls == SG_TLSM_NONE && (o->cafile || o->insecure || o->cert))
		return usage_error("%s", "TLS options make no sense with --tls none");
	if (o->send && o->auth != NULL && strcasecmp(o->auth, "all") == 0)
		return usage_error("%s", "--send goes with one mechanism, not --auth all");
	if (o->send && (o->from == NULL || o->to == NULL))
		return usage_error("%s", "--send needs --from and --to");
	if (!o->send && (o->from || o->to || o->subject))
		return usage_error("%s", "--from, --to and --subject go with --send");
	if ((o->from && !addr_ok(o->from)) || (o->to && !addr_ok(o->to)))
		return usage_error("%s", "--from and --to take a bare address (no <>, no spaces)");
	if (o->ehlo != NULL && (strlen(o->ehlo) > 255 || strpbrk(o->ehlo, " \r\n") != NULL))
		return usage_error("bad --ehlo name '%s'", o->ehlo);
	if ((o->password_stdin || o->token_stdin) && o->user == NULL)
		return usage_error("%s", "--password-stdin and --token-stdin need --user");
	if (o->auth != NULL && strcasecmp(o->auth, "all") != 0) {
		const struct sg_mech *m = sg_mech_find(o->auth);
		if (m == NULL || m->client_start == NULL) {
			struct sg_buf b;
			sg_buf_init(&b, 4096);
			for (size_t i = 0; sg_mechs[i] != NULL; i++)
				if (sg_mechs[i]->client_start != NULL)
					sg_buf_printf(&b, " %s", sg_mechs[i]->name);
			fprintf(stderr, "smtpgate probe: unknown mechanism '%s'; this build supports:%s\n",
				o->auth, sg_buf_str(&b));
			sg_buf_free(&b);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* ---- the command ------------------------------------------------------ */

static int worst(int a, int b)
{
	/* order of importance for a combined exit code */
	static const int rank[] = {0, 2, 5, 4, 3}; /* by code: 0 ok, 1 auth, 2 usage, 3 conn, 4 proto */
	return rank[b] > rank[a] ? b : a;
}

int sg_cmd_probe(int argc, char **argv)
{
	struct probe_opts o;
	int r = parse_opts(argc, argv, &o);
	if (r != 0)
		return r < 0 ? EXIT_OK : r;
	if (o.password_stdin || o.token_stdin) {
		o.secret = read_secret();
		if (o.secret == NULL || o.secret[0] == '\0') {
			fprintf(stderr, "smtpgate probe: nothing (or too much) read from standard input\n");
			sg_free_secret_str(&o.secret);
			return EXIT_USAGE;
		}
	}
	struct sg_ctls *tls = NULL;
	if (o.tls != SG_TLSM_NONE) {
		struct sg_ctls_opts to = {.cafile = o.cafile, .cert_file = o.cert, .key_file = o.key};
		const char *err = NULL;
		if (sg_ctls_new(&to, &tls, &err) < 0) {
			fprintf(stderr, "smtpgate probe: TLS setup: %s\n", err);
			sg_free_secret_str(&o.secret);
			return EXIT_USAGE;
		}
	}
	struct event_base *base = event_base_new();
	if (base == NULL)
		sg_fatal("event_base_new failed");
	char *message = o.send ? make_message(&o) : NULL;

	bool all = o.auth != NULL && strcasecmp(o.auth, "all") == 0;
	size_t natt = 0, cap = 2;
	for (size_t i = 0; sg_mechs[i] != NULL; i++)
		cap++;
	struct attempt *atts = sg_calloc(cap, sizeof(*atts));
	for (size_t i = 0; i < cap; i++)
		sg_buf_init(&atts[i].diag, 16384);

	/* First connection: a named mechanism, or capabilities only (then the
	 * strongest supported mechanism when --user was given, or all). */
	const struct sg_mech *first = NULL;
	if (o.auth != NULL && !all)
		first = sg_mech_find(o.auth);
	struct attempt *a0 = &atts[natt++];
	a0->mech = first != NULL ? first->name : NULL;
	job_setup(&a0->job, &o, tls, first);
	if (first != NULL && message != NULL) {
		a0->job.opts.mail_from = o.from;
		a0->job.opts.rcpt_to = o.to;
		a0->job.opts.message = message;
	}
	if (first == NULL && !all && o.user == NULL && message != NULL) {
		a0->job.opts.mail_from = o.from;
		a0->job.opts.rcpt_to = o.to;
		a0->job.opts.message = message;
	}
	sg_job_run(base, &a0->job);
	a0->exit_code = diagnose(a0, &o);
	int exit_code = a0->exit_code;

	bool caps_ok = a0->job.outcome == SG_JOB_OK;
	if (first == NULL && caps_ok && (all || o.user != NULL)) {
		for (size_t i = 0; sg_mechs[i] != NULL; i++) {
			const struct sg_mech *m = sg_mechs[i];
			if (!sg_job_offers(&a0->job, m->name))
				continue;
			if ((m->flags & SG_MECH_F_CHANNEL_BINDING) && !a0->job.tls_active)
				continue;
			char why[200];
			bool can = mech_can_start(m, &o, why, sizeof(why));
			if (!can && !all)
				continue;
			struct attempt *a = &atts[natt++];
			a->mech = m->name;
			if (!can) {
				a->skipped = true;
				snprintf(a->skip_reason, sizeof(a->skip_reason), "%s", why);
				continue;
			}
			job_setup(&a->job, &o, tls, m);
			if (message != NULL && !all) {
				a->job.opts.mail_from = o.from;
				a->job.opts.rcpt_to = o.to;
				a->job.opts.message = message;
			}
			sg_job_run(base, &a->job);
			a->exit_code = diagnose(a, &o);
			if (!all)
				break;
		}
		if (natt == 1) {
			if (!sg_job_caps(&a0->job)->auth) {
				exit_code = EXIT_AUTH;
			} else {
				diag(a0, "None of the offered mechanisms can be used with what was given "
					 "(login, password or token, TLS).");
				exit_code = EXIT_AUTH;
			}
		} else {
			exit_code = EXIT_OK;
			for (size_t i = 1; i < natt; i++)
				if (!atts[i].skipped)
					exit_code = worst(exit_code, atts[i].exit_code);
		}
	}

	/* ---- report ---- */
	const struct sg_job *info = &a0->job;
	for (size_t i = 1; i < natt; i++)
		if (!atts[i].skipped && atts[i].job.connected) {
			info = &atts[i].job;
			break;
		}
	if (o.json) {
		/* the first connection only read the capabilities when mechanisms were tried
		 * after it: not an attempt (the text report leaves it out too) */
		size_t from = natt > 1 && a0->mech == NULL ? 1 : 0;
		print_json(atts + from, natt - from, info, &o, exit_code);
	} else {
		printf("smtpgate probe: %s port %u, TLS %s%s%s\n", o.host, o.port, tls_name(o.tls),
		       a0->job.peer[0] ? ", address " : "", a0->job.peer);
		if (natt == 1) {
			printf("\n");
			print_attempt(a0, &o, false);
		}
		for (size_t i = 1; i < natt; i++) {
			printf("\n");
			print_attempt(&atts[i], &o, all);
		}
		printf("\n");
		if (info->connected) {
			print_tls(info);
			printf("\n");
			print_mechs(info, atts, natt);
		}
		if (all && natt > 1) {
			printf("\nMatrix:\n  %-22s %-8s %-6s %s\n", "mechanism", "result", "reply",
			       "detail");
			for (size_t i = 1; i < natt; i++) {
				const struct attempt *a = &atts[i];
				char code[16] = "-";
				if (!a->skipped && a->job.reply.code)
					snprintf(code, sizeof(code), "%d", a->job.reply.code);
				const char *detail = a->skipped ? a->skip_reason
					: a->job.auth_ok ? "authenticated"
					: a->job.error[0] ? a->job.error
							  : a->job.reply.text;
				printf("  %-22s %-8s %-6s %s\n", a->mech, result_word(a), code, detail);
			}
			printf("\nExit status %d.\n", exit_code);
		}
	}

	for (size_t i = 0; i < natt; i++)
		sg_job_free(&atts[i].job);
	for (size_t i = 0; i < cap; i++)
		sg_buf_free(&atts[i].diag);
	free(atts);
	free(message);
	sg_ctls_free(&tls);
	event_base_free(base);
	sg_free_secret_str(&o.secret);
	return exit_code;
}
