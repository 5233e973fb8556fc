/*
 * util.h: allocation that never returns NULL (out of memory is fatal, as in
 * Dovecot and OpenSMTPD), fatal() for broken invariants, and small string and
 * number helpers that replace the banned libc calls (atoi, strcpy, sprintf).
 */
#ifndef SG_UTIL_H
#define SG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *sg_malloc(size_t n);
void *sg_calloc(size_t n, size_t size);
void *sg_realloc(void *p, size_t n);
char *sg_strdup(const char *s);
char *sg_strndup(const char *s, size_t n);
char *sg_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Error messages for `const char **error_r`: a formatted string in a
 * per-thread buffer, valid until the next sg_errf on the same thread; and
 * the store of one into *error_r when the caller asked for it. */
const char *sg_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sg_set_err(const char **error_r, const char *msg);
_Noreturn void sg_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copy with truncation; always NUL-terminates; returns false when truncated. */
bool sg_strlcpy(char *dst, const char *src, size_t size);
/* Parse a whole string as an unsigned decimal in [min, max]; 0 or -1. */
int sg_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* ASCII case-insensitive prefix test. */
bool sg_prefix_ci(const char *s, const char *prefix);
/* Monotonic milliseconds and wall-clock seconds. */
uint64_t sg_now_ms(void);
int64_t sg_time(void);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void sg_hex(const uint8_t *in, size_t n, char *out);
/* Decode exactly n bytes of hex (either case); 0 or -1. */
int sg_unhex(const char *in, uint8_t *out, size_t n);
/* ASCII lower-case in place. */
void sg_lower(char *s);

#endif
