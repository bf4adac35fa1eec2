/* kvmscope record: the collectors' records, every second, into a file.
 *
 * The same hub as `watch`, without an instrumentation: every field of every
 * metric asked for is collected, so that any decomposition and predicate can
 * be asked of the recording later (`kvmscope report`), as if it had been
 * running live. The VM table and the collectors' sources go with it each
 * time they change. docs/recording.md describes the file.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "collectors/hub.h"
#include "engine/finality.h"
#include "engine/metric.h"
#include "record/recorder.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope record -o FILE [-m METRIC[,METRIC...]] [-d FIELD[,FIELD...]]\n"
		"                       [--duration S] [--max-size BYTES [--keep N]] [-j]\n"
		"\n"
		"Records what the collectors see on this host, every second, with every field,\n"
		"plus the VM table and the collectors' sources, for `kvmscope report` to look at\n"
		"later with any decomposition and predicate.\n"
		"\n"
		"  -o, --output FILE   the recording (created or truncated)\n"
		"  -m, --metrics M     metrics to record (default: all of them; see watch --list)\n"
		"  -d, --fields F      record only these fields (plus hostname and vm): smaller\n"
		"                      files, but only these can be decomposed or filtered on later\n"
		"      --duration S    stop after S seconds (default: until interrupted)\n"
		"      --max-size B    start a new FILE before it grows past B bytes (suffixes k, M,\n"
		"                      G), the previous ones becoming FILE.1, FILE.2, ...\n"
		"      --keep N        rotated files kept (default 9)\n"
		"  -j, --json          at the end, a JSON summary on stdout: seconds, records,\n"
		"                      bytes, chunks, rotations, cpu_s\n"
		"  -h, --help          this help\n"
		"\n"
		"Recording starts at the next whole second. Needs root (BPF) and tracefs.\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	if (end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end || !v)
		return -EINVAL;
	*out = v;
	return 0;
}

static void warn(const char *msg)
{
	fprintf(stderr, "kvmscope record: %s\n", msg);
}

static void sleep_until(int64_t unix_sec, long extra_ns)
{
	struct timespec ts = { .tv_sec = unix_sec, .tv_nsec = extra_ns };

	while (!stop && clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* Marks the seconds from start + *seconds on, below limit, that are final
 * for every metric recorded (all of them when force). -1 with a message on
 * stderr when the file cannot take it. */
