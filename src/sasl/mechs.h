/*
 * mechs.h: the descriptor every mechanism file exports. The registry
 * (mech_registry.c) lists them in sg_mechs[], strongest first.
 *
 * Adding a mechanism: one mech_<name>.c exporting `const struct sg_mech
 * sg_mech_<name>`, one line here, one line in mech_registry.c.
 *
 * Driver convention shared by every mechanism in this tree: server_step is
 * called with in == NULL when the client gave no initial response (AUTH
 * <mech> without an argument). Client-first mechanisms then answer
 * SG_MECH_CONTINUE with an empty challenge ("334 "); server-first mechanisms
 * (LOGIN, CRAM-MD5) produce their first challenge. An empty initial response
 * ("=") is in != NULL with inlen == 0.
 *
 * Client side: client_step returns SG_MECH_CONTINUE with the bytes to send
 * (possibly empty) when it expects another challenge, and SG_MECH_OK with the
 * last bytes to send (possibly empty) when its part is complete and the
 * server has been verified where the mechanism allows it (SCRAM's v=). The
 * client driver sends out in both cases (and also when a step returns
 * SG_MECH_FAIL with out non-empty: the OAuth error acknowledgement). A 334
 * after SG_MECH_OK calls client_step again, which fails. A 235 after a step
 * that returned SG_MECH_CONTINUE is success, except for the mutual-auth
 * mechanisms (SCRAM-*: the server skipped v=, so it was not verified); OAuth
 * clients return CONTINUE after their token because an error 334 may follow.
 * (Proposal for mech.h: a SG_MECH_F_MUTUAL flag instead of the name test.)
 */
#ifndef SG_MECHS_H
#define SG_MECHS_H

#include "sasl/mech.h"

/* SCRAM (mech_scram.c) */
extern const struct sg_mech sg_mech_scram_sha256_plus;
extern const struct sg_mech sg_mech_scram_sha1_plus;
extern const struct sg_mech sg_mech_scram_sha256;
extern const struct sg_mech sg_mech_scram_sha1;
/* Load (creating it once, mode 0600) the key that derives the fake salts of
 * unknown logins from <data_dir>/scram-fake-salt.key, so that they stay the
 * same across restarts as real salts do. Call at start, before sessions;
 * without it the key is random per process. 0, or -1 with *error_r. */
#define SG_SCRAM_FAKE_KEY_FILE "scram-fake-salt.key"
int sg_scram_fake_key_load(const char *data_dir, const char **error_r);
/* mech_cram_md5.c, mech_plain.c, mech_login.c */
extern const struct sg_mech sg_mech_cram_md5;
extern const struct sg_mech sg_mech_plain;
extern const struct sg_mech sg_mech_login;
/* Other mechanisms (NTLM, GSSAPI, XOAUTH2, OAUTHBEARER, EXTERNAL): add below. */
/* mech_external.c (TLS client certificate); mech_gssapi.c only when built
 * with the gssapi feature (SG_HAVE_GSSAPI) */
extern const struct sg_mech sg_mech_external;
extern const struct sg_mech sg_mech_gssapi;
/* The GSSAPI principal mapping (pure; exported for tests): "user@REALM" ->
 * login "user" or "user@map_domain". REALM must equal realm_allowed (NULL or
 * "" refuses every principal). Multi-component principals are refused. OK,
 * or FAIL with *reason_r "unknown_principal" / "wrong_realm". */
enum sg_mech_status sg_gss_map_principal(const char *principal, const char *realm_allowed,
					 const char *map_domain, char *login, size_t size,
					 const char **reason_r);
/* mech_oauthbearer.c, mech_xoauth2.c (bearer tokens, jwt.h) */
extern const struct sg_mech sg_mech_oauthbearer;
extern const struct sg_mech sg_mech_xoauth2;

/* mech_ntlm.c (MS-SMTPNTLM; ntlm_msg.c, ntlm.c) */
extern const struct sg_mech sg_mech_ntlm;

#endif
