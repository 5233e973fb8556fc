/*
 * cred.h: the credential store. Accounts, the addresses they own, and the
 * verifiers each mechanism needs, all derived once when the password is set.
 * No plaintext or reversibly encrypted password is ever stored.
 *
 * Verifiers (one row per kind per account):
 *   PASSWORD_HASH  crypt(3) yescrypt string ($y$...), for PLAIN and LOGIN
 *   CRAM_MD5       HMAC-MD5 inner and outer key state after one block (as
 *                  Dovecot's CRAM-MD5 scheme), for CRAM-MD5
 *   SCRAM_SHA1/256 salt, iterations, StoredKey, ServerKey (RFC 5802 section 3)
 *   NT             MD4(UTF-16LE(password)) (MS-NLMP 3.3.1), for NTLM
 *
 * Backends (cred_int.h): SQLite (cred_sqlite.c, sg_cred_open) and PostgreSQL
 * (cred_pg.c, sg_cred_open_pg); every function below works on either.
 * All functions are thread-safe: a thread takes a connection from the
 * backend's pool for the length of a call.
 * Lookups are tri-state: 1 found, 0 not found, -1 store error (-> 454).
 */
#ifndef SG_CRED_H
#define SG_CRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_cred_kind {
	SG_CRED_NONE = 0,
	SG_CRED_PASSWORD_HASH,
	SG_CRED_CRAM_MD5,
	SG_CRED_SCRAM_SHA1,
	SG_CRED_SCRAM_SHA256,
	SG_CRED_NT,
};

#define SG_SCRAM_SALT_LEN 16 /* generated salts */
#define SG_SCRAM_SALT_MAX 64
#define SG_SCRAM_KEY_MAX 32 /* SHA-256 */

struct sg_verifier {
	enum sg_cred_kind kind;
	union {
		char crypt[256];               /* PASSWORD_HASH */
		struct {
			uint32_t inner[4];     /* MD5 state after (key ^ ipad) */
			uint32_t outer[4];     /* MD5 state after (key ^ opad) */
		} cram;
		struct {
			unsigned iterations;
			uint8_t salt[SG_SCRAM_SALT_MAX];
			size_t salt_len;
			size_t key_len;        /* 20 (SHA-1) or 32 (SHA-256) */
			uint8_t stored_key[SG_SCRAM_KEY_MAX];
			uint8_t server_key[SG_SCRAM_KEY_MAX];
		} scram;
		uint8_t nt[16];
	} u;
};

struct sg_account {
	int64_t id;
	char login[256];
	bool disabled;
};

struct sg_cred_store;

/* Open (creating the schema, file mode 0600) the SQLite database at path. */
int sg_cred_open(const char *path, struct sg_cred_store **store_r, const char **error_r);
void sg_cred_close(struct sg_cred_store **store);
/* "sqlite" or "postgresql". */
const char *sg_cred_backend(const struct sg_cred_store *s);
/* A cheap query: 0 when the store answers, -1 (readiness checks). */
int sg_cred_ping(struct sg_cred_store *s);

/* Find an account by login (exact, case-sensitive as stored; a login that is
 * an address matches case-insensitively in its domain). When kind is not
 * NONE, also load that verifier into *v (v->kind = NONE if the account has
 * none of that kind). */
int sg_cred_lookup(struct sg_cred_store *s, const char *login, enum sg_cred_kind kind,
		   struct sg_account *acct, struct sg_verifier *v);

/* Verify a password against the stored hash. Runs the same hash work when the
 * account does not exist. Returns 1 (ok, acct filled), 0 (refused; *reason_r is
 * "unknown_account", "wrong_password" or "disabled"), -1 (store error). */
int sg_cred_check_password(struct sg_cred_store *s, const char *login, const char *password,
			   struct sg_account *acct, const char **reason_r);

/* Remember successful password checks for ttl_ms (0 = off); see auth_cache.h. */
void sg_cred_set_auth_cache(struct sg_cred_store *s, unsigned ttl_ms, unsigned slots);

/* Does the account own this envelope address (exact address, or @domain)? 1/0/-1 */
int sg_cred_owns_address(struct sg_cred_store *s, const char *login, const char *address);
/* Which account receives mail for this address? 1 (login_r filled) / 0 / -1. */
int sg_cred_find_owner(struct sg_cred_store *s, const char *address, char *login_r, size_t size);
/* The same without the @domain catch-all: the account owning exactly this
 * address, or whose login it is. For identities (EXTERNAL's certificate): a
 * catch-all receives a domain's mail, it does not vouch for its people. */
