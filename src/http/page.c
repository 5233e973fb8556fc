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
	/* the API's contract (src/http/openapi.json), public: it holds no data */
	{"/api/v1/openapi.json", "application/json", sg_asset_openapi_json},
	{"/queue.js", "text/javascript; charset=utf-8", sg_asset_queue_js},
};

const char *sg_http_htmlcheck_data(void)
{
	return sg_asset_htmlcheck_json;
}

const struct sg_http_asset *sg_http_asset_find(const char *path)
{
	for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
		if (strcmp(assets[i].path, path) == 0)
			return &assets[i];
	return NULL;
}
