/* The agent's Prometheus exporter: internal consumers on the collection hub
 * feeding the OpenMetrics store (om.h), and its exposition text (which the
 * API serves at GET /metrics).
 *
 * Opt-in (kvmscope agent --metrics): its consumers start every collector
 * for as long as the agent runs, and an agent without instrumentations
 * promises to attach no BPF program at all.
 *
 * Everything here runs under the agent lock: the consumers' sinks during
 * hub__drain, tick in the drain loop, render for a scrape.
 */
#ifndef KVMSCOPE_EXPORT_METRICS_H
#define KVMSCOPE_EXPORT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "export/om.h"

struct hub;
struct metrics_export;

/* Registers one hub consumer per exported family, which starts the
 * collectors. On success the caller owns *out (metrics_export__stop).
 * -errno with a message for the user in err. */
int metrics_export__start(struct metrics_export **out, struct hub *hub,
			  const struct om_config *cfg, char *err, size_t errlen);
/* Unregisters the consumers (stopping collectors nobody else needs) and
 * frees m. */
void metrics_export__stop(struct metrics_export *m, struct hub *hub);
/* After each drain: kernel drop counters, and every few seconds the expiry
 * of gone VMs' series. */
void metrics_export__tick(struct metrics_export *m, struct hub *hub, int64_t now);
/* The exposition text; *out owned by the caller (free). 0 or -ENOMEM. */
int metrics_export__render(struct metrics_export *m, enum om_format fmt, double started,
			   char **out, size_t *len);
struct om_store *metrics_export__store(struct metrics_export *m);

#endif
