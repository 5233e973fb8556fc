/*
 * fuzz_cmd: the SMTP command line parser (src/smtp/cmd.h).
 * Input: one command line without CRLF. data[0] low bits pick the options
 * (SMTPUTF8 allowed, <> allowed). Checked: the verb is upper-case letters,
 * a parsed path fits SG_PATH_MAX and passes sg_mailbox_valid, parameters are
 * bounded, and xtext decoding never yields a control character.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "fuzz_common.h"
#include "smtp/cmd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

static void check_xtext(const char *in)
{
	char out[64];
	int r = sg_xtext_decode(in, out, sizeof(out));
	if (r < 0)
		return;
	size_t n = strnlen(out, sizeof(out));
	if (n == sizeof(out))
		sg_fuzz_fail("xtext: output not NUL-terminated");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)out[i];
		if (c < 0x20 || c == 0x7f)
			sg_fuzz_fail("xtext: control 0x%02x in decoded output", c);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0];
	data++;
	size--;
	char *line = sg_malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';

	char verb[16];
	const char *args = NULL;
	if (sg_cmd_split(line, verb, &args) == 0) {
		size_t vl = strnlen(verb, sizeof(verb));
		if (vl == 0 || vl >= sizeof(verb))
			sg_fuzz_fail("cmd_split: verb length %zu", vl);
		for (size_t i = 0; i < vl; i++)
			if (!isupper((unsigned char)verb[i]))
				sg_fuzz_fail("cmd_split: verb \"%s\" not upper-case alpha", verb);
		if (args == NULL || args < line || args > line + size)
			sg_fuzz_fail("cmd_split: args outside the line");
	} else {
		args = line;
	}

	/* Parse the arguments as MAIL and as RCPT, each on its own copy. */
	static const char *const prefixes[2] = {"FROM:", "TO:"};
	for (int k = 0; k < 2; k++) {
		size_t al = strlen(args);
		char *a = sg_malloc(al + 1);
		memcpy(a, args, al + 1);
		struct sg_path_cmd pc;
		bool allow_empty = (flags & 1) != 0;
		enum sg_path_err e = sg_cmd_parse_path(a, prefixes[k], allow_empty, &pc);
		if (e == SG_PATH_OK) {
			size_t pl = strnlen(pc.path, sizeof(pc.path));
			if (pl > SG_PATH_MAX)
				sg_fuzz_fail("parse_path: path not terminated");
			if (pl == 0 && !allow_empty)
				sg_fuzz_fail("parse_path: <> accepted without allow_empty");
			if (pl > 0 && !sg_mailbox_valid(pc.path, true))
				sg_fuzz_fail("parse_path: accepted \"%s\" that sg_mailbox_valid refuses",
					     pc.path);
			if (pc.nparams > SG_PARAMS_MAX)
				sg_fuzz_fail("parse_path: %zu params", pc.nparams);
			for (size_t i = 0; i < pc.nparams; i++) {
				if (memchr(pc.params[i].key, '\0', sizeof(pc.params[i].key)) == NULL)
					sg_fuzz_fail("parse_path: param key not terminated");
				const char *v = pc.params[i].value;
				if (v != NULL && (v < a || v > a + al))
					sg_fuzz_fail("parse_path: param value outside the line");
				(void)sg_path_param(&pc, pc.params[i].key);
				if (v != NULL && strcmp(pc.params[i].key, "AUTH") == 0)
					check_xtext(v);
			}
			for (const char *p = pc.path; *p != '\0'; p++) {
				unsigned char c = (unsigned char)*p;
				if (c < 0x20 || c == 0x7f)
					sg_fuzz_fail("parse_path: control 0x%02x in path", c);
			}
		}
		free(a);
	}

	(void)sg_mailbox_valid(line, (flags & 2) != 0);
	check_xtext(line);
	free(line);
	return 0;
}
