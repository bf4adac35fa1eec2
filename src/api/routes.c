/* Every path the agent answers, tried in this order (see dispatch in
 * server.c; /ca/customers/:custid/... is an alias of /ca/...): the CA API under /ca (a bearer token when tokens are
 * configured), then /metrics, then the web UI's files. */
#include "api/api.h"
#include "api/routes_dashboards.h"

#define ID "/ca/instrumentations/:id"
const struct api_route api_routes[] = {
	{ "GET",    "/ca",				routes_ca__catalogue,		ROUTE_TOKEN },
	{ "GET",    "/ca/vms",				routes_ca__vms,			ROUTE_TOKEN },
	{ "GET",    "/ca/peers",			routes_ca__peers,		ROUTE_TOKEN },
	/* CA's legacy catalogue pieces */
	{ "GET",    "/ca/metrics",			routes_ca__metrics_legacy,	ROUTE_TOKEN },
	{ "GET",    "/ca/types",			routes_ca__types,		ROUTE_TOKEN },
	{ "GET",    "/ca/transformations",		routes_ca__transformations,	ROUTE_TOKEN },
	{ "GET",    "/ca/admin/status",			routes_ca__admin_status,	ROUTE_TOKEN },
	{ "GET",    "/ca/instrumentations",		routes_ca__list,		ROUTE_TOKEN },
	{ "POST",   "/ca/instrumentations",		routes_ca__create,		ROUTE_TOKEN },
	{ "GET",    ID,					routes_ca__get,			ROUTE_TOKEN },
	{ "PUT",    ID,					routes_ca__replace,		ROUTE_TOKEN },
	{ "DELETE", ID,					routes_ca__destroy,		ROUTE_TOKEN },
	{ "POST",   ID "/clone",			routes_ca__clone,		ROUTE_TOKEN },
	{ "GET",    ID "/value",				routes_ca__value_list,		ROUTE_TOKEN },
	{ "GET",    ID "/value/heatmap",		routes_ca__heatmap_list,	ROUTE_TOKEN },
	{ "GET",    ID "/value/raw",			routes_ca__value_raw,		ROUTE_TOKEN },
	{ "GET",    ID "/value/heatmap/image",		routes_ca__heatmap_image,	ROUTE_TOKEN },
	{ "GET",    ID "/value/heatmap/details",	routes_ca__heatmap_details,	ROUTE_TOKEN },
	{ "GET",    ID "/value/heatmap/average",	routes_ca__heatmap_average,	ROUTE_TOKEN },
	{ "GET",    ID "/value/heatmap/percentile",	routes_ca__heatmap_percentile,	ROUTE_TOKEN },
	{ "GET",    "/ca/dashboards",			routes_dashboards__list,	ROUTE_TOKEN },
	{ "GET",    "/ca/dashboards/:name",		routes_dashboards__get,		ROUTE_TOKEN },
	{ "PUT",    "/ca/dashboards/:name",		routes_dashboards__put,		ROUTE_TOKEN },
	{ "DELETE", "/ca/dashboards/:name",		routes_dashboards__delete,	ROUTE_TOKEN },
	/* what is left under /ca: 404 (or 405 for a path above of another method) */
	{ NULL,     "/ca/*",				routes_ca__not_found,		ROUTE_TOKEN },
	/* its own 401 and 403: Prometheus users get their own hints */
	{ "GET",    "/metrics",				routes_metrics__serve,		0 },
	{ "GET",    "/*",				routes_static__serve,		0 },
};
const size_t api_routes_count = sizeof(api_routes) / sizeof(api_routes[0]);
