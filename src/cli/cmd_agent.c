/* kvmscope agent: the daemon behind the CA-compatible REST API.
 *
 * The main thread is the drain loop: once per wall-clock second (plus a
 * grace period so that the kernel side has finished the second) it drains
 * the hub into the instrumentations and expires idle ones under the agent
 * lock, and asks the persister thread (api/state.c) for a save when one is
 * due. SIGINT/SIGTERM end it cleanly: stop the server, persist, stop the
 * collectors, free everything.
 */
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/api.h"
#include "cli/commands.h"
#include "collectors/hub.h"
#include "common/log.h"
#include "engine/instr.h"
#include "fleet/fleet.h"
#include "export/metrics.h"

#define DRAIN_GRACE_NS 150000000L

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope agent [--listen ADDR:PORT] [--state-dir DIR] [--token-file FILE]\n"
		"                      [--max-instrumentations N] [--max-cells N] [--web-dir DIR]\n"
		"                      [--metrics [--metrics-max-series N] [--metrics-keep S]]\n"
		"                      [--peers HOST:PORT,... [--peer-token-file FILE]]\n"
		"                      [--hostname NAME] [--scope-vms VM1,VM2,...]\n"
		"\n"
		"Serves the Cloud Analytics REST API (/ca/...) and the web UI.\n"
		"\n"
		"  --listen ADDR:PORT         default 127.0.0.1:7134; a non-loopback address\n"
		"                             needs --token-file\n"
		"  --state-dir DIR            instrumentations survive restarts in DIR/state.json,\n"
		"                             persist-data values in DIR/data/ (default\n"
		"                             /var/lib/kvmscope; 'none' disables)\n"
		"  --token-file FILE          bearer tokens, one per line:\n"
		"                               TOKEN operator\n"
		"                               TOKEN tenant VM1,VM2,...\n"
		"  --max-instrumentations N   per owner (default %d; beyond: 429)\n"
		"  --max-cells N              size bound of one instrumentation (default %llu)\n"
		"  --web-dir DIR              static files served at / (default: ../../web next\n"
		"                             to the binary, else /usr/share/kvmscope/web)\n"
		"  --proc-root DIR            find VMs under DIR instead of /proc\n"
		"  --metrics                  serve GET /metrics (Prometheus/OpenMetrics); starts\n"
		"                             every collector for as long as the agent runs\n"
		"  --metrics-max-series N     bound on exported series (default %d; beyond it\n"
		"                             new series are refused and counted)\n"
		"  --metrics-keep S           seconds a gone VM's series stay (default %d)\n"
		"  --peers HOST:PORT,...      aggregate these agents: instrumentations are created\n"
		"                             on each (the caller's token is sent on) and their\n"
		"                             values merged with this host's (see docs/fleet.md)\n"
		"  --peer-token-file FILE     token for the peers when a caller sent none (first\n"
		"                             word of the first line; a --token-file works)\n"
		"  --hostname NAME            the hostname field of this agent's records\n"
		"                             (default: the system's hostname)\n"
		"  --scope-vms VM1,VM2,...    only these VMs, for every instrumentation on this\n"
		"                             agent (a predicate AND-ed on, as for tenants)\n"
		"  -h, --help                 this help\n",
		API_PER_OWNER_DEFAULT, (unsigned long long)API_CELLS_MAX_DEFAULT,
		OM_MAX_SERIES_DEFAULT, OM_KEEP_S_DEFAULT);
}

static int mkdir_p(const char *dir)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Sleeps until the next second + grace, or a signal. Returns the signal, 0
 * on timeout. */
static int wait_tick(const sigset_t *set)
{
	struct timespec now, left;
	int sig;

	clock_gettime(CLOCK_REALTIME, &now);
	left.tv_sec = 0;
	left.tv_nsec = 1000000000L - now.tv_nsec + DRAIN_GRACE_NS;
	if (left.tv_nsec >= 1000000000L) {
		left.tv_nsec -= 1000000000L;
		if (left.tv_nsec < 50000000L)	/* just drained: wait for the next one */
			left.tv_sec = 1;
	}
	sig = sigtimedwait(set, NULL, &left);
	return sig > 0 ? sig : 0;
}

