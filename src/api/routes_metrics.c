/* GET /metrics: the agent's Prometheus exporter, in the format the scraper
 * asks for (Accept). */
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "api/api.h"

void routes_metrics__serve(const struct api_ctx *cx, const struct api_request *rq,
			   struct api_response *r)
{
	struct agent_error e;
	enum om_format fmt;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!rq->who) {
		api__error(r, 401, "Unauthorized",
			   "missing or invalid bearer token (send 'Authorization: Bearer TOKEN'; Prometheus: authorization.credentials_file)");
		return;
	}
	fmt = om__negotiate(MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
							MHD_HTTP_HEADER_ACCEPT));
	if (agent__metrics(cx->agent, rq->who, fmt, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9,
			   &r->body, &r->body_len, &e)) {
		api__agent_error(r, &e);
		return;
	}
	r->body_type = om__content_type(fmt);
}
