/* kvmscope report: watch's tables and heatmaps over a recording.
 *
 * The recorded records go through the same engine instrumentation as live
 * ones (engine/instr.h), a second at a time, so `report -j` prints for each
 * recorded second exactly what `watch -j` printed for it: the recording has
 * every field, and the hub's rule for records lacking a numeric field is
 * applied here as the hub applies it live.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "record/feed.h"
#include "record/reader.h"
#include "render/term_heatmap.h"
#include "render/term_table.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope report FILE METRIC [-d FIELD[,FIELD...]] [-P PREDICATE_JSON]\n"
		"                       [--from T] [--to T] [-j] [-w N] [--rows N] [--ymax V]\n"
		"       kvmscope report FILE --info [-j]\n"
		"\n"
		"Shows a recording (kvmscope record) as watch shows the host: a table per\n"
		"second, or with a numeric field in the decomposition one heatmap of the\n"
		"seconds chosen; -j gives watch -j's lines.\n"
		"\n"
		"  -d, --decompose F   decomposition, as in watch (any recorded fields)\n"
		"  -P, --predicate P   CA predicate JSON, as in watch\n"
		"      --from T        first second: unix time, or +N seconds after the first\n"
		"      --to T          last second (included): unix time, or +N\n"
		"  -j, --json          one JSON line per second: {\"time\", \"value\", \"source\"},\n"
		"                      plus \"dropped\" where the kernel had lost events\n"
		"  -w, --width N       heatmap: seconds shown, the last of the range (default:\n"
		"                      terminal width)\n"
		"      --rows N        heatmap: character rows (default 20)\n"
		"      --ymax V        heatmap: fixed top of the y axis\n"
		"  -i, --info          what the file holds: host, metrics and fields, seconds,\n"
		"                      chunks (offset, end, second), a torn tail\n"
		"  -h, --help          this help\n");
}

static int parse_time(const char *s, int64_t first, int64_t *out)
{
	char *end;
	long long v = strtoll(s + (*s == '+'), &end, 10);

	if (end == s + (*s == '+') || *end || v < 0)
		return -EINVAL;
	*out = *s == '+' ? first + v : v;
	return 0;
}

static int terminal_columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col;
	return 80;
}

/* --info: reads the whole file. 0, or 1 when it is corrupt. */
static int print_info(struct record_reader *r, const char *path, int json)
{
	struct record_second sec;
	const struct record_chunk_info *chunks;
	uint64_t records = 0, torn_at = 0;
	int64_t last = INT64_MIN, seconds = 0;
	size_t nchunks;
	json_t *o = NULL, *cj, *tables = json_array();
	const json_t *vms;
	int64_t since;
	char err[512];
	int rc;

	json_t *by_vm = json_object();

	while ((rc = record_reader__next_second(r, &sec, err, sizeof(err))) > 0) {
		for (size_t i = 0; i < sec.nrecs; i++) {
			const char *vm = sec.recs[i].str[F_VM] ? sec.recs[i].str[F_VM] : "unknown";
			json_t *n = json_object_get(by_vm, vm);

			json_object_set_new(by_vm, vm, json_integer(n ? json_integer_value(n) + 1 : 1));
		}
		records += sec.nrecs;
		seconds += sec.before - sec.from;
		last = sec.before - 1;
	}
	nchunks = record_reader__chunks(r, &chunks);
	o = json_object();
	json_object_set_new(o, "file", json_string(path));
	json_object_set_new(o, "version", json_integer(record_reader__version(r)));
	json_object_set_new(o, "hostname", json_string(record_reader__hostname(r)));
	json_object_set(o, "created", json_object_get(record_reader__meta(r), "created"));
	json_object_set(o, "metrics", json_object_get(record_reader__meta(r), "metrics"));
	json_object_set_new(o, "first", json_integer(record_reader__first(r)));
	json_object_set_new(o, "last", last == INT64_MIN ? json_null() : json_integer(last));
	json_object_set_new(o, "seconds", json_integer(seconds));
	json_object_set_new(o, "records", json_integer((json_int_t)records));
	/* what each VM costs in the file */
	json_object_set_new(o, "records_by_vm", by_vm);
	cj = json_array();
	for (size_t i = 0; i < nchunks; i++)
		json_array_append_new(cj, json_pack("{s:I, s:I, s:I}", "offset", (json_int_t)chunks[i].offset,
						    "end", (json_int_t)chunks[i].end, "before",
						    (json_int_t)chunks[i].before));
	json_object_set_new(o, "chunks", cj);
	/* the VM table each time it changed: from which second on */
	for (size_t i = 0; (vms = record_reader__vm_table(r, i, &since)); i++)
		json_array_append_new(tables, json_pack("{s:I, s:O}", "time", (json_int_t)since, "vms", vms));
	json_object_set_new(o, "vm_tables", tables);
	json_object_set_new(o, "torn", json_boolean(record_reader__torn(r, &torn_at)));
	if (record_reader__torn(r, NULL))
		json_object_set_new(o, "torn_offset", json_integer((json_int_t)torn_at));
	if (rc < 0)
		json_object_set_new(o, "error", json_string(err));
	if (json) {
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		size_t i;
		json_t *m;

		printf("%s: kvmscope recording, format version %d, host %s\n", path,
		       record_reader__version(r), record_reader__hostname(r));
		printf("seconds: %" PRId64 " (%" PRId64 " .. %" PRId64 "), %" PRIu64 " records in %zu chunks\n",
		       seconds, record_reader__first(r), last, records, nchunks);
		json_array_foreach(json_object_get(record_reader__meta(r), "metrics"), i, m) {
			char *fields = json_dumps(json_object_get(m, "fields"), JSON_COMPACT);

			printf("  %-16s %s\n", json_string_value(json_object_get(m, "name")), fields);
			free(fields);
		}
		if (record_reader__torn(r, NULL))
			printf("ends in an incomplete chunk at byte %" PRIu64 " (ignored)\n", torn_at);
	}
	if (rc < 0)
		fprintf(stderr, "kvmscope report: %s\n", err);
	json_decref(o);
	return rc < 0 ? 1 : 0;
}

