/* Named dashboards of the web UI, kept on the agent.
 *
 *   GET    /ca/dashboards        the caller's dashboard names, sorted
 *   GET    /ca/dashboards/NAME   one dashboard: the JSON object it was saved as
 *   PUT    /ca/dashboards/NAME   saves a JSON object (at most DASHBOARD_MAX bytes)
 *   DELETE /ca/dashboards/NAME   removes it (204)
 *
 * Dashboards are scoped like instrumentations: each owner (the operator,
 * each tenant) sees and changes only its own. They live in the agent's state
 * directory (dashboards/OWNER/NAME.json, written atomically); an agent run
 * with --state-dir none answers 503. NAME is 1..64 of [A-Za-z0-9_.-], not
 * starting with '.'; an owner holds at most DASHBOARDS_PER_OWNER.
 */
#ifndef KVMSCOPE_API_ROUTES_DASHBOARDS_H
#define KVMSCOPE_API_ROUTES_DASHBOARDS_H

#include "api/api.h"

#define DASHBOARD_MAX		(32 * 1024)
#define DASHBOARD_NAME_MAX	64
#define DASHBOARDS_PER_OWNER	64

void routes_dashboards__list(const struct api_ctx *cx, const struct api_request *rq,
			     struct api_response *r);
void routes_dashboards__get(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r);
void routes_dashboards__put(const struct api_ctx *cx, const struct api_request *rq,
			    struct api_response *r);
void routes_dashboards__delete(const struct api_ctx *cx, const struct api_request *rq,
			       struct api_response *r);

#endif
