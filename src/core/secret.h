/*
 * secret.h: handling of secrets (passwords, keys, proofs).
 *
 * sg_wipe() is never optimised away (OPENSSL_cleanse). sg_ct_eq() takes time
 * that depends only on n, never on where the inputs differ.
 */
#ifndef SG_SECRET_H
#define SG_SECRET_H

#include <stdbool.h>
#include <stddef.h>

void sg_wipe(void *p, size_t n);
bool sg_ct_eq(const void *a, const void *b, size_t n);
/* Fill with bytes from the CSPRNG; aborts when the CSPRNG fails (a broken invariant). */
void sg_random(void *p, size_t n);
/* Free a C string after wiping it; sets *s to NULL. */
void sg_free_secret_str(char **s);

#endif
