/*
 * cred.c: the credential store interface (cred.h) over its backends
 * (cred_int.h): what every backend shares, and the dispatch.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/md4.h"
#include "core/secret.h"
#include "core/util.h"
#include "store/auth_cache.h"
#include "store/cred.h"
#include "store/cred_int.h"
#include "store/verifier.h"

/* A yescrypt hash of a password nobody knows: unknown logins run the same
 * crypt work as known ones (cred.h: "not found" costs as much as "wrong"). */
static const char dummy_hash[] = "$y$j9T$ceFi1N08iqAQCvEi9vriv1$k7EhQXyqfJwLpuobGDD3h6RJHOdBB0TOoaI32JgRSO5";

const enum sg_cred_kind sg_cred_all_kinds[SG_CRED_N_KINDS] = {
	SG_CRED_PASSWORD_HASH, SG_CRED_CRAM_MD5, SG_CRED_SCRAM_SHA1, SG_CRED_SCRAM_SHA256, SG_CRED_NT,
};

/* ---- validation and normalisation ---- */

static bool bad_char(unsigned char c)
{
	return c <= 0x20 || c == 0x7f;
}

int sg_cred_validate_login(const char *login, const char **error_r)
{
	if (login == NULL || login[0] == '\0') {
		sg_set_err(error_r, "login must not be empty");
		return -1;
	}
	size_t n = strlen(login);
	if (n > 255) {
		sg_set_err(error_r, "login is longer than 255 bytes");
		return -1;
	}
	if (strcmp(login, ".") == 0 || strcmp(login, "..") == 0) {
		sg_set_err(error_r, "login must not be '.' or '..'");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)login[i];
		if (bad_char(c) || c == '/') {
			sg_set_err(error_r, "login must not contain spaces, control characters or '/'");
			return -1;
		}
	}
	return 0;
}

int sg_cred_validate_address(const char *address, const char **error_r)
{
	if (address == NULL || address[0] == '\0') {
		sg_set_err(error_r, "address must not be empty");
		return -1;
	}
	size_t n = strlen(address);
	if (n > 320) {
		sg_set_err(error_r, "address is too long");
		return -1;
	}
	const char *at = strchr(address, '@');
	if (at == NULL || strchr(at + 1, '@') != NULL) {
		sg_set_err(error_r, sg_errf("address '%.255s' must contain exactly one '@'", address));
		return -1;
	}
	if (at[1] == '\0') {
		sg_set_err(error_r, sg_errf("address '%.255s' has an empty domain", address));
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (bad_char((unsigned char)address[i])) {
			sg_set_err(error_r, "address must not contain spaces or control characters");
			return -1;
		}
	}
	return 0;
}

/* Lower-case the part after the last '@' (if any). out has room for 321+. */
bool sg_cred_norm_domain(const char *in, char *out, size_t size)
{
	if (!sg_strlcpy(out, in, size))
		return false;
	char *at = strrchr(out, '@');
	if (at != NULL)
		sg_lower(at + 1);
	return true;
}

/* Is this login an address (exactly one '@', both sides non-empty)? Returns
 * the domain part or NULL. */
const char *sg_cred_login_domain(const char *login)
{
	const char *at = strchr(login, '@');
	if (at == NULL || at == login || at[1] == '\0' || strchr(at + 1, '@') != NULL)
		return NULL;
	return at + 1;
}

const char *sg_cred_addr_domain(const char *address)
{
	const char *at = strchr(address, '@');
	return at != NULL ? at + 1 : NULL;
}

/* ---- verifiers of a new password ---- */

void sg_cred_derived_wipe(struct sg_cred_derived *d)
{
	sg_wipe(d, sizeof(*d));
	free(d);
}

/* Derive every verifier before taking the write lock (yescrypt is slow). */
struct sg_cred_derived *sg_cred_derive_all(const char *password, const struct sg_cred_params *p,
					   const char **error_r)
{
	if (password == NULL || password[0] == '\0') {
		sg_set_err(error_r, "password must not be empty");
		return NULL;
	}
	unsigned iter = p != NULL && p->scram_iterations != 0 ? p->scram_iterations
							      : SG_SCRAM_ITER_DEFAULT;
	/* The password must be valid UTF-8 whether or not the NT hash (UTF-16)
	 * is kept: the same password has to work for every mechanism. */
	if (sg_utf8_to_utf16le(password, strlen(password), NULL, 0) < 0) {
		sg_set_err(error_r, "password is not valid UTF-8");
		return NULL;
	}
	struct sg_cred_derived *d = sg_calloc(1, sizeof(*d));
	for (size_t i = 0; i < SG_CRED_N_KINDS; i++) {
		/* legacy verifiers only when asked for (issue 10 item 23): a
		 * kind left NONE is not written by the backends */
		if (!sg_cred_params_want(p, sg_cred_all_kinds[i]))
			continue;
		if (sg_verifier_derive(sg_cred_all_kinds[i], password, iter, &d->v[i]) != 0 ||
		    sg_verifier_format(&d->v[i], d->text[i], sizeof(d->text[i])) != 0) {
			sg_set_err(error_r, sg_cred_all_kinds[i] == SG_CRED_NT
						 ? "password is not valid UTF-8"
						 : sg_errf("cannot derive the %s verifier",
							sg_cred_kind_name(sg_cred_all_kinds[i])));
			sg_cred_derived_wipe(d);
			return NULL;
		}
	}
	return d;
}

