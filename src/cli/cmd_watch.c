/* kvmscope watch: one instrumentation, run locally, printed each second.
 *
 * The same engine and collectors as the agent, without the daemon: an
 * operator over ssh types `kvmscope watch vm.irqs -d subsecond` and sees the
 * subsecond-offset heatmap build up. -j gives one JSON line per second for
 * scripts: {"time": <unix second>, "value": <CA raw value>}.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "collectors/hub.h"
#include "engine/instr.h"
#include "engine/metric.h"
#include "render/heatmap.h"
#include "render/term_heatmap.h"
#include "render/term_table.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope watch METRIC [-d FIELD[,FIELD...]] [-P PREDICATE_JSON] [-n SECONDS] [-j]\n"
		"       kvmscope watch --list [-j]\n"
		"\n"
		"Runs one instrumentation on this host and prints its value every second.\n"
		"\n"
		"  METRIC              e.g. vm.exits, vm.irqs, vm.disk_ops (see --list)\n"
		"  -d, --decompose F   decomposition: discrete fields (several allowed, their values\n"
		"                      joined with ',') and at most one numeric field, which turns\n"
		"                      the view into a heatmap (e.g. -d vm,subsecond)\n"
		"  -P, --predicate P   CA predicate JSON, e.g. '{\"eq\": [\"vm\", \"web1\"]}'\n"
		"  -n, --seconds N     stop after N seconds (default: until interrupted)\n"
		"  -j, --json          one JSON line per second: {\"time\", \"value\"} (CA raw value),\n"
		"                      \"source\" (what counted it; vm.disk_*: the source per disk),\n"
		"                      plus \"dropped\" (events lost since start) if the kernel map filled\n"
		"  -w, --width N       heatmap: seconds shown (default: terminal width)\n"
		"      --rows N        heatmap: character rows (default 20; 2 cells each)\n"
		"      --ymax V        heatmap: fixed top of the y axis (default: automatic)\n"
		"  -l, --list          the metric catalogue: metrics, fields, types, units\n"
		"  -h, --help          this help\n"
		"\n"
		"Counting starts at the next whole second. Needs root (BPF) and tracefs.\n");
}

static int print_catalogue(int json)
{
	json_t *cat = metric__catalogue_json(0);

	if (!cat)
		return 1;
	if (json) {
		json_dumpf(cat, stdout, JSON_INDENT(2));
		putchar('\n');
	} else {
		for (int m = 0; m < METRIC__COUNT; m++) {
			const struct metric_desc *md = metric__get((enum metric_id)m);

			printf("%-16s %s (%s)\n", md->name, md->label, md->unit);
			for (unsigned int f = 0; f < md->nfields; f++) {
				const struct field_desc *fd = md->fields[f];

				printf("    %-10s %-8s %s%s%s\n", fd->name,
				       fd->type == FIELD_NUMERIC ? "numeric" : "discrete", fd->label,
				       *fd->unit ? ", " : "", fd->unit);
			}
		}
	}
	json_decref(cat);
	return 0;
}

struct watch_sink {
	struct instr *in;
	int64_t from;		/* records before this second are the partial first one */
};

static int ingest(const struct record *rec, void *ctx)
{
	struct watch_sink *ws = ctx;

	if (rec->time < ws->from)
		return 0;
	return instr__ingest(ws->in, rec);
}