static void print_second(struct instr *in, const struct record_reader *r, const struct record_second *sec,
			 int64_t t, int json, int color, const char *title)
{
	const struct metric_desc *md = instr__metric(in);
	json_t *value = instr__value(in, t);

	if (json) {
		const json_t *sources = record_reader__sources_at(r, t);
		const char *src = json_string_value(json_object_get(sources, md->name));
		json_t *line = json_object();

		json_object_set_new(line, "time", json_integer(t));
		json_object_set(line, "value", value);
		json_object_set_new(line, "source", json_string(src ? src : ""));
		if (sec->drops[md->id])
			json_object_set_new(line, "dropped", json_integer((json_int_t)sec->drops[md->id]));
		json_dumpf(line, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(line);
	} else {
		char when[64];
		time_t tt = (time_t)t;
		struct tm tm;

		localtime_r(&tt, &tm);
		strftime(when, sizeof(when), "%H:%M:%S", &tm);
		printf("%s  %s\n", when, title);
		term_table__draw(stdout, value, md->name, color);
		putchar('\n');
	}
	json_decref(value);
}

int cmd_report(int argc, char **argv)
{
	enum { OPT_ROWS = WATCH_OPT_ROWS, OPT_YMAX = WATCH_OPT_YMAX, OPT_FROM = WATCH_OPT_NEXT, OPT_TO };
	static const struct option opts[] = {
		{ "decompose", required_argument, NULL, 'd' },
		{ "predicate", required_argument, NULL, 'P' },
		{ "from", required_argument, NULL, OPT_FROM },
		{ "to", required_argument, NULL, OPT_TO },
		{ "json", no_argument, NULL, 'j' },
		{ "width", required_argument, NULL, 'w' },
		{ "rows", required_argument, NULL, OPT_ROWS },
		{ "ymax", required_argument, NULL, OPT_YMAX },
		{ "info", no_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *decomposition = NULL, *predicate = NULL, *from_arg = NULL, *to_arg = NULL;
	const char *path, *metric;
	struct watch_view view = { .rows = 20 };
	struct record_reader *r = NULL;
	struct instr *in = NULL;
	json_t *spec = NULL;
	int json = 0, info = 0, opt, rc = 2;
	struct record_feed feed;
	int64_t from = INT64_MIN, to = INT64_MAX, printed_first = INT64_MIN,
		printed_last = INT64_MIN;
	char err[512], title[1024];

	while ((opt = getopt_long(argc, argv, "d:P:jw:ih", opts, NULL)) != -1) {
		int vo = watch__view_option(opt, optarg, &view, "kvmscope report");

		if (vo < 0)
			return 2;
		if (vo)
			continue;
		switch (opt) {
		case 'd': decomposition = optarg; break;
		case 'P': predicate = optarg; break;
		case OPT_FROM: from_arg = optarg; break;
		case OPT_TO: to_arg = optarg; break;
		case 'j': json = 1; break;
		case 'i': info = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - (info ? 1 : 2)) {
		fprintf(stderr, optind >= argc ? "kvmscope report: which recording? (kvmscope report FILE METRIC)\n"
			: optind == argc - 1 && !info ? "kvmscope report: which metric? (kvmscope watch --list)\n"
						      : "kvmscope report: too many arguments\n");
		usage(stderr);
		return 2;
	}
	path = argv[optind];
	metric = info ? NULL : argv[optind + 1];
	if (metric && !metric__by_name(metric)) {
		fprintf(stderr, "kvmscope report: unknown metric '%s' (kvmscope watch --list shows them)\n", metric);
		return 2;
	}
	if (record_reader__open(path, &r, err, sizeof(err))) {
		fprintf(stderr, "kvmscope report: %s\n", err);
		return 1;
	}
	if (info) {
		rc = print_info(r, path, json);
		goto out;
	}
	if ((from_arg && parse_time(from_arg, record_reader__first(r), &from)) ||
	    (to_arg && parse_time(to_arg, record_reader__first(r), &to))) {
		fprintf(stderr, "kvmscope report: --from/--to want a unix time or +SECONDS, got '%s'\n",
			from_arg && parse_time(from_arg, 0, &from) ? from_arg : to_arg);
		goto out;
	}
	if (from > to) {
		fprintf(stderr, "kvmscope report: --from is after --to\n");
		goto out;
	}
	spec = watch__spec("kvmscope report", metric, decomposition, predicate);
	if (!spec)
		goto out;
	/* the heatmap's seconds must all be held, however wide */
	json_object_set_new(spec, "retention-time", json_integer(1000));
	if (instr__new(spec, &in, err, sizeof(err))) {
		fprintf(stderr, "kvmscope report: %s\n", err);
		goto out;
	}
	if (record_feed__check(r, in, path, err, sizeof(err))) {
		fprintf(stderr, "kvmscope report: %s\n", err);
		goto out;
	}
	record_feed__init(&feed, in, from, to);
	view.color = term__use_color(stdout);
	view.tty = isatty(STDOUT_FILENO);
	if (!view.width)
		view.width = terminal_columns() - 12;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);

	const struct metric_desc *md = instr__metric(in);
	struct record_second sec;
	int got;

	while ((got = record_reader__next_second(r, &sec, err, sizeof(err))) > 0) {
		const json_t *sources = record_reader__sources_at(r, sec.before - 1);
		const char *src = json_string_value(json_object_get(sources, md->name));

		if (sec.from > to)
			break;
		if (record_feed__second(&feed, &sec)) {
			fprintf(stderr, "kvmscope report: out of memory\n");
			rc = 1;
			goto out;
		}
		snprintf(title, sizeof(title), "%s%s%s%s%s  (source: %s)%s", metric,
			 decomposition ? " by " : "", decomposition ? decomposition : "",
			 predicate ? " where " : "", predicate ? predicate : "", src ? src : "",
			 sec.drops[md->id] ? "  [events lost: kernel map full]" : "");
		for (int64_t t = sec.from; t < sec.before; t++) {
			if (t < from || t > to || t < record_reader__first(r))
				continue;
			if (printed_first == INT64_MIN)
				printed_first = t;
			printed_last = t;
			if (json || !instr__numeric_field(in))
				print_second(in, r, &sec, t, json, view.color, title);
		}
		fflush(stdout);
	}
	if (got == 0 && record_reader__torn(r, NULL)) {
		uint64_t at;

		record_reader__torn(r, &at);
		fprintf(stderr, "kvmscope report: %s ends in an incomplete chunk at byte %" PRIu64
			" (the recorder stopped while writing it): the seconds before it are all here\n",
			path, at);
	}
	if (!json && instr__numeric_field(in) && printed_first != INT64_MIN)
		watch__draw_heatmap(in, printed_first, printed_last, &view, title);
	else if (printed_first == INT64_MIN && got >= 0)
		fprintf(stderr, "kvmscope report: no recorded second in the range asked for\n");
	fflush(stdout);
	if (got < 0) {
		fprintf(stderr, "kvmscope report: %s\n", err);
		rc = 1;
		goto out;
	}
	rc = 0;
out:
	record_reader__close(r);
	instr__free(in);
	json_decref(spec);
	return rc;
}