static int parse_num(const char *opt, const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(v, &end, 10);
	if (!*v || *end || errno || *out == 0 || *out > max || *v == '-') {
		fprintf(stderr, "kvmscope agent: %s wants an integer 1..%llu, got '%s'\n", opt, max, v);
		return -EINVAL;
	}
	return 0;
}

/* --peers and --peer-token-file into a->fleet (owned by a). */
static int fleet_setup(struct agent *a, char *err, size_t errlen)
{
	char tok[512] = "", *line = NULL;
	size_t cap = 0;
	FILE *f;
	int rc;

	if (a->cfg.peer_token_file) {
		f = fopen(a->cfg.peer_token_file, "re");
		if (!f) {
			snprintf(err, errlen, "--peer-token-file %s: %s", a->cfg.peer_token_file,
				 strerror(errno));
			return -errno;
		}
		while (!tok[0] && getline(&line, &cap, f) > 0) {
			char *w = line + strspn(line, " \t");

			if (*w != '#' && *w != '\n' && *w != '\r')
				snprintf(tok, sizeof(tok), "%.*s", (int)strcspn(w, " \t\r\n"), w);
		}
		free(line);
		fclose(f);
		if (strlen(tok) < 16) {
			snprintf(err, errlen, "--peer-token-file %s: no token of 16 or more characters on its first line",
				 a->cfg.peer_token_file);
			return -EINVAL;
		}
	}
	rc = fleet__new(a->cfg.peers, tok[0] ? tok : NULL, &a->fleet, err, errlen);
	explicit_bzero(tok, sizeof(tok));
	return rc;
}

/* Forwards what state.json restored, then starts the peers' thread (which
 * inherits the blocked signals). */
static int fleet_start(struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	for (struct agent_instr *ai = a->instrs; ai; ai = ai->next) {
		json_t *spec = instr__to_json(ai->in);

		if (!spec || fleet__track(a->fleet, ai->id, spec, NULL, instr__granularity(ai->in),
					  instr__retention(ai->in)))
			log_error("fleet", "instrumentation %lu restored but not forwarded to the peers", ai->id);
		else if (ai->restored_links && fleet__adopt(a->fleet, ai->id, ai->restored_links))
			log_warn("fleet", "instrumentation %lu: its saved peer ids are malformed: the others are adopted",
				 ai->id);
		json_decref(spec);
		json_decref(ai->restored_links);
		ai->restored_links = NULL;
	}
	pthread_mutex_unlock(&a->lock);
	log_info("fleet", "aggregating %zu peers: %s", fleet__npeers(a->fleet), a->cfg.peers);
	return fleet__start(a->fleet);
}

