/*
 * mech_registry.c: every mechanism this build knows, strongest first (the
 * order EHLO lists them in). One line per mechanism; a mechanism built only
 * with an optional feature goes inside its #ifdef.
 */
#include <stddef.h>
#include <strings.h>

#include "sasl/mech.h"
#include "sasl/mechs.h"

const struct sg_mech *const sg_mechs[] = {
	&sg_mech_scram_sha256_plus,
	&sg_mech_scram_sha1_plus,
	&sg_mech_scram_sha256,
	&sg_mech_scram_sha1,
	/* ---- other engineers: GSSAPI, EXTERNAL, OAUTHBEARER, XOAUTH2, NTLM
	 * lines go here, in order of strength ---- */
	&sg_mech_external,
#ifdef SG_HAVE_GSSAPI
	&sg_mech_gssapi,
#endif
	&sg_mech_oauthbearer,
	&sg_mech_xoauth2,
	&sg_mech_ntlm,
	&sg_mech_cram_md5,
	&sg_mech_plain,
	&sg_mech_login,
	NULL,
};

/* RFC 4422 section 3.1: mechanism names are case-insensitive on the wire. */
const struct sg_mech *sg_mech_find(const char *name)
{
	if (name == NULL)
		return NULL;
	for (size_t i = 0; sg_mechs[i] != NULL; i++) {
		if (strcasecmp(sg_mechs[i]->name, name) == 0)
			return sg_mechs[i];
	}
	return NULL;
}
