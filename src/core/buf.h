/*
 * buf.h: growable byte buffers with a hard cap fixed at creation.
 *
 * Contract: data is always NUL-terminated after len (so a buffer that holds
 * text can be used as a C string), len + 1 <= alloc, and len never exceeds max.
 * An append that would pass max fails with -1 and leaves the buffer unchanged.
 * sg_buf_free() wipes the bytes when the buffer was marked secret.
 */
#ifndef SG_BUF_H
#define SG_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_buf {
	uint8_t *data;
	size_t len;
	size_t alloc;
	size_t max;
	bool secret;
};

void sg_buf_init(struct sg_buf *b, size_t max);
void sg_buf_init_secret(struct sg_buf *b, size_t max);
int sg_buf_append(struct sg_buf *b, const void *p, size_t n);
int sg_buf_append_str(struct sg_buf *b, const char *s);
int sg_buf_printf(struct sg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sg_buf_vprintf(struct sg_buf *b, const char *fmt, va_list ap);
/* Empty the buffer (wiping it if secret), keep the allocation. */
void sg_buf_reset(struct sg_buf *b);
void sg_buf_free(struct sg_buf *b);
static inline const char *sg_buf_str(const struct sg_buf *b)
{
	return b->data != NULL ? (const char *)b->data : "";
}

#endif