int cmd_agent(int argc, char **argv)
{
	enum { OPT_LISTEN = 256, OPT_STATE, OPT_TOKENS, OPT_MAXI, OPT_CELLS, OPT_WEB, OPT_PROC,
	       OPT_METRICS, OPT_MSERIES, OPT_MKEEP, OPT_PEERS, OPT_PEERTOK, OPT_HOST, OPT_SCOPE };
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "state-dir", required_argument, NULL, OPT_STATE },
		{ "token-file", required_argument, NULL, OPT_TOKENS },
		{ "max-instrumentations", required_argument, NULL, OPT_MAXI },
		{ "max-cells", required_argument, NULL, OPT_CELLS },
		{ "web-dir", required_argument, NULL, OPT_WEB },
		{ "proc-root", required_argument, NULL, OPT_PROC },
		{ "metrics", no_argument, NULL, OPT_METRICS },
		{ "metrics-max-series", required_argument, NULL, OPT_MSERIES },
		{ "metrics-keep", required_argument, NULL, OPT_MKEEP },
		{ "peers", required_argument, NULL, OPT_PEERS },
		{ "peer-token-file", required_argument, NULL, OPT_PEERTOK },
		{ "hostname", required_argument, NULL, OPT_HOST },
		{ "scope-vms", required_argument, NULL, OPT_SCOPE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent a = { 0 };
	struct api_server *srv = NULL;
	char addr[128], err[512];
	unsigned long long n;
	bool loopback;
	int opt, port, rc = 1, sig;
	sigset_t set;

	a.cfg.listen = "127.0.0.1:7134";
	a.cfg.state_dir = "/var/lib/kvmscope";
	a.cfg.proc_root = "/proc";
	a.cfg.max_per_owner = API_PER_OWNER_DEFAULT;
	a.cfg.max_cells = API_CELLS_MAX_DEFAULT;
	a.next_id = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN: a.cfg.listen = optarg; break;
		case OPT_STATE: a.cfg.state_dir = strcmp(optarg, "none") ? optarg : NULL; break;
		case OPT_TOKENS: a.cfg.token_file = optarg; break;
		case OPT_MAXI:
			if (parse_num("--max-instrumentations", optarg, 100000, &n))
				return 2;
			a.cfg.max_per_owner = (int)n;
			break;
		case OPT_CELLS:
			if (parse_num("--max-cells", optarg, 1ull << 40, &n))
				return 2;
			a.cfg.max_cells = n;
			break;
		case OPT_WEB: a.cfg.web_dir = optarg; break;
		case OPT_PROC: a.cfg.proc_root = optarg; break;
		case OPT_PEERS: a.cfg.peers = optarg; break;
		case OPT_PEERTOK: a.cfg.peer_token_file = optarg; break;
		case OPT_HOST: a.cfg.hostname = optarg; break;
		case OPT_SCOPE: a.cfg.scope_vms = optarg; break;
		case OPT_METRICS: a.cfg.metrics = true; break;
		case OPT_MSERIES:
			if (parse_num("--metrics-max-series", optarg, 100000000, &n))
				return 2;
			a.cfg.metrics_max_series = n;
			break;
		case OPT_MKEEP:
			if (parse_num("--metrics-keep", optarg, 7 * 86400, &n))
				return 2;
			a.cfg.metrics_keep_s = (int)n;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!a.cfg.metrics && (a.cfg.metrics_max_series || a.cfg.metrics_keep_s)) {
		fprintf(stderr, "kvmscope agent: --metrics-max-series and --metrics-keep need --metrics\n");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "kvmscope agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (a.cfg.peer_token_file && !a.cfg.peers) {
		fprintf(stderr, "kvmscope agent: --peer-token-file needs --peers\n");
		return 2;
	}
	if (a.cfg.hostname && (!*a.cfg.hostname || strlen(a.cfg.hostname) > 255 ||
			       strpbrk(a.cfg.hostname, ", \t\n"))) {
		fprintf(stderr, "kvmscope agent: --hostname '%s': want 1..255 characters without ',' or spaces\n",
			a.cfg.hostname);
		return 2;
	}
	if (a.cfg.scope_vms && agent__set_scope(&a, a.cfg.scope_vms, err, sizeof(err))) {
		fprintf(stderr, "kvmscope agent: %s\n", err);
		return 2;
	}
	if (a.cfg.peers && fleet_setup(&a, err, sizeof(err))) {
		fprintf(stderr, "kvmscope agent: %s\n", err);
		agent__free_scope(&a);
		return 2;
	}
	if (server__parse_listen(a.cfg.listen, addr, sizeof(addr), &port, &loopback) < 0) {
		fprintf(stderr, "kvmscope agent: --listen '%s': want ADDR:PORT with a numeric address (127.0.0.1:7134, [::1]:7134)\n",
			a.cfg.listen);
		return 2;
	}
	if (!loopback && !a.cfg.token_file) {
		fprintf(stderr, "kvmscope agent: refusing to listen on non-loopback %s without --token-file (anyone could read and instrument this host)\n",
			a.cfg.listen);
		return 2;
	}
	if (a.cfg.token_file && tokens__load(a.cfg.token_file, &a.tokens, err, sizeof(err))) {
		fprintf(stderr, "kvmscope agent: --token-file: %s\n", err);
		return 2;
	}
	if (a.cfg.state_dir && mkdir_p(a.cfg.state_dir)) {
		fprintf(stderr, "kvmscope agent: --state-dir %s: %s\n", a.cfg.state_dir, strerror(errno));
		goto err_tokens;
	}
	if (routes_static__resolve_root(a.cfg.web_dir, a.web_root, sizeof(a.web_root))) {
		if (a.cfg.web_dir) {
			fprintf(stderr, "kvmscope agent: --web-dir %s: %s\n", a.cfg.web_dir, strerror(errno));
			goto err_tokens;
		}
		a.web_root[0] = '\0';
	}
	pthread_mutex_init(&a.lock, NULL);
	if (hub__new(&a.hub, a.cfg.proc_root)) {
		fprintf(stderr, "kvmscope agent: cannot set up the collection hub\n");
		goto err_mutex;
	}
	if (a.cfg.hostname)
		hub__set_hostname(a.hub, a.cfg.hostname);
	/* Signals are taken synchronously by the drain loop; every other thread
	 * (MHD's) inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_lock(&a.lock);
	state__load(&a);
	pthread_mutex_unlock(&a.lock);
	/* parsing a large state file leaves freed heap behind: hand it back */
	malloc_trim(0);
	if (a.cfg.metrics) {
		struct om_config oc = { a.cfg.metrics_max_series, a.cfg.metrics_keep_s };

		if (metrics_export__start(&a.metrics, a.hub, &oc, err, sizeof(err))) {
			fprintf(stderr, "kvmscope agent: --metrics: %s\n", err);
			goto err_hub;
		}
	}
	if (server__start(&a, &srv, err, sizeof(err))) {
		log_error("agent", "%s", err);
		fprintf(stderr, "kvmscope agent: %s\n", err);
		goto err_hub;
	}
	/* after server__start: its privilege drop must cover the peer thread too */
	if (a.fleet && fleet_start(&a)) {
		fprintf(stderr, "kvmscope agent: cannot start talking to the peers\n");
		server__stop(srv);
		goto err_hub;
	}
	if (state__start(&a)) {
		fprintf(stderr, "kvmscope agent: cannot start the state persister thread\n");
		server__stop(srv);
		goto err_hub;
	}
	log_info("agent", "listening on %s state_dir=%s tokens=%zu web=%s", a.cfg.listen,
		 a.cfg.state_dir ? a.cfg.state_dir : "none", tokens__count(a.tokens),
		 a.web_root[0] ? a.web_root : "none");
	while (!(sig = wait_tick(&set))) {
		int64_t now = agent__now();
		int d;

		pthread_mutex_lock(&a.lock);
		d = hub__drain(a.hub, now);
		if (d < 0)
			log_warn("agent", "drain failed: %s", strerror(-d));
		a.drained_to = now;
		agent__expire_idle(&a, now);
		if (a.metrics)
			metrics_export__tick(a.metrics, a.hub, now);
		/* the persister thread writes; the drain goes on meanwhile */
		if (a.dirty || (now - a.last_persist >= API_PERSIST_INTERVAL && a.instrs))
			state__request(&a);
		pthread_mutex_unlock(&a.lock);
	}
	log_info("agent", "signal %d: shutting down", sig);
	rc = 0;
	server__stop(srv);
	state__stop(&a);
	state__save(&a);
err_hub:
	/* the peers' thread goes first: nothing may be forwarded past here */
	fleet__free(a.fleet);
	a.fleet = NULL;
	while (a.instrs)
		agent__destroy(&a, a.instrs);
	metrics_export__stop(a.metrics, a.hub);
	hub__free(a.hub);
err_mutex:
	pthread_mutex_destroy(&a.lock);
err_tokens:
	tokens__free(a.tokens);
	fleet__free(a.fleet);
	agent__free_scope(&a);
	return rc;
}
