#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/secret.h"
#include "core/util.h"

void sg_buf_init(struct sg_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void sg_buf_init_secret(struct sg_buf *b, size_t max)
{
	sg_buf_init(b, max);
	b->secret = true;
}

static int sg_buf_reserve(struct sg_buf *b, size_t extra)
{
	if (extra > b->max - b->len)
		return -1;
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t n = b->alloc ? b->alloc : 64;
	while (n < need)
		n *= 2;
	if (n > b->max + 1)
		n = b->max + 1;
	uint8_t *p = sg_malloc(n);
	if (b->data != NULL) {
		memcpy(p, b->data, b->len + 1);
		if (b->secret)
			sg_wipe(b->data, b->alloc);
		free(b->data);
	}
	b->data = p;
	b->alloc = n;
	return 0;
}

int sg_buf_append(struct sg_buf *b, const void *p, size_t n)
{
	if (sg_buf_reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int sg_buf_append_str(struct sg_buf *b, const char *s)
{
	return sg_buf_append(b, s, strlen(s));
}

int sg_buf_vprintf(struct sg_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || sg_buf_reserve(b, (size_t)n) < 0)
		return -1;
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int sg_buf_printf(struct sg_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = sg_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

void sg_buf_reset(struct sg_buf *b)
{
	if (b->data != NULL) {
		if (b->secret)
			sg_wipe(b->data, b->len);
		b->data[0] = '\0';
	}
	b->len = 0;
}

void sg_buf_free(struct sg_buf *b)
{
	if (b->data != NULL) {
		if (b->secret)
			sg_wipe(b->data, b->alloc);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->alloc = 0;
}
