/* kvmscope agent: the daemon behind the CA-compatible REST API.
 *
 * The options become an agent (agent/agent.h) and the HTTP server in front
 * of it (api/api.h). The main thread then ticks the agent once per
 * wall-clock second, plus a grace period so that the kernel side has
 * finished the second. SIGINT/SIGTERM end it cleanly: stop the server, then
 * free the agent (which persists a last time and stops the collectors).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "api/api.h"
#include "cli/commands.h"
#include "common/log.h"
#include "export/om.h"

#define DRAIN_GRACE_NS 150000000L

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope agent [--listen ADDR:PORT] [--state-dir DIR] [--token-file FILE]\n"
		"                      [--max-instrumentations N] [--max-cells N] [--web-dir DIR]\n"
		"                      [--metrics [--metrics-max-series N] [--metrics-keep S]]\n"
		"                      [--nats URL,... --fleet NAME [--aggregate] [--nats-auth-file FILE]\n"
		"                       [--nats-tls-ca FILE] [--nats-tls-cert FILE --nats-tls-key FILE]]\n"
		"                      [--hostname NAME] [--scope-vms VM1,VM2,...]\n"
		"       kvmscope agent --replay FILE [--listen ADDR:PORT] [--token-file FILE] ...\n"
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
		"  --nats URL,...             join a fleet on this NATS bus (nats://HOST:PORT; a\n"
		"                             server off this host needs --nats-auth-file): the\n"
		"                             fleet's instrumentations are made here and their\n"
		"                             slots published each second (see docs/fleet.md)\n"
		"  --fleet NAME               the fleet (letters, digits, '_', '-')\n"
		"  --aggregate                serve the fleet: instrumentations created here are\n"
		"                             the fleet's, values merged from every host\n"
		"  --nats-auth-file FILE      'user NAME' + 'password WORD', or 'token WORD'\n"
		"                             (mode 0600)\n"
		"  --nats-tls-ca FILE         TLS to the bus, trusting FILE's CAs\n"
		"  --nats-tls-cert FILE, --nats-tls-key FILE\n"
		"                             a client certificate for the bus\n"
		"  --nats-replicas N          copies of the fleet's bucket (default 3, or 1 on\n"
		"                             a bus of one server)\n"
		"  --hostname NAME            the hostname field of this agent's records\n"
		"                             (default: the system's hostname)\n"
		"  --scope-vms VM1,VM2,...    only these VMs, for every instrumentation on this\n"
		"                             agent (a predicate AND-ed on, as for tenants)\n"
		"  --replay FILE              serve a recording (kvmscope record) instead of this\n"
		"                             host: nothing is collected, instrumentations are\n"
		"                             computed over the recorded seconds; implies\n"
		"                             --state-dir none (see docs/recording.md)\n"
		"  -h, --help                 this help\n",
		AGENT_PER_OWNER_DEFAULT, (unsigned long long)AGENT_CELLS_MAX_DEFAULT,
		OM_MAX_SERIES_DEFAULT, OM_KEEP_S_DEFAULT);
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

int cmd_agent(int argc, char **argv)
{
	enum { OPT_LISTEN = 256, OPT_STATE, OPT_TOKENS, OPT_MAXI, OPT_CELLS, OPT_WEB, OPT_PROC,
	       OPT_METRICS, OPT_MSERIES, OPT_MKEEP, OPT_PEERS, OPT_PEERTOK, OPT_HOST, OPT_SCOPE,
	       OPT_REPLAY, OPT_NATS, OPT_FLEET, OPT_AGGREGATE, OPT_NAUTH, OPT_NCA, OPT_NCERT,
	       OPT_NKEY, OPT_NREPL };
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
		{ "replay", required_argument, NULL, OPT_REPLAY },
		{ "nats", required_argument, NULL, OPT_NATS },
		{ "fleet", required_argument, NULL, OPT_FLEET },
		{ "aggregate", no_argument, NULL, OPT_AGGREGATE },
		{ "nats-auth-file", required_argument, NULL, OPT_NAUTH },
		{ "nats-tls-ca", required_argument, NULL, OPT_NCA },
		{ "nats-tls-cert", required_argument, NULL, OPT_NCERT },
		{ "nats-tls-key", required_argument, NULL, OPT_NKEY },
		{ "nats-replicas", required_argument, NULL, OPT_NREPL },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_config cfg = { 0 };
	struct api_server_config scfg = { 0 };
	struct token_set *tokens = NULL;
	struct api_server *srv = NULL;
	struct agent *a = NULL;
	char addr[128], err[512], web_root[4096] = "";
	const char *listen_on = "127.0.0.1:7134", *token_file = NULL, *web_dir = NULL;
	unsigned long long n;
	bool loopback, state_given = false;
	int opt, port, rc = 1, sig;
	sigset_t set;

	cfg.state_dir = "/var/lib/kvmscope";
	cfg.proc_root = "/proc";
	cfg.max_per_owner = AGENT_PER_OWNER_DEFAULT;
	cfg.max_cells = AGENT_CELLS_MAX_DEFAULT;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case OPT_LISTEN: listen_on = optarg; break;
		case OPT_STATE:
			cfg.state_dir = strcmp(optarg, "none") ? optarg : NULL;
			state_given = true;
			break;
		case OPT_REPLAY: cfg.replay = optarg; break;
		case OPT_TOKENS: token_file = optarg; break;
		case OPT_MAXI:
			if (parse_num("--max-instrumentations", optarg, 100000, &n))
				return 2;
			cfg.max_per_owner = (int)n;
			break;
		case OPT_CELLS:
			if (parse_num("--max-cells", optarg, 1ull << 40, &n))
				return 2;
			cfg.max_cells = n;
			break;
		case OPT_WEB: web_dir = optarg; break;
		case OPT_PROC: cfg.proc_root = optarg; break;
		case OPT_PEERS:
		case OPT_PEERTOK:
			/* the HTTP poller is gone: why, in docs/fleet.md */
			fprintf(stderr, "kvmscope agent: %s is gone: a fleet runs on NATS now (--nats URL --fleet NAME, --aggregate on the aggregators; see docs/fleet.md)\n",
				opt == OPT_PEERS ? "--peers" : "--peer-token-file");
			return 2;
		case OPT_NATS: cfg.nats = optarg; break;
		case OPT_FLEET: cfg.fleet = optarg; break;
		case OPT_AGGREGATE: cfg.aggregate = true; break;
		case OPT_NAUTH: cfg.nats_auth_file = optarg; break;
		case OPT_NCA: cfg.nats_tls_ca = optarg; break;
		case OPT_NCERT: cfg.nats_tls_cert = optarg; break;
		case OPT_NKEY: cfg.nats_tls_key = optarg; break;
		case OPT_NREPL:
			if (parse_num("--nats-replicas", optarg, 5, &n))
				return 2;
			cfg.nats_replicas = (int)n;
			break;
		case OPT_HOST: cfg.hostname = optarg; break;
		case OPT_SCOPE: cfg.scope_vms = optarg; break;
		case OPT_METRICS: cfg.metrics = true; break;
		case OPT_MSERIES:
			if (parse_num("--metrics-max-series", optarg, 100000000, &n))
				return 2;
			cfg.metrics_max_series = n;
			break;
		case OPT_MKEEP:
			if (parse_num("--metrics-keep", optarg, 7 * 86400, &n))
				return 2;
			cfg.metrics_keep_s = (int)n;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!cfg.metrics && (cfg.metrics_max_series || cfg.metrics_keep_s)) {
		fprintf(stderr, "kvmscope agent: --metrics-max-series and --metrics-keep need --metrics\n");
		return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "kvmscope agent: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (cfg.replay && state_given && cfg.state_dir) {
		fprintf(stderr, "kvmscope agent: --replay writes nothing: --state-dir %s cannot go with it\n",
			cfg.state_dir);
		return 2;
	}
	if (cfg.replay)
		cfg.state_dir = NULL;	/* a replay is read-only */
	if (!cfg.nats && (cfg.fleet || cfg.aggregate || cfg.nats_auth_file || cfg.nats_tls_ca ||
			  cfg.nats_tls_cert || cfg.nats_tls_key || cfg.nats_replicas)) {
		fprintf(stderr, "kvmscope agent: --fleet, --aggregate and the --nats-* options need --nats\n");
		return 2;
	}
	if (cfg.nats && !cfg.fleet) {
		fprintf(stderr, "kvmscope agent: --nats needs --fleet NAME\n");
		return 2;
	}
	if (cfg.hostname && (!*cfg.hostname || strlen(cfg.hostname) > 255 ||
			     strpbrk(cfg.hostname, ", \t\n"))) {
		fprintf(stderr, "kvmscope agent: --hostname '%s': want 1..255 characters without ',' or spaces\n",
			cfg.hostname);
		return 2;
	}
	if (server__parse_listen(listen_on, addr, sizeof(addr), &port, &loopback) < 0) {
		fprintf(stderr, "kvmscope agent: --listen '%s': want ADDR:PORT with a numeric address (127.0.0.1:7134, [::1]:7134)\n",
			listen_on);
		return 2;
	}
	if (!loopback && !token_file) {
		fprintf(stderr, "kvmscope agent: refusing to listen on non-loopback %s without --token-file (anyone could read and instrument this host)\n",
			listen_on);
		return 2;
	}
	if (token_file && tokens__load(token_file, &tokens, err, sizeof(err))) {
		fprintf(stderr, "kvmscope agent: --token-file: %s\n", err);
		return 2;
	}
	if (routes_static__resolve_root(web_dir, web_root, sizeof(web_root))) {
		if (web_dir) {
			fprintf(stderr, "kvmscope agent: --web-dir %s: %s\n", web_dir, strerror(errno));
			goto out;
		}
		web_root[0] = '\0';
	}
	/* Signals are taken synchronously by the tick loop; every other thread
	 * (MHD's, the agent's) inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = agent__new(&cfg, &a, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "kvmscope agent: %s\n", err);
		rc = rc == -EINVAL ? 2 : 1;
		goto out;
	}
	rc = 1;
	scfg = (struct api_server_config){ listen_on, tokens, web_root };
	if (server__start(a, &scfg, &srv, err, sizeof(err))) {
		log_error("agent", "%s", err);
		fprintf(stderr, "kvmscope agent: %s\n", err);
		goto out;
	}
	/* after server__start: its privilege drop must cover the agent's
	 * threads too */
	if (agent__start(a, err, sizeof(err))) {
		fprintf(stderr, "kvmscope agent: %s\n", err);
		goto out;
	}
	log_info("agent", "listening on %s state_dir=%s tokens=%zu web=%s%s%s", listen_on,
		 cfg.state_dir ? cfg.state_dir : "none", tokens__count(tokens),
		 web_root[0] ? web_root : "none", cfg.replay ? " replay=" : "", cfg.replay ? cfg.replay : "");
	while (!(sig = wait_tick(&set)))
		agent__tick(a, agent__now());
	log_info("agent", "signal %d: shutting down", sig);
	rc = 0;
out:
	server__stop(srv);
	agent__free(a);
	tokens__free(tokens);
	return rc;
}