/* ---- dispatch ---- */

void sg_cred_close(struct sg_cred_store **store)
{
	struct sg_cred_store *s = *store;
	if (s == NULL)
		return;
	*store = NULL;
	sg_auth_cache_free(&s->cache);
	s->ops->close(s);
}

const char *sg_cred_backend(const struct sg_cred_store *s)
{
	return s->ops->name;
}

int sg_cred_ping(struct sg_cred_store *s)
{
	return s->ops->ping(s);
}

static int cred_generation(struct sg_cred_store *s, uint64_t *gen)
{
	if (s->ops->generation(s, gen) < 0)
		return -1;
	atomic_store(&s->last_generation, *gen);
	return 0;
}

uint64_t sg_cred_generation(struct sg_cred_store *s)
{
	uint64_t g;
	if (cred_generation(s, &g) < 0)
		return atomic_load(&s->last_generation);
	return g;
}

int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v)
{
	return s->ops->lookup(s, login, kind, acct, v);
}

int sg_cred_owns_address(struct sg_cred_store *s, const char *login, const char *address)
{
	return s->ops->owns_address(s, login, address);
}

int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size)
{
	return s->ops->find_owner(s, address, login_r, size);
}

int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size)
{
	if (s->ops->find_exact_owner != NULL)
		return s->ops->find_exact_owner(s, address, login_r, size);
	/* a backend without it: the exact login only (never a catch-all) */
	struct sg_account a;
	int r = s->ops->lookup(s, address, SG_CRED_NONE, &a, NULL);
	if (r == 1 && !sg_strlcpy(login_r, a.login, size))
		return 0;
	return r;
}

int sg_cred_domain_is_local(struct sg_cred_store *s, const char *domain)
{
	return s->ops->domain_is_local(s, domain);
}

int sg_cred_add(struct sg_cred_store *s, const char *login, const char *password,
		const struct sg_cred_params *p, const char **error_r)
{
	return s->ops->add(s, login, password, p, error_r);
}

int sg_cred_set_password(struct sg_cred_store *s, const char *login, const char *password,
			 const struct sg_cred_params *p, const char **error_r)
{
	return s->ops->set_password(s, login, password, p, error_r);
}

int sg_cred_set_disabled(struct sg_cred_store *s, const char *login, bool disabled,
			 const char **error_r)
{
	return s->ops->set_disabled(s, login, disabled, error_r);
}

int sg_cred_delete(struct sg_cred_store *s, const char *login, const char **error_r)
{
	return s->ops->del(s, login, error_r);
}

int sg_cred_add_address(struct sg_cred_store *s, const char *login, const char *address,
			const char **error_r)
{
	return s->ops->add_address(s, login, address, error_r);
}

int sg_cred_del_address(struct sg_cred_store *s, const char *login, const char *address,
			const char **error_r)
{
	return s->ops->del_address(s, login, address, error_r);
}

int sg_cred_list(struct sg_cred_store *s,
		 void (*cb)(void *ctx, const struct sg_account *a, const char *addresses), void *ctx,
		 const char **error_r)
{
	return s->ops->list(s, cb, ctx, error_r);
}

/* ---- the password check and its cache (every backend) ---- */

void sg_cred_set_auth_cache(struct sg_cred_store *s, unsigned ttl_ms, unsigned slots)
{
	sg_auth_cache_free(&s->cache);
	if (ttl_ms > 0)
		s->cache = sg_auth_cache_new(ttl_ms, slots);
}

int sg_cred_check_password(struct sg_cred_store *s, const char *login, const char *password,
			   struct sg_account *acct, const char **reason_r)
{
	uint64_t gen = 0;
	bool cacheable = s->cache != NULL && password != NULL && cred_generation(s, &gen) == 0;
	if (cacheable) {
		/* Only while the store answers: an outage is a 454, never a
		 * success from memory (the account may have been disabled). */
		struct sg_account hit;
		if (sg_auth_cache_get(s->cache, login, password, gen, &hit)) {
			if (acct != NULL)
				*acct = hit;
			sg_set_err(reason_r, "ok");
			return 1;
		}
	}
	struct sg_account a;
	struct sg_verifier v;
	int found = sg_cred_lookup(s, login, SG_CRED_PASSWORD_HASH, &a, &v);
	if (found < 0) {
		sg_wipe(&v, sizeof(v));
		sg_set_err(reason_r, "store_error");
		return -1;
	}
	bool have_hash = found == 1 && v.kind == SG_CRED_PASSWORD_HASH;
	int ok = sg_verifier_check_crypt(have_hash ? v.u.crypt : dummy_hash,
					 password != NULL ? password : "");
	sg_wipe(&v, sizeof(v));
	if (found == 0) {
		sg_set_err(reason_r, "unknown_account");
		return 0;
	}
	if (ok < 0) {
		sg_set_err(reason_r, "store_error");
		return -1;
	}
	if (!have_hash || ok == 0) {
		sg_set_err(reason_r, "wrong_password");
		return 0;
	}
	if (a.disabled) {
		sg_set_err(reason_r, "disabled");
		return 0;
	}
	if (acct != NULL)
		*acct = a;
	if (cacheable)
		sg_auth_cache_put(s->cache, login, password, gen, &a);
	sg_set_err(reason_r, "ok");
	return 1;
}

