/*
 * cred_int.h: the seam between the credential store interface (cred.h) and
 * its backends (cred_sqlite.c, cred_pg.c), as Dovecot's passdb drivers and
 * Postfix's dict_* tables: one const ops table per backend, chosen when the
 * store is opened; nothing above cred.h knows which one runs.
 *
 * cred.c owns what every backend shares: validation and normalisation, the
 * verifier derivation, the password check with its auth cache (keyed on the
 * generation the backend reports) and the dispatch. A backend embeds
 * struct sg_cred_store as its first member and sets ops.
 *
 * Every op follows cred.h's contract for the function of the same name.
 * generation() returns 0 with the current generation, or -1 when it cannot
 * vouch for it (store unreachable; for PostgreSQL also: the change
 * notifications are not being received), in which case no cached success is
 * used.
 */
#ifndef SG_CRED_INT_H
#define SG_CRED_INT_H

#include <stdatomic.h>

#include "store/cred.h"
#include "store/verifier.h"

struct sg_auth_cache;

struct sg_cred_ops {
	const char *name;
	void (*close)(struct sg_cred_store *s);
	int (*ping)(struct sg_cred_store *s);
	int (*generation)(struct sg_cred_store *s, uint64_t *gen);
	int (*lookup)(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		      struct sg_account *acct, struct sg_verifier *v);
	int (*owns_address)(struct sg_cred_store *s, const char *login, const char *address);
	int (*find_owner)(struct sg_cred_store *s, const char *address, char *login_r, size_t size);
	/* find_owner without the @domain catch-all (NULL: exact login only) */
	int (*find_exact_owner)(struct sg_cred_store *s, const char *address, char *login_r,
				size_t size);
	int (*domain_is_local)(struct sg_cred_store *s, const char *domain);
	int (*add)(struct sg_cred_store *s, const char *login, const char *password,
		   const struct sg_cred_params *p, const char **error_r);
	int (*set_password)(struct sg_cred_store *s, const char *login, const char *password,
			    const struct sg_cred_params *p, const char **error_r);
	int (*set_disabled)(struct sg_cred_store *s, const char *login, bool disabled,
			    const char **error_r);
	int (*del)(struct sg_cred_store *s, const char *login, const char **error_r);
	int (*add_address)(struct sg_cred_store *s, const char *login, const char *address,
			   const char **error_r);
	int (*del_address)(struct sg_cred_store *s, const char *login, const char *address,
			   const char **error_r);
	int (*list)(struct sg_cred_store *s,
		    void (*cb)(void *ctx, const struct sg_account *a, const char *addresses), void *ctx,
		    const char **error_r);
};

struct sg_cred_store {
	const struct sg_cred_ops *ops;
	struct sg_auth_cache *cache;  /* NULL: every check hashes */
	_Atomic uint64_t last_generation;
};

/* Every verifier kind stored per account, in storage order. */
extern const enum sg_cred_kind sg_cred_all_kinds[];
#define SG_CRED_N_KINDS 5

/* Lower-case the part after the last '@' (if any); false when it does not fit. */
bool sg_cred_norm_domain(const char *in, char *out, size_t size);
/* The domain of a login that is an address (exactly one '@', both sides
 * non-empty), else NULL. */
const char *sg_cred_login_domain(const char *login);
/* The part after the '@' of a validated address. */
const char *sg_cred_addr_domain(const char *address);

/* Every verifier of a password, derived before a write transaction starts
 * (yescrypt is slow); wiped and freed by sg_cred_derived_wipe. */
struct sg_cred_derived {
	struct sg_verifier v[SG_CRED_N_KINDS];
	char text[SG_CRED_N_KINDS][SG_VERIFIER_TEXT_MAX];
};
struct sg_cred_derived *sg_cred_derive_all(const char *password, const struct sg_cred_params *p,
					   const char **error_r);
void sg_cred_derived_wipe(struct sg_cred_derived *d);

#endif
