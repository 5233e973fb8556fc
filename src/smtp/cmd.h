/*
 * cmd.h: parsing of SMTP command lines (RFC 5321 section 4.1), pure and
 * fuzzable. No I/O, no allocation beyond the caller's buffers.
 *
 * A path is parsed strictly (RFC 5321 4.1.2): Mailbox = Local-part "@"
 * ( Domain / address-literal ), Local-part = Dot-string / Quoted-string.
 * Shell metacharacters, spaces or controls outside a quoted local part are
 * refused, so "MAIL FROM:<;sleep 66;>" is a 501, not an address.
 * Non-ASCII (UTF-8) octets are allowed in the local part and domain only when
 * the caller says SMTPUTF8 applies (RFC 6531 3.3).
 */
#ifndef SG_CMD_H
#define SG_CMD_H

#include <stdbool.h>
#include <stddef.h>

#define SG_PATH_MAX 256     /* RFC 5321 4.5.3.1.3 */
#define SG_PARAMS_MAX 16

/* Split "VERB args": verb (upper-cased copy, up to 15 chars) and a pointer to
 * the arguments (after one space, may be ""). -1 if the verb is not
 * alphabetic or too long. */
int sg_cmd_split(const char *line, char verb[16], const char **args_r);

struct sg_param {
	char key[32];     /* upper-cased */
	const char *value; /* points into the caller's copy of the line, or NULL */
};

struct sg_path_cmd {
	char path[SG_PATH_MAX + 1]; /* mailbox without brackets; "" for <> */
	bool utf8;                  /* non-ASCII octets present */
	size_t nparams;
	struct sg_param params[SG_PARAMS_MAX];
};

enum sg_path_err {
	SG_PATH_OK = 0,
	SG_PATH_SYNTAX,       /* bad "FROM:" / brackets / parameters */
	SG_PATH_BAD_ADDRESS,  /* mailbox syntax */
	SG_PATH_TOO_LONG,
	SG_PATH_NEED_UTF8,    /* non-ASCII without SMTPUTF8 */
};

/* Parse the arguments of MAIL ("FROM:") or RCPT ("TO:"). args is modified
 * in place (parameters are split at spaces and '='). allow_empty allows <>.
 * utf8_ok says whether SMTPUTF8 was given (for MAIL, pass true and check the
 * SMTPUTF8 parameter afterwards: see sg_path_has_param). */
enum sg_path_err sg_cmd_parse_path(char *args, const char *prefix, bool allow_empty,
				   struct sg_path_cmd *out);
const struct sg_param *sg_path_param(const struct sg_path_cmd *c, const char *key);

/* RFC 5321 4.1.2 Mailbox check on a bare address (no brackets). */
bool sg_mailbox_valid(const char *addr, bool allow_utf8);
/* RFC 3461 4: xtext (AUTH= value). Decodes into out; -1 if invalid, contains
 * CR/LF/controls once decoded, or does not fit. */
int sg_xtext_decode(const char *in, char *out, size_t size);

#endif
