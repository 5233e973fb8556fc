#include "smtp/cmd.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

int sg_cmd_split(const char *line, char verb[16], const char **args_r)
{
	size_t i = 0;
	while (line[i] != '\0' && line[i] != ' ') {
		if (i >= 15 || !isalpha((unsigned char)line[i]))
			return -1;
		verb[i] = (char)toupper((unsigned char)line[i]);
		i++;
	}
	if (i == 0)
		return -1;
	verb[i] = '\0';
	*args_r = line[i] == ' ' ? line + i + 1 : line + i;
	return 0;
}

/* atext of RFC 5322 3.2.3 */
static bool is_atext(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool dot_string_valid(const char *s, size_t n, bool utf8)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (c >= 0x80) {
			if (!utf8)
				return false;
		} else if (!is_atext(c)) {
			return false;
		}
	}
	return true;
}

static bool quoted_string_valid(const char *s, size_t n, bool utf8)
{
	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return false;
	for (size_t i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\') {
			i++;
			if (i + 1 >= n || (unsigned char)s[i] < 32 || (unsigned char)s[i] > 126)
				return false;
		} else if (c == '"' || c < 32 || c == 127 || (c >= 0x80 && !utf8)) {
			return false;
		}
	}
	return true;
}

static bool domain_valid(const char *d, size_t n, bool utf8)
{
	if (n == 0 || n > 255)
		return false;
	if (d[0] == '[') {
		/* address-literal: accept IPv4 or "IPv6:" forms of hex, ':' and '.' */
		if (d[n - 1] != ']' || n < 3)
			return false;
		for (size_t i = 1; i + 1 < n; i++) {
			unsigned char c = (unsigned char)d[i];
			if (!isalnum(c) && c != '.' && c != ':')
				return false;
		}
		return true;
	}
	size_t label = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (c == '-' && label == 0)
			return false;
		if (!(isalnum(c) || c == '-' || (c >= 0x80 && utf8)))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && d[n - 1] != '-';
}

bool sg_mailbox_valid(const char *addr, bool allow_utf8)
{
	size_t n = strlen(addr);
	const char *at = NULL;
	if (n > 0 && addr[0] == '"') {
		/* the '@' after the closing quote */
		size_t i = 1;
		while (i < n && addr[i] != '"') {
			if (addr[i] == '\\')
				i++;
			i++;
		}
		if (i >= n || i + 1 >= n || addr[i + 1] != '@')
			return false;
		at = addr + i + 1;
	} else {
		at = strrchr(addr, '@');
	}
	if (at == NULL)
		return false;
	size_t local_len = (size_t)(at - addr);
	if (local_len == 0 || local_len > 64)
		return false;
	bool local_ok = addr[0] == '"' ? quoted_string_valid(addr, local_len, allow_utf8)
				       : dot_string_valid(addr, local_len, allow_utf8);
	return local_ok && domain_valid(at + 1, strlen(at + 1), allow_utf8);
}

enum sg_path_err sg_cmd_parse_path(char *args, const char *prefix, bool allow_empty,
				   struct sg_path_cmd *out)
{
	memset(out, 0, sizeof(*out));
	size_t plen = strlen(prefix);
	if (strncasecmp(args, prefix, plen) != 0)
		return SG_PATH_SYNTAX;
	char *p = args + plen;
	/* RFC 5321 says no space after the colon; Postfix, Exim and every MTA
	 * accept one, and many clients send it. */
	while (*p == ' ')
		p++;
	if (*p != '<')
		return SG_PATH_SYNTAX;
	p++;
	char *end = p;
	bool in_quote = false;
	for (; *end != '\0'; end++) {
		if (in_quote && *end == '\\' && end[1] != '\0') {
			end++;
			continue;
		}
		if (*end == '"')
			in_quote = !in_quote;
		else if (*end == '>' && !in_quote)
			break;
	}
	if (*end != '>')
		return SG_PATH_SYNTAX;
	size_t alen = (size_t)(end - p);
	char *addr = p;
	/* Source routes (RFC 5321 4.1.2 A-d-l) are accepted and ignored, 4.1.1.3 */
	if (alen > 0 && addr[0] == '@') {
		char *colon = memchr(addr, ':', alen);
		if (colon == NULL)
			return SG_PATH_BAD_ADDRESS;
		alen -= (size_t)(colon + 1 - addr);
		addr = colon + 1;
	}
	if (alen > SG_PATH_MAX)
		return SG_PATH_TOO_LONG;
	memcpy(out->path, addr, alen);
	out->path[alen] = '\0';
	if (alen == 0) {
		if (!allow_empty)
			return SG_PATH_BAD_ADDRESS;
	} else {
		for (size_t i = 0; i < alen; i++)
			if ((unsigned char)out->path[i] >= 0x80)
				out->utf8 = true;
		if (!sg_mailbox_valid(out->path, true))
			return SG_PATH_BAD_ADDRESS;
	}
	/* ESMTP parameters: SP-separated keyword[=value] (RFC 5321 4.1.2) */
	char *q = end + 1;
	if (*q != '\0' && *q != ' ')
		return SG_PATH_SYNTAX;
	while (*q != '\0') {
		while (*q == ' ')
			q++;
		if (*q == '\0')
			break;
		if (out->nparams >= SG_PARAMS_MAX)
			return SG_PATH_SYNTAX;
		char *word = q;
		while (*q != '\0' && *q != ' ')
			q++;
		if (*q == ' ')
			*q++ = '\0';
		struct sg_param *pm = &out->params[out->nparams++];
		char *eq = strchr(word, '=');
		if (eq != NULL) {
			*eq = '\0';
			pm->value = eq + 1;
			for (const char *v = pm->value; *v != '\0'; v++)
				if ((unsigned char)*v < 33 || (unsigned char)*v > 126)
					return SG_PATH_SYNTAX;
		}
		size_t klen = strlen(word);
		if (klen == 0 || klen >= sizeof(pm->key))
			return SG_PATH_SYNTAX;
		for (size_t i = 0; i < klen; i++) {
			if (!isalnum((unsigned char)word[i]) && word[i] != '-')
				return SG_PATH_SYNTAX;
			pm->key[i] = (char)toupper((unsigned char)word[i]);
		}
		pm->key[klen] = '\0';
	}
	return SG_PATH_OK;
}

const struct sg_param *sg_path_param(const struct sg_path_cmd *c, const char *key)
{
	for (size_t i = 0; i < c->nparams; i++)
		if (strcmp(c->params[i].key, key) == 0)
			return &c->params[i];
	return NULL;
}

int sg_xtext_decode(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (const char *p = in; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '+') {
			uint8_t v;
			char hex[3] = {p[1], p[1] ? p[2] : '\0', '\0'};
			if (hex[0] == '\0' || hex[1] == '\0' || sg_unhex(hex, &v, 1) < 0)
				return -1;
			c = v;
			p += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return -1;
		}
		if (c < 32 || c == 127)
			return -1; /* CR, LF, NUL... hidden in xtext */
		if (o + 1 >= size)
			return -1;
		out[o++] = (char)c;
	}
	if (size == 0)
		return -1;
	out[o] = '\0';
	return 0;
}
