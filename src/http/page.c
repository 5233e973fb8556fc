/*
 * page.c: the web page (src/http/page/index.html, app.css, app.js),
 * compiled in as strings by embed.py so the binary needs no files at run
 * time and the page works offline. http.c serves them with a strict CSP.
 */
#include <string.h>

#include "http/http_int.h"
#include "page_assets.h"

static const struct sg_http_asset assets[] = {
	{"/", "text/html; charset=utf-8", sg_asset_index_html},
	{"/index.html", "text/html; charset=utf-8", sg_asset_index_html},
	{"/app.css", "text/css; charset=utf-8", sg_asset_app_css},
	{"/app.js", "text/javascript; charset=utf-8", sg_asset_app_js},
	{"/queue.js", "text/javascript; charset=utf-8", sg_asset_queue_js},
};

const struct sg_http_asset *sg_http_asset_find(const char *path)
{
	for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
		if (strcmp(assets[i].path, path) == 0)
			return &assets[i];
	return NULL;
}