static void sleep_until(int64_t unix_sec, long extra_ns)
{
	struct timespec ts = { .tv_sec = unix_sec, .tv_nsec = extra_ns };

	while (!stop && clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int terminal_columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
		return ws.ws_col;
	return 80;
}

/* Heatmap of the last view->width slots ending with `last` (also report's). */
json_t *watch__spec(const char *cmd, const char *metric, const char *decomposition,
		    const char *predicate)
{
	json_t *spec = json_object(), *pred;
	json_error_t jerr;

	if (!spec || json_object_set_new(spec, "metric", json_string(metric)) ||
	    (decomposition && json_object_set_new(spec, "decomposition", json_string(decomposition)))) {
		fprintf(stderr, "%s: out of memory\n", cmd);
		json_decref(spec);
		return NULL;
	}
	if (!predicate)
		return spec;
	pred = json_loads(predicate, JSON_DECODE_ANY, &jerr);
	if (!pred) {
		fprintf(stderr, "%s: -P is not valid JSON: %s (column %d)\n", cmd, jerr.text, jerr.column);
		json_decref(spec);
		return NULL;
	}
	json_object_set_new(spec, "predicate", pred);
	return spec;
}

int watch__view_option(int opt, const char *arg, struct watch_view *v, const char *cmd)
{
	char *end;

	switch (opt) {
	case 'w':
		v->width = (int)strtol(arg, &end, 10);
		if (*end || v->width < 2 || v->width > 1000) {
			fprintf(stderr, "%s: --width wants 2..1000, got '%s'\n", cmd, arg);
			return -1;
		}
		return 1;
	case WATCH_OPT_ROWS:
		v->rows = (int)strtol(arg, &end, 10);
		if (*end || v->rows < 2 || v->rows > 100) {
			fprintf(stderr, "%s: --rows wants 2..100, got '%s'\n", cmd, arg);
			return -1;
		}
		return 1;
	case WATCH_OPT_YMAX:
		v->ymax = strtod(arg, &end);
		if (*end || v->ymax <= 0) {
			fprintf(stderr, "%s: --ymax wants a positive number, got '%s'\n", cmd, arg);
			return -1;
		}
		v->has_ymax = 1;
		return 1;
	default:
		return 0;
	}
}

int watch__draw_heatmap(struct instr *in, int64_t first, int64_t last, const struct watch_view *v,
			const char *title)
{
	const struct field_desc *nf = instr__numeric_field(in);
	int64_t g = instr__granularity(in), n = (last - first) / g + 1;
	struct heatmap_params params;
	struct heatmap_input input;
	struct dist_window w;
	int err;

	if (n > v->width)
		n = v->width;
	err = instr__window(in, last - (n - 1) * g, (size_t)n, &w);
	if (!err)
		err = dist_window__finish(&w);
	if (err)
		goto out;
	input = (struct heatmap_input){ &w, 0, w.nslots };
	heatmap_params__init(&params);
	params.width = v->width;
	params.height = v->rows;
	if (v->has_ymax) {
		params.auto_ymax = 0;
		params.ymax = v->ymax;
	}
	if (!strcmp(nf->name, "subsecond")) {
		/* the whole second, always: the point is where in it things happen */
		params.auto_ymax = 0;
		params.ymax = 1000;
	}
	params.decompose_all = instr__arity(in) == INSTR_DISCRETE_NUMERIC;
	params.nbuckets = v->rows * 2;
	err = term_heatmap__draw(stdout, &input, &params, title, nf->unit, v->color);
out:
	dist_window__free(&w);
	return err;
}

int cmd_watch(int argc, char **argv)
{
	enum { OPT_ROWS = WATCH_OPT_ROWS, OPT_YMAX = WATCH_OPT_YMAX };
	static const struct option opts[] = {
		{ "decompose", required_argument, NULL, 'd' },
		{ "predicate", required_argument, NULL, 'P' },
		{ "seconds", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "width", required_argument, NULL, 'w' },
		{ "rows", required_argument, NULL, OPT_ROWS },
		{ "ymax", required_argument, NULL, OPT_YMAX },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *decomposition = NULL, *predicate = NULL, *metric;
	struct watch_view view = { .rows = 20 };
	struct instr *in = NULL;
	struct hub *hub = NULL;
	json_t *spec = NULL;
	long seconds = -1;
	int json = 0, list = 0, opt, rc = 1, consumer = -1;
	char err[512], title[512];

	while ((opt = getopt_long(argc, argv, "d:P:n:jw:lh", opts, NULL)) != -1) {
		char *end;
		int vo = watch__view_option(opt, optarg, &view, "kvmscope watch");

		if (vo < 0)
			return 2;
		if (vo)
			continue;
		switch (opt) {
		case 'd': decomposition = optarg; break;
		case 'P': predicate = optarg; break;
		case 'n':
			seconds = strtol(optarg, &end, 10);
			if (*end || seconds <= 0) {
				fprintf(stderr, "kvmscope watch: -n wants a positive number of seconds, got '%s'\n", optarg);
				return 2;
			}
			break;
		case 'j': json = 1; break;
		case 'l': list = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (list)
		return print_catalogue(json);
	if (optind != argc - 1) {
		fprintf(stderr, optind >= argc ? "kvmscope watch: which metric? (kvmscope watch --list)\n"
					       : "kvmscope watch: one metric at a time\n");
		usage(stderr);
		return 2;
	}
	metric = argv[optind];
	if (!metric__by_name(metric)) {
		fprintf(stderr, "kvmscope watch: unknown metric '%s' (kvmscope watch --list shows them)\n",
			metric);
		return 2;
	}
	spec = watch__spec("kvmscope watch", metric, decomposition, predicate);
	if (!spec)
		goto out_usage;
	if (instr__new(spec, &in, err, sizeof(err))) {
		fprintf(stderr, "kvmscope watch: %s\n", err);
		goto out_usage;
	}
	if ((rc = hub__new(&hub, "/proc"))) {
		fprintf(stderr, "kvmscope watch: %s\n", strerror(-rc));
		rc = 1;
		goto out;
	}
	struct watch_sink sink = { .in = in, .from = INT64_MAX };
	struct hub_consumer consumer_desc = {
		.metric = instr__metric(in)->id,
		.fields = instr__fields_needed(in),
		.sink = ingest,
		.ctx = &sink,
	};
	if (geteuid() != 0) {
		fprintf(stderr, "kvmscope watch: needs root to load BPF programs: run it with sudo\n");
		rc = 1;
		goto out;
	}
	consumer = hub__add(hub, &consumer_desc, err, sizeof(err));
	if (consumer < 0) {
		fprintf(stderr, "kvmscope watch: %s\n", err);
		rc = 1;
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	view.tty = isatty(STDOUT_FILENO);
	view.color = term__use_color(stdout);
	if (!view.width)
		view.width = terminal_columns() - 12;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);

	int64_t start = time(NULL) + 1;

	sleep_until(start, 50 * 1000 * 1000);
	hub__drain(hub, start);		/* the partial first second: dropped by the sink */
	sink.from = start;
	int64_t drained = start;

	for (long n = 0; !stop && (seconds < 0 || n < seconds); n++) {
		int64_t t = start + n;

		/* second t is printed once final (engine/finality.h): drained, and
		 * every exit that began in it booked, COLLECTOR_FINAL_WAIT_MAX_S
		 * late at most; never a partial value */
		while (!stop && hub__final_until(hub, instr__metric(in)->id) <= t) {
			sleep_until(drained + 1, 150 * 1000 * 1000);
			if (stop)
				break;
			hub__drain(hub, ++drained);
		}
		if (stop)
			break;
		if (json) {
			json_t *line = json_object();

			uint64_t drops = hub__drops(hub, instr__metric(in)->id);

			json_object_set_new(line, "time", json_integer(t));
			json_object_set_new(line, "value", instr__value(in, t));
			/* what counted it (for vm.disk_*: the source of each disk) */
			json_object_set_new(line, "source",
					    json_string(hub__source(hub, instr__metric(in)->id)));
			/* never silent: events the kernel could not aggregate (map full) */
			if (drops)
				json_object_set_new(line, "dropped", json_integer((json_int_t)drops));
			json_dumpf(line, stdout, JSON_COMPACT);
			putchar('\n');
			json_decref(line);
		} else {
			uint64_t drops = hub__drops(hub, instr__metric(in)->id);

			if (view.tty)
				fputs("\033[H\033[2J", stdout);
			snprintf(title, sizeof(title), "%s%s%s%s%s  (source: %s)%s", metric,
				 decomposition ? " by " : "", decomposition ? decomposition : "",
				 predicate ? " where " : "", predicate ? predicate : "",
				 hub__source(hub, instr__metric(in)->id),
				 drops ? "  [events lost: kernel map full]" : "");
			if (instr__numeric_field(in)) {
				watch__draw_heatmap(in, start, t, &view, title);
			} else {
				json_t *value = instr__value(in, t);
				char when[64];
				time_t tt = (time_t)t;
				struct tm tm;

				localtime_r(&tt, &tm);
				strftime(when, sizeof(when), "%H:%M:%S", &tm);
				printf("%s  %s\n", when, title);
				term_table__draw(stdout, value, metric, view.color);
				json_decref(value);
				if (!view.tty)
					putchar('\n');
			}
		}
		fflush(stdout);
	}
	rc = 0;
	goto out;
out_usage:
	rc = 2;
out:
	if (hub && consumer >= 0)
		hub__remove(hub, consumer);
	hub__free(hub);
	instr__free(in);
	json_decref(spec);
	return rc;
}
