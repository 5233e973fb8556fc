/*
 * fuzz_config: the INI-style config parser (src/server/config.h), compiled in
 * from src/server/config.c. Input: the file text. On success the result must
 * be consistent (listeners bounded, strings terminated) and sg_config_finish
 * must work on it; on failure the error message must be terminated and name
 * the file.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "server/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct sg_config *c = malloc(sizeof(*c));
	sg_config_defaults(c);
	char err[256];
	memset(err, 'x', sizeof(err));
	int r = sg_config_parse(c, text, "fuzz.conf", err, sizeof(err));
	if (r == 0) {
		if (c->nlisteners > SG_MAX_LISTENERS)
			sg_fuzz_fail("config: %zu listeners", c->nlisteners);
		if (!TERMINATED(c->hostname) || !TERMINATED(c->data_dir) || !TERMINATED(c->user) ||
		    !TERMINATED(c->log_level) || !TERMINATED(c->ntlm_domain) ||
		    !TERMINATED(c->oauth_issuer) || !TERMINATED(c->gss_realm))
			sg_fuzz_fail("config: string field not terminated");
		for (size_t i = 0; i < c->nlisteners; i++) {
			const struct sg_listener_cfg *l = &c->listeners[i];
			if (!TERMINATED(l->name) || !TERMINATED(l->host) || !TERMINATED(l->mechanisms))
				sg_fuzz_fail("config: listener %zu string not terminated", i);
			if (l->port > 65535)
				sg_fuzz_fail("config: listener %zu port %u", i, l->port);
			(void)sg_role_name(l->role);
		}
		if (!TERMINATED(c->auth_mechanisms))
			sg_fuzz_fail("config: auth_mechanisms not terminated");
		sg_config_finish(c);
		if (c->nlisteners > SG_MAX_LISTENERS)
			sg_fuzz_fail("config: %zu listeners after finish", c->nlisteners);
		/* the offer never contains a mechanism whose legacy verifier is off,
		 * nor -PLUS without channel_binding or an explicit listing */
		for (size_t i = 0; i < c->nlisteners; i++) {
			const struct sg_listener_cfg *l = &c->listeners[i];
			for (size_t k = 0; sg_mechs[k] != NULL; k++) {
				const struct sg_mech *m = sg_mechs[k];
				if (!sg_listener_offers(l, m))
					continue;
				if ((m->cred == SG_CRED_NT && !(c->legacy_verifiers & SG_LEGACY_NTLM)) ||
				    (m->cred == SG_CRED_CRAM_MD5 && !(c->legacy_verifiers & SG_LEGACY_CRAM_MD5)))
					sg_fuzz_fail("config: %s offered without its legacy verifier", m->name);
				if ((m->flags & SG_MECH_F_CHANNEL_BINDING) && !l->channel_binding &&
				    l->mechanisms[0] == '\0')
					sg_fuzz_fail("config: %s offered by default", m->name);
			}
		}
	} else if (r == -1) {
		if (!TERMINATED(err))
			sg_fuzz_fail("config: error message not terminated");
	} else {
		sg_fuzz_fail("config: sg_config_parse returned %d", r);
	}
	free(c);
	free(text);
	return 0;
}
