#include "core/secret.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void sg_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}

bool sg_ct_eq(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

void sg_random(void *p, size_t n)
{
	if (n > 0 && RAND_bytes(p, (int)n) != 1)
		sg_fatal("CSPRNG failure");
}

void sg_free_secret_str(char **s)
{
	if (*s == NULL)
		return;
	sg_wipe(*s, strlen(*s));
	free(*s);
	*s = NULL;
}