int sg_cred_find_exact_owner(struct sg_cred_store *s, const char *address, char *login_r,
			     size_t size);
/* Is the domain local (some account owns an address or @domain in it)? 1/0/-1 */
int sg_cred_domain_is_local(struct sg_cred_store *s, const char *domain);

/* Validation used by the store and the CLI (0, or -1 with *error_r).
 * A login is 1..255 bytes, no control characters, spaces, NUL or '/', and is
 * not "." or ".." (it names the account's Maildir). An address is
 * "local@domain" (exactly one '@', both parts non-empty) or "@domain" (every
 * address in the domain); no spaces or control characters. */
int sg_cred_validate_login(const char *login, const char **error_r);
int sg_cred_validate_address(const char *address, const char **error_r);

/* Administration (CLI). Each returns 0 or -1 with *error_r set; the message
 * lives in a thread-local buffer valid until the next store call on the same
 * thread. Every change bumps the generation in the same transaction. */
/* Fast verifiers (issue 10 item 23): an unsalted NT hash and the CRAM-MD5
 * key state can be cracked at MD4/MD5 speed from a stolen database and are
 * password-equivalent for their mechanism, so they are derived only when
 * asked for (config `legacy_verifiers = ntlm cram-md5`, default none). */
enum sg_cred_legacy {
	SG_LEGACY_NTLM = 1u << 0,      /* SG_CRED_NT */
	SG_LEGACY_CRAM_MD5 = 1u << 1,  /* SG_CRED_CRAM_MD5 */
};
struct sg_cred_params {
	unsigned scram_iterations;     /* 0 = 4096 */
	unsigned legacy;               /* enum sg_cred_legacy bits; 0 = none */
};
/* Is a verifier of this kind derived and stored under these params? (p may
 * be NULL: the defaults, no legacy verifier.) */
bool sg_cred_params_want(const struct sg_cred_params *p, enum sg_cred_kind kind);
/* "ntlm cram-md5" (space or comma separated, "" or "none" = 0) -> bits.
 * 0, or -1 with *bad_r pointing at the unknown word (in a static copy). */
int sg_cred_legacy_parse(const char *text, unsigned *bits_r, const char **bad_r);
int sg_cred_add(struct sg_cred_store *s, const char *login, const char *password,
		const struct sg_cred_params *p, const char **error_r);
int sg_cred_set_password(struct sg_cred_store *s, const char *login, const char *password,
			 const struct sg_cred_params *p, const char **error_r);
int sg_cred_set_disabled(struct sg_cred_store *s, const char *login, bool disabled,
			 const char **error_r);
int sg_cred_delete(struct sg_cred_store *s, const char *login, const char **error_r);
int sg_cred_add_address(struct sg_cred_store *s, const char *login, const char *address,
			const char **error_r);
int sg_cred_del_address(struct sg_cred_store *s, const char *login, const char *address,
			const char **error_r);
/* Calls cb for each account (addresses space-separated). */
int sg_cred_list(struct sg_cred_store *s,
		 void (*cb)(void *ctx, const struct sg_account *a, const char *addresses), void *ctx,
		 const char **error_r);
/* Bumped on every change (passwd, disable, del): auth caches compare it. */
uint64_t sg_cred_generation(struct sg_cred_store *s);

/* Verifier derivation (verifier.c), used by sg_cred_add/set_password and tests. */
int sg_verifier_derive(enum sg_cred_kind kind, const char *password, unsigned scram_iterations,
		       struct sg_verifier *v);
/* SCRAM with a given salt (RFC test vectors); kind is SCRAM_SHA1 or SCRAM_SHA256. */
int sg_verifier_derive_scram(enum sg_cred_kind kind, const char *password, const uint8_t *salt,
			     size_t salt_len, unsigned iterations, struct sg_verifier *v);
/* Text form stored in the database, and back. */
int sg_verifier_format(const struct sg_verifier *v, char *out, size_t size);
int sg_verifier_parse(enum sg_cred_kind kind, const char *text, struct sg_verifier *v);

#endif