static int mark_final(struct recorder *rec, struct hub *hub, int64_t start, long *seconds,
		      int64_t limit, bool force)
{
	const enum metric_id *metrics;
	size_t n = recorder__metrics(rec, &metrics);
	int64_t final = limit;
	char err[256];

	for (size_t i = 0; !force && i < n; i++)
		if (hub__final_until(hub, metrics[i]) < final)
			final = hub__final_until(hub, metrics[i]);
	while (start + *seconds < final) {
		if (recorder__end_second(rec, start + *seconds, err, sizeof(err))) {
			fprintf(stderr, "kvmscope record: %s\n", err);
			return -1;
		}
		(*seconds)++;
	}
	return 0;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int cmd_record(int argc, char **argv)
{
	enum { OPT_DURATION = 256, OPT_MAX_SIZE, OPT_KEEP };
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "metrics", required_argument, NULL, 'm' },
		{ "fields", required_argument, NULL, 'd' },
		{ "duration", required_argument, NULL, OPT_DURATION },
		{ "max-size", required_argument, NULL, OPT_MAX_SIZE },
		{ "keep", required_argument, NULL, OPT_KEEP },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *output = NULL, *metric_list = NULL, *field_list = NULL;
	enum metric_id metrics[METRIC__COUNT];
	uint64_t fields[METRIC__COUNT], max_size = 0;
	size_t nmetrics = 0;
	long duration = -1, keep = 9, seconds = 0;
	struct recorder *recorder = NULL;
	struct hub *hub = NULL;
	int json = 0, opt, rc = 2;
	char err[512], *list = NULL;

	while ((opt = getopt_long(argc, argv, "o:m:d:jh", opts, NULL)) != -1) {
		char *end;

		switch (opt) {
		case 'o': output = optarg; break;
		case 'm': metric_list = optarg; break;
		case 'd': field_list = optarg; break;
		case 'j': json = 1; break;
		case OPT_DURATION:
			duration = strtol(optarg, &end, 10);
			if (*end || duration <= 0) {
				fprintf(stderr, "kvmscope record: --duration wants a positive number of seconds, got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_MAX_SIZE:
			if (parse_size(optarg, &max_size)) {
				fprintf(stderr, "kvmscope record: --max-size wants a positive size in bytes (k, M, G allowed), got '%s'\n",
					optarg);
				return 2;
			}
			break;
		case OPT_KEEP:
			keep = strtol(optarg, &end, 10);
			if (*end || keep < 0 || keep > 1000) {
				fprintf(stderr, "kvmscope record: --keep wants 0..1000, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!output || optind != argc) {
		fprintf(stderr, !output ? "kvmscope record: where to? (-o FILE)\n"
					: "kvmscope record: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	/* which metrics */
	if (metric_list) {
		char *save = NULL;

		list = strdup(metric_list);
		for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
			const struct metric_desc *md = metric__by_name(name);
			size_t i;

			if (!md) {
				fprintf(stderr, "kvmscope record: unknown metric '%s' (kvmscope watch --list shows them)\n",
					name);
				goto out;
			}
			for (i = 0; i < nmetrics && metrics[i] != md->id; i++)
				;
			if (i == nmetrics)
				metrics[nmetrics++] = md->id;
		}
		free(list);
		list = NULL;
		if (!nmetrics) {
			fprintf(stderr, "kvmscope record: -m names no metric\n");
			goto out;
		}
	} else {
		for (int m = 0; m < METRIC__COUNT; m++)
			metrics[nmetrics++] = (enum metric_id)m;
	}
	/* which fields: all of them, or hostname, vm and those named */
	for (size_t i = 0; i < nmetrics; i++) {
		const struct metric_desc *md = metric__get(metrics[i]);

		fields[i] = field_list ? FIELD_BIT(F_HOSTNAME) | FIELD_BIT(F_VM)
				       : (md->nfields >= 64 ? ~0ull : (1ull << md->nfields) - 1);
	}
	if (field_list) {
		char *save = NULL;

		list = strdup(field_list);
		for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
			int found = 0;

			for (size_t i = 0; i < nmetrics; i++) {
				int f = metric__field_index(metric__get(metrics[i]), name);

				if (f >= 0) {
					fields[i] |= FIELD_BIT(f);
					found = 1;
				}
			}
			if (!found) {
				fprintf(stderr, "kvmscope record: no metric recorded has a field '%s'\n", name);
				goto out;
			}
		}
	}
	rc = 1;
	if (geteuid() != 0) {
		fprintf(stderr, "kvmscope record: needs root to load BPF programs: run it with sudo\n");
		goto out;
	}
	if ((rc = hub__new(&hub, "/proc"))) {
		fprintf(stderr, "kvmscope record: %s\n", strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = 1;
	struct recorder_opts ro = {
		.nmetrics = nmetrics, .metrics = metrics, .fields = fields,
		/* named with -m: each one must start; by default: those that can */
		.skip_unavailable = !metric_list, .warn_fn = warn,
		.max_size = max_size, .keep = (unsigned int)keep,
	};
	if (recorder__new(hub, &ro, &recorder, err, sizeof(err))) {
		fprintf(stderr, "kvmscope record: %s\n", err);
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	int64_t start = time(NULL) + 1;

	sleep_until(start, 50 * 1000 * 1000);
	hub__drain(hub, start);		/* the partial first second: not recorded */
	if (recorder__begin(recorder, output, start, err, sizeof(err))) {
		fprintf(stderr, "kvmscope record: %s\n", err);
		goto out;
	}
	/* A second is marked (closed in the file) once it is final for every
	 * metric recorded (engine/finality.h): the records of an exit that
	 * began in it and ended later are in the file before its mark, so that
	 * report and replay never show a partial second. Records of later
	 * seconds drained meanwhile go in the same chunk, by their own time. */
	int64_t drained = start, end = duration < 0 ? INT64_MAX : start + duration;

	while (!stop && start + seconds < end) {
		sleep_until(drained + 1, 150 * 1000 * 1000);
		if (stop)
			break;
		/* past the end, only the seconds recorded are drained again (an
		 * exit booked late into them), up to the wait's cap */
		if (drained < end)
			drained++;
		else if (time(NULL) > end + FINAL_WAIT_MAX_S)
			break;
		hub__drain(hub, drained);
		if (mark_final(recorder, hub, start, &seconds, end, false))
			goto out;
	}
	/* interrupted, or the cap passed: what is drained is kept */
	if (mark_final(recorder, hub, start, &seconds, drained < end ? drained : end, true))
		goto out;
	rc = 0;
out:
	if (recorder) {
		struct record_writer_stats st;
		double cpu = cpu_seconds();

		recorder__stats(recorder, &st);
		fprintf(stderr, "kvmscope record: %ld s, %llu records, %llu bytes in %llu chunks (%.0f B/s, "
			"%.1fx compression), %u rotations, CPU %.2f s\n",
			seconds, (unsigned long long)st.records, (unsigned long long)st.bytes,
			(unsigned long long)st.chunks, seconds ? (double)st.bytes / (double)seconds : 0.0,
			st.bytes ? (double)st.raw_bytes / (double)st.bytes : 0.0, st.rotations, cpu);
		if (json) {
			json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:i, s:f}", "seconds",
					      (json_int_t)seconds, "records", (json_int_t)st.records,
					      "bytes", (json_int_t)st.bytes, "raw_bytes",
					      (json_int_t)st.raw_bytes, "chunks", (json_int_t)st.chunks,
					      "rotations", (int)st.rotations, "cpu_s", cpu);

			json_dumpf(o, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(o);
		}
	}
	recorder__free(recorder);
	hub__free(hub);
	free(list);
	return rc;
}
