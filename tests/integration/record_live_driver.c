/* One hub, two consumers of its drain: the recorder of `kvmscope record`
 * (record/recorder.h) writing FILE, and live instrumentations as `kvmscope
 * watch` runs them, printed each second as watch -j prints them:
 *   {"i": <spec index>, "time": T, "value": <CA raw value>}
 * Both see the very same records, so `kvmscope report FILE ... -j` must give
 * every bucket of every second exactly, numeric fields measured in the
 * kernel (latencies) included — which two processes, each with its own BPF
 * programs timing the same events, cannot promise. Writes "ready" to stderr
 * once the first second is being counted.
 * Usage: record_live_driver FILE SECONDS SPEC_JSON...   (SPEC: {"metric",
 *        "decomposition", "predicate"} as POST /ca/instrumentations takes)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "collectors/hub.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "record/recorder.h"

#define MAX_SPECS 16

struct live {
	struct instr *in;
	int64_t from;
};

static int ingest(const struct record *rec, void *ctx)
{
	struct live *l = ctx;

	return rec->time < l->from ? 0 : instr__ingest(l->in, rec);
}

static void sleep_until(int64_t sec, long ns)
{
	struct timespec ts = { .tv_sec = sec, .tv_nsec = ns };

	while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

int main(int argc, char **argv)
{
	static const enum metric_id metrics[] = { METRIC_VM_EXITS, METRIC_VM_IRQS, METRIC_VM_DISK_OPS,
						  METRIC_VM_DISK_BYTES };
	uint64_t fields[4];
	struct live live[MAX_SPECS] = { 0 };
	int ids[MAX_SPECS], nspecs = argc - 3, rc = 1;
	struct recorder *recorder = NULL;
	struct hub *hub = NULL;
	long seconds;
	char err[512];

	if (argc < 4 || nspecs > MAX_SPECS || (seconds = strtol(argv[2], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: record_live_driver FILE SECONDS SPEC_JSON...\n");
		return 2;
	}
	for (int i = 0; i < 4; i++)
		fields[i] = (1ull << metric__get(metrics[i])->nfields) - 1;
	if (hub__new(&hub, "/proc"))
		return 1;
	struct recorder_opts ro = { .nmetrics = 4, .metrics = metrics, .fields = fields };
	if (recorder__new(hub, &ro, &recorder, err, sizeof(err))) {
		fprintf(stderr, "recorder: %s\n", err);
		goto out;
	}
	for (int i = 0; i < nspecs; i++) {
		json_t *spec = json_loads(argv[3 + i], 0, NULL);
		struct hub_consumer c;

		live[i].from = INT64_MAX;
		ids[i] = -1;
		if (!spec || instr__new(spec, &live[i].in, err, sizeof(err))) {
			fprintf(stderr, "spec %d: %s\n", i, spec ? err : "not JSON");
			json_decref(spec);
			goto out;
		}
		json_decref(spec);
		c = (struct hub_consumer){ instr__metric(live[i].in)->id, instr__fields_needed(live[i].in),
					   ingest, &live[i] };
		ids[i] = hub__add(hub, &c, err, sizeof(err));
		if (ids[i] < 0) {
			fprintf(stderr, "spec %d: %s\n", i, err);
			goto out;
		}
	}

	int64_t start = time(NULL) + 1;

	sleep_until(start, 50 * 1000 * 1000);
	hub__drain(hub, start);
	if (recorder__begin(recorder, argv[1], start, err, sizeof(err))) {
		fprintf(stderr, "recorder: %s\n", err);
		goto out;
	}
	for (int i = 0; i < nspecs; i++)
		live[i].from = start;
	fprintf(stderr, "ready\n");
	for (long n = 0; n < seconds; n++) {
		int64_t t = start + n;

		sleep_until(t + 1, 150 * 1000 * 1000);
		hub__drain(hub, t + 1);
		if (recorder__end_second(recorder, t, err, sizeof(err))) {
			fprintf(stderr, "recorder: %s\n", err);
			goto out;
		}
		for (int i = 0; i < nspecs; i++) {
			json_t *line = json_pack("{s:i, s:I, s:o}", "i", i, "time", (json_int_t)t, "value",
						 instr__value(live[i].in, t));

			json_dumpf(line, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(line);
		}
		fflush(stdout);
	}
	rc = 0;
out:
	for (int i = 0; i < nspecs; i++) {
		if (live[i].in && ids[i] >= 0)
			hub__remove(hub, ids[i]);
		instr__free(live[i].in);
	}
	recorder__free(recorder);
	hub__free(hub);
	return rc;
}
