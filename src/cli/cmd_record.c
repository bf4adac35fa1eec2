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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "collectors/hub.h"
#include "collectors/vmcache.h"
#include "discovery/discovery.h"
#include "engine/metric.h"
#include "record/writer.h"

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

struct recorder {
	struct record_writer *w;
	int64_t from;		/* records before this second are the partial first one */
	int err;		/* the first write error, which stops the recording */
};

static int write_record(const struct record *rec, void *ctx)
{
	struct recorder *r = ctx;
	int rc;

	if (rec->time < r->from)
		return 0;
	rc = record_writer__record(r->w, rec);
	if (rc && !r->err)
		r->err = rc;
	return 0;
}

/* Widens the kernel-side key to the numeric fields; records nothing. */
static int ignore_record(const struct record *rec, void *ctx)
{
	(void)rec;
	(void)ctx;
	return 0;
}

static void sleep_until(int64_t unix_sec, long extra_ns)
{
	struct timespec ts = { .tv_sec = unix_sec, .tv_nsec = extra_ns };

	while (!stop && clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* The VM table and sources as of second t, when they changed. */
static int write_tables(struct hub *hub, struct record_writer *w, int64_t t,
			const enum metric_id *metrics, size_t n)
{
	json_t *vms = discovery__to_json(vmcache__list(hub__vms(hub))), *src = json_object();
	char *vtext = NULL, *stext = NULL;
	int rc = -ENOMEM;

	if (!vms || !src)
		goto out;
	for (size_t i = 0; i < n; i++)
		json_object_set_new(src, metric__get(metrics[i])->name,
				    json_string(hub__source(hub, metrics[i])));
	vtext = json_dumps(vms, JSON_COMPACT | JSON_SORT_KEYS);
	stext = json_dumps(src, JSON_COMPACT | JSON_SORT_KEYS);
	if (!vtext || !stext)
		goto out;
	rc = record_writer__vms(w, t, vtext);
	if (!rc)
		rc = record_writer__sources(w, t, stext);
out:
	free(vtext);
	free(stext);
	json_decref(vms);
	json_decref(src);
	return rc;
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
	uint64_t fields[METRIC__COUNT], drops[METRIC__COUNT], max_size = 0;
	int consumers[2 * METRIC__COUNT];
	size_t nmetrics = 0, nconsumers = 0;
	long duration = -1, keep = 9, seconds = 0;
	struct record_writer *w = NULL;
	struct recorder rec = { .from = INT64_MAX };
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
	/* Two consumers per metric: the hub does not hand a consumer a record
	 * lacking a numeric field it asked for (an exit whose latency is not
	 * measurable), yet the recording needs those records too. One asks for
	 * every field, which widens the kernel-side key, and drops what it
	 * gets; the other asks for the discrete fields only and records all. */
	{
		size_t kept = 0;

		for (size_t i = 0; i < nmetrics; i++) {
			const struct metric_desc *md = metric__get(metrics[i]);
			uint64_t numeric = 0;
			int id;

			for (unsigned int f = 0; f < md->nfields; f++)
				if (md->fields[f]->type == FIELD_NUMERIC)
					numeric |= FIELD_BIT(f);
			struct hub_consumer all = { metrics[i], fields[i], ignore_record, NULL };
			struct hub_consumer disc = { metrics[i], fields[i] & ~numeric, write_record, &rec };

			int widened = -1;

			id = 0;
			if (fields[i] & numeric) {
				id = widened = hub__add(hub, &all, err, sizeof(err));
				if (id >= 0)
					consumers[nconsumers++] = id;
			}
			if (id >= 0 && (id = hub__add(hub, &disc, err, sizeof(err))) >= 0)
				consumers[nconsumers++] = id;
			else if (widened >= 0 && hub__remove(hub, widened) == 0)
				nconsumers--;	/* its widening twin went in: take it out */
			if (id < 0) {
				/* asked for by name: an error; by default: go on without it */
				fprintf(stderr, "kvmscope record: %s %s: %s\n",
					metric_list ? "cannot record" : "not recording", md->name, err);
				if (metric_list)
					goto out;
				continue;
			}
			metrics[kept] = metrics[i];
			fields[kept++] = fields[i];
		}
		nmetrics = kept;
	}
	if (!nmetrics) {
		fprintf(stderr, "kvmscope record: no collector could start: nothing to record\n");
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	int64_t start = time(NULL) + 1;
	struct record_writer_opts wo = {
		.hostname = hub__hostname(hub), .first = start, .nmetrics = nmetrics,
		.metrics = metrics, .fields = fields, .max_size = max_size, .keep = (unsigned int)keep,
	};

	if (record_writer__open(output, &wo, &w, err, sizeof(err))) {
		fprintf(stderr, "kvmscope record: %s\n", err);
		goto out;
	}
	rec.w = w;
	sleep_until(start, 50 * 1000 * 1000);
	hub__drain(hub, start);		/* the partial first second: dropped by the sink */
	rec.from = start;
	if (write_tables(hub, w, start, metrics, nmetrics))
		rec.err = -ENOMEM;
	for (long n = 0; !stop && !rec.err && (duration < 0 || n < duration); n++) {
		int64_t t = start + n;

		sleep_until(t + 1, 150 * 1000 * 1000);
		if (stop)
			break;
		hub__drain(hub, t + 1);
		/* the tables seen at the drain of second t hold for t: its records
		 * name the VMs that lived in it */
		if (write_tables(hub, w, t, metrics, nmetrics) && !rec.err)
			rec.err = -ENOMEM;
		for (size_t i = 0; i < nmetrics; i++)
			drops[i] = hub__drops(hub, metrics[i]);
		if (rec.err)
			break;
		if (record_writer__mark(w, t + 1, drops, err, sizeof(err))) {
			fprintf(stderr, "kvmscope record: %s\n", err);
			goto out;
		}
		seconds++;
	}
	if (rec.err) {
		fprintf(stderr, "kvmscope record: %s: the recording stops at second %lld\n",
			strerror(-rec.err), (long long)(start + seconds));
		goto out;
	}
	rc = 0;
out:
	if (w) {
		struct record_writer_stats st;
		double cpu = cpu_seconds();

		record_writer__stats(w, &st);
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
	record_writer__close(w);
	for (size_t i = 0; i < nconsumers; i++)
		hub__remove(hub, consumers[i]);
	hub__free(hub);
	free(list);
	return rc;
}
