/* Unit tests of the agent below HTTP (agent/agent.h): error kinds of
 * create/replace/clone/destroy, the per-owner limit, tenant and --scope-vms
 * scoping, and the persistence round trip through a temporary state dir.
 *
 * Instrumentations are real: creating one starts its collector on this
 * host's hub (BPF on the KVM tracepoints), as the agent does. Where the host
 * cannot start one, the tests that need one are skipped, saying so. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "agent/agent.h"

#define EXITS "{\"module\":\"vm\",\"stat\":\"exits\"}"

static struct principal operator_p = { ROLE_OPERATOR, "operator", NULL, 0 };
static char *tenant_vms[] = { "vm-a" };
static struct principal tenant_p = { ROLE_TENANT, "tenant:vm-a", tenant_vms, 1 };

static json_t *J(const char *s)
{
	json_error_t jerr;
	json_t *j = json_loads(s, JSON_DECODE_ANY, &jerr);

	if (!j)
		fail_msg("bad JSON in test: %s: %s", s, jerr.text);
	return j;
}

static struct agent *new_agent(struct agent_config *cfg)
{
	struct agent *a = NULL;
	char err[512];
	int rc = agent__new(cfg, &a, err, sizeof(err));

	if (rc)
		fail_msg("agent__new: %d: %s", rc, err);
	return a;
}

/* Creates spec as who; 0 or -errno with *kind set. *id (may be NULL) gets
 * the new id. */
static int create(struct agent *a, const struct principal *who, const char *spec,
		  unsigned long *id, enum agent_errkind *kind, char *msg, size_t msglen)
{
	struct agent_error e = { 0 };
	json_t *j = J(spec), *out = NULL;
	unsigned long nid = 0;
	int rc = agent__create(a, who, NULL, j, &out, &nid, &e);

	json_decref(j);
	json_decref(out);
	if (kind)
		*kind = rc ? e.kind : AGENT_OK;
	if (msg)
		snprintf(msg, msglen, "%s", rc ? e.msg : "");
	if (id)
		*id = nid;
	return rc;
}

/* The first real instrumentation, or a loud skip when this host cannot
 * collect (no BPF, no tracefs). */
static unsigned long create_or_skip(struct agent *a, const struct principal *who,
				    const char *spec)
{
	enum agent_errkind kind;
	unsigned long id;
	char msg[512];
	int rc = create(a, who, spec, &id, &kind, msg, sizeof(msg));

	if (rc && kind == AGENT_EUNAVAIL) {
		fprintf(stderr, "SKIP: this host cannot start a collector: %s\n", msg);
		skip();
	}
	if (rc)
		fail_msg("create %s: %d: %s", spec, rc, msg);
	return id;
}

static void idtext(unsigned long id, char *buf, size_t len)
{
	snprintf(buf, len, "%lu", id);
}

/* Bad specs are refused with the kind that tells malformed from
 * meaningless, before anything is collected. */
static void test_create_error_kinds(void **state)
{
	static const struct {
		const char *spec;
		enum agent_errkind kind;
		const char *msg;
	} cases[] = {
		{ "[1]", AGENT_EINVAL, "must be a JSON object" },
		{ "{\"metric\": 5}", AGENT_EINVAL, "\"metric\" must be a string" },
		{ "{\"module\": \"vm\"}", AGENT_EINVAL, "given without" },
		{ "{\"metric\": \"vm.nope\"}", AGENT_ESEMANTIC, "unknown metric" },
		{ "{\"metric\": \"vm.exits\", \"decomposition\": [\"nope\"]}", AGENT_ESEMANTIC,
		  "unknown field" },
		{ "{\"metric\": \"vm.exits\", \"predicate\": {\"lt\": [\"vm\", 3]}}", AGENT_ESEMANTIC,
		  "is discrete" },
		{ "{\"metric\": \"vm.exits\", \"granularity\": 0}", AGENT_EINVAL, "granularity" },
		{ "{\"metric\": \"vm.exits\", \"colour\": 1}", AGENT_EINVAL, "unknown instrumentation property" },
	};
	struct agent_config cfg = { 0 };
	struct agent *a = new_agent(&cfg);
	enum agent_errkind kind;
	char msg[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(create(a, &operator_p, cases[i].spec, NULL, &kind, msg, sizeof(msg)) < 0);
		if (kind != cases[i].kind || !strstr(msg, cases[i].msg))
			fail_msg("%s: kind %d \"%s\", want kind %d with \"%s\"", cases[i].spec, kind, msg,
				 cases[i].kind, cases[i].msg);
	}
	/* a tenant may not read hostnames: meaningless for it */
	assert_true(create(a, &tenant_p, "{\"metric\":\"vm.exits\",\"decomposition\":[\"hostname\"]}",
			   NULL, &kind, msg, sizeof(msg)) < 0);
	assert_int_equal(kind, AGENT_ESEMANTIC);
	assert_non_null(strstr(msg, "hostname"));
	assert_int_equal(agent__count(a), 0);
	agent__free(a);
}

static void test_size_bound(void **state)
{
	struct agent_config cfg = { .max_cells = 1000 };
	struct agent *a = new_agent(&cfg);
	enum agent_errkind kind;
	char msg[512];

	/* 600 slots x 16 keys of "vm" > 1000 cells */
	assert_int_equal(create(a, &operator_p, "{\"metric\":\"vm.exits\",\"decomposition\":[\"vm\"]}",
				NULL, &kind, msg, sizeof(msg)), -EINVAL);
	assert_int_equal(kind, AGENT_ESEMANTIC);
	assert_non_null(strstr(msg, "too large"));
	assert_int_equal(agent__count(a), 0);
	agent__free(a);
}

/* Unknown, malformed and foreign ids are all "not found", for every call
 * that takes an id. */
static void test_not_found(void **state)
{
	struct agent_config cfg = { 0 };
	struct agent *a = new_agent(&cfg);
	struct agent_instr_info info;
	struct agent_error e;
	json_t *out = NULL, *body = J("{}");
	unsigned long nid;
	const char *bad[] = { "", "x", "1x", "-1", "99", "18446744073709551616" };
	char id[32];

	idtext(create_or_skip(a, &operator_p, EXITS), id, sizeof(id));

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.kind = AGENT_OK;
		assert_int_equal(agent__get(a, &operator_p, bad[i], &out, &e), -ENOENT);
		assert_int_equal(e.kind, AGENT_ENOENT);
		assert_int_equal(agent__destroy(a, &operator_p, bad[i], &e), -ENOENT);
		assert_int_equal(agent__find(a, &operator_p, bad[i], &info, &e), -ENOENT);
	}
	assert_non_null(strstr(e.msg, "no instrumentation with id"));
	/* the operator's instrumentation does not exist for a tenant */
	assert_int_equal(agent__get(a, &tenant_p, id, &out, &e), -ENOENT);
	assert_int_equal(agent__replace(a, &tenant_p, id, body, &out, &e), -ENOENT);
	assert_int_equal(agent__clone(a, &tenant_p, NULL, id, body, &out, &nid, &e), -ENOENT);
	assert_int_equal(agent__destroy(a, &tenant_p, id, &e), -ENOENT);
	assert_int_equal(agent__value_raw(a, &tenant_p, id, -1, 0, 1, &out, &e), -ENOENT);
	assert_int_equal(e.kind, AGENT_ENOENT);
	assert_int_equal(agent__count(a), 1);
	/* the operator deletes it; then it is gone for the operator too */
	assert_int_equal(agent__destroy(a, &operator_p, id, &e), 0);
	assert_int_equal(agent__get(a, &operator_p, id, &out, &e), -ENOENT);
	assert_int_equal(agent__count(a), 0);
	json_decref(body);
	agent__free(a);
}

/* The limit is per owner; a replacement does not count the one it
 * replaces. */
static void test_limit_per_owner(void **state)
{
	struct agent_config cfg = { .max_per_owner = 2 };
	struct agent *a = new_agent(&cfg);
	json_t *out = NULL, *body = J("{\"retention-time\": 120}");
	enum agent_errkind kind;
	struct agent_error e;
	char id[32], msg[512];

	idtext(create_or_skip(a, &operator_p, EXITS), id, sizeof(id));
	assert_int_equal(create(a, &operator_p, EXITS, NULL, &kind, msg, sizeof(msg)), 0);
	assert_int_equal(create(a, &operator_p, EXITS, NULL, &kind, msg, sizeof(msg)), -EDQUOT);
	assert_int_equal(kind, AGENT_ELIMIT);
	assert_non_null(strstr(msg, "already has 2 instrumentations"));
	/* at the limit, a change of one still works */
	assert_int_equal(agent__replace(a, &operator_p, id, body, &out, &e), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "retention-time")), 120);
	assert_string_equal(json_string_value(json_object_get(out, "id")), id);
	json_decref(out);
	assert_int_equal(agent__count(a), 2);
	/* a tenant is another owner */
	assert_int_equal(create(a, &tenant_p, EXITS, NULL, &kind, msg, sizeof(msg)), 0);
	assert_int_equal(agent__count(a), 3);
	json_decref(body);
	agent__free(a);
}

static bool mentions(const json_t *j, const char *what)
{
	char *s = json_dumps(j, JSON_COMPACT);
	bool found = s && strstr(s, what);

	free(s);
	return found;
}

static bool names_vm(const json_t *pred, const char *vm)
{
	char want[128];

	snprintf(want, sizeof(want), "{\"eq\":[\"vm\",\"%s\"]}", vm);
	return mentions(pred, want);
}

/* A tenant's instrumentations carry its VMs as a predicate and are its
 * own; --scope-vms is AND-ed onto everyone's. */
static void test_scoping(void **state)
{
	struct agent_config cfg = { .scope_vms = "vm-a,vm-b" };
	struct agent *a = new_agent(&cfg);
	json_t *out = NULL, *list = NULL;
	struct agent_error e;
	char oid[32], tid[32];

	idtext(create_or_skip(a, &operator_p, EXITS), oid, sizeof(oid));
	idtext(create_or_skip(a, &tenant_p, "{\"metric\":\"vm.exits\",\"predicate\":{\"ne\":[\"vcpu\",0]}}"),
	       tid, sizeof(tid));
	assert_int_equal(agent__get(a, &operator_p, oid, &out, &e), 0);
	assert_true(names_vm(json_object_get(out, "predicate"), "vm-b"));
	json_decref(out);
	assert_int_equal(agent__get(a, &tenant_p, tid, &out, &e), 0);
	assert_true(names_vm(json_object_get(out, "predicate"), "vm-a"));
	/* ... AND-ed with its own */
	assert_true(mentions(json_object_get(out, "predicate"), "{\"ne\":[\"vcpu\",0]}"));
	json_decref(out);
	/* the operator lists both, the tenant its own */
	assert_int_equal(agent__list(a, &operator_p, &list, &e), 0);
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);
	assert_int_equal(agent__list(a, &tenant_p, &list, &e), 0);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "id")), tid);
	json_decref(list);
	/* operators' business */
	assert_int_equal(agent__peers(a, &tenant_p, &out, &e), -EPERM);
	assert_int_equal(e.kind, AGENT_EPERM);
	assert_int_equal(agent__peers(a, &operator_p, &out, &e), 0);
	assert_int_equal(json_array_size(out), 0);
	json_decref(out);
	agent__free(a);
}

static void test_bad_scope_config(void **state)
{
	const char *bad[] = { "", "a,,b", "a,", "," };
	struct agent *a = NULL;
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct agent_config cfg = { .scope_vms = bad[i] };

		assert_int_equal(agent__new(&cfg, &a, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--scope-vms"));
	}
	{
		/* a fleet's name goes into subjects: refused before anything starts */
		struct agent_config cfg = { .nats = "nats://127.0.0.1:4222", .fleet = "a.b",
					    .hostname = "h1" };

		assert_int_equal(agent__new(&cfg, &a, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "--fleet 'a.b'"));
	}
}

/* PUT's rules: what defines the data is fixed; the data is carried over,
 * and a refused change leaves the instrumentation as it was. */
static void test_replace_and_clone(void **state)
{
	struct agent_config cfg = { 0 };
	struct agent *a = new_agent(&cfg);
	json_t *out = NULL, *fixed = J("{\"decomposition\": [\"vm\"]}"),
	       *ok = J("{\"idle-max\": 60}"), *bad = J("{\"granularity\": \"x\"}");
	struct agent_error e;
	unsigned long nid;
	char id[32];

	idtext(create_or_skip(a, &operator_p, EXITS), id, sizeof(id));
	assert_int_equal(agent__replace(a, &operator_p, id, fixed, &out, &e), -EEXIST);
	assert_int_equal(e.kind, AGENT_ECONFLICT);
	assert_non_null(strstr(e.msg, "\"decomposition\" of an instrumentation cannot change"));
	assert_int_equal(agent__replace(a, &operator_p, id, bad, &out, &e), -EINVAL);
	assert_int_equal(e.kind, AGENT_EINVAL);
	assert_int_equal(agent__get(a, &operator_p, id, &out, &e), 0);
	assert_int_equal(json_array_size(json_object_get(out, "decomposition")), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "idle-max")), 3600);
	json_decref(out);
	assert_int_equal(agent__replace(a, &operator_p, id, ok, &out, &e), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "idle-max")), 60);
	json_decref(out);
	assert_int_equal(agent__count(a), 1);
	/* a clone may change what a replacement may not */
	assert_int_equal(agent__clone(a, &operator_p, NULL, id, fixed, &out, &nid, &e), 0);
	assert_int_equal(nid, strtoul(id, NULL, 10) + 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(out, "decomposition"), 0)),
			    "vm");
	assert_int_equal(json_integer_value(json_object_get(out, "idle-max")), 60);
	json_decref(out);
	assert_int_equal(agent__count(a), 2);
	json_decref(fixed);
	json_decref(ok);
	json_decref(bad);
	agent__free(a);
}

static void test_metrics_off(void **state)
{
	struct agent_config cfg = { 0 };
	struct agent *a = new_agent(&cfg);
	struct agent_error e;
	char *body = NULL;
	size_t len = 0;

	assert_int_equal(agent__metrics(a, &tenant_p, OM_TEXT_004, 0, &body, &len, &e), -EPERM);
	assert_int_equal(e.kind, AGENT_EPERM);
	assert_int_equal(agent__metrics(a, &operator_p, OM_TEXT_004, 0, &body, &len, &e), -ENOENT);
	assert_int_equal(e.kind, AGENT_ENOENT);
	assert_non_null(strstr(e.msg, "--metrics"));
	assert_null(body);
	agent__free(a);
}

/* What a started agent holds survives agent__free and a new agent on the
 * same state dir: ids, owners (a tenant still sees its own), specs, and the
 * next id. */
static void test_persistence_round_trip(void **state)
{
	char dir[] = "/tmp/kvmscope-test-agent-XXXXXX", path[4200], err[512];
	struct agent_config cfg = { 0 };
	struct agent_error e;
	json_t *before = NULL, *after = NULL, *tlist = NULL;
	unsigned long id3;
	struct agent *a;
	char tid[32];

	assert_non_null(mkdtemp(dir));
	cfg.state_dir = dir;
	a = new_agent(&cfg);
	assert_int_equal(agent__start(a, err, sizeof(err)), 0);
	create_or_skip(a, &operator_p, "{\"metric\":\"vm.exits\",\"granularity\":5,\"retention-time\":60}");
	idtext(create_or_skip(a, &tenant_p, "{\"metric\":\"vm.exits\",\"persist-data\":true}"), tid,
	       sizeof(tid));
	assert_int_equal(agent__list(a, &operator_p, &before, &e), 0);
	agent__free(a);
	snprintf(path, sizeof(path), "%s/state.json", dir);
	assert_int_equal(access(path, R_OK), 0);

	a = new_agent(&cfg);
	assert_int_equal(agent__count(a), 2);
	assert_int_equal(agent__list(a, &operator_p, &after, &e), 0);
	/* the same instrumentations but for their creation times */
	for (size_t i = 0; i < 2; i++) {
		json_object_del(json_array_get(before, i), "crtime");
		json_object_del(json_array_get(after, i), "crtime");
	}
	if (!json_equal(before, after))
		fail_msg("restored %s, saved %s", json_dumps(after, 0), json_dumps(before, 0));
	assert_int_equal(agent__list(a, &tenant_p, &tlist, &e), 0);
	assert_int_equal(json_array_size(tlist), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(tlist, 0), "id")), tid);
	/* ids go on after the restored ones */
	assert_int_equal(create(a, &operator_p, EXITS, &id3, NULL, NULL, 0), 0);
	assert_int_equal(id3, 3);
	agent__free(a);
	json_decref(before);
	json_decref(after);
	json_decref(tlist);
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

static char *tenant_b_vms[] = { "vm-b" };
static struct principal tenant_b_p = { ROLE_TENANT, "tenant:vm-b", tenant_b_vms, 1 };

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* Each tenant numbers its own instrumentations 1, 2, ... (it must not learn
 * from gaps how many others made), in id, uri, uris and every request; the
 * operator keeps the host-wide ids and sees whose each is. A tenant's
 * numbers are never reused: not after a delete, not after a restart. */
static void test_tenant_ids(void **state)
{
	char dir[] = "/tmp/kvmscope-test-agent-XXXXXX", cmd[4200], err[512];
	struct agent_config cfg = { 0 };
	json_t *out = NULL, *list = NULL, *u;
	unsigned long op1, op2, ta1, tb1, ta2, ta3;
	struct agent_error e;
	struct agent *a;
	char text[32];
	size_t i;

	assert_non_null(mkdtemp(dir));
	cfg.state_dir = dir;
	a = new_agent(&cfg);
	assert_int_equal(agent__start(a, err, sizeof(err)), 0);
	op1 = create_or_skip(a, &operator_p, EXITS);
	assert_int_equal(create(a, &operator_p, EXITS, &op2, NULL, NULL, 0), 0);
	assert_int_equal(create(a, &tenant_p, EXITS, &ta1, NULL, NULL, 0), 0);
	assert_int_equal(create(a, &tenant_b_p, EXITS, &tb1, NULL, NULL, 0), 0);
	assert_int_equal(op1, 1);
	assert_int_equal(op2, 2);
	assert_int_equal(ta1, 1);	/* not 3: tenant a sees no gap */
	assert_int_equal(tb1, 1);
	/* tenant a's "1" is its own, with its own uris */
	assert_int_equal(agent__get(a, &tenant_p, "1", &out, &e), 0);
	assert_string_equal(jstr(out, "id"), "1");
	assert_string_equal(jstr(out, "uri"), "/ca/instrumentations/1");
	json_array_foreach(json_object_get(out, "uris"), i, u)
		assert_int_equal(strncmp(jstr(u, "uri"), "/ca/instrumentations/1/", 23), 0);
	assert_true(mentions(json_object_get(out, "predicate"), "vm-a"));
	assert_null(json_object_get(out, "owner"));
	json_decref(out);
	/* the operator's 3 is tenant a's 1, and says so */
	assert_int_equal(agent__get(a, &operator_p, "3", &out, &e), 0);
	assert_string_equal(jstr(out, "id"), "3");
	assert_string_equal(jstr(out, "uri"), "/ca/instrumentations/3");
	assert_string_equal(jstr(out, "owner"), "tenant:vm-a");
	assert_int_equal(json_integer_value(json_object_get(out, "owner_id")), 1);
	json_decref(out);
	assert_int_equal(agent__get(a, &operator_p, "1", &out, &e), 0);
	assert_null(json_object_get(out, "owner"));	/* the operator's own */
	json_decref(out);
	/* tenant a lists only its 1; tenant b's 1 is tenant b's */
	assert_int_equal(agent__list(a, &tenant_p, &list, &e), 0);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(jstr(json_array_get(list, 0), "id"), "1");
	json_decref(list);
	assert_int_equal(agent__get(a, &tenant_b_p, "1", &out, &e), 0);
	assert_true(mentions(json_object_get(out, "predicate"), "vm-b"));
	json_decref(out);
	assert_int_equal(agent__get(a, &tenant_p, "3", &out, &e), -ENOENT);
	assert_int_equal(e.kind, AGENT_ENOENT);
	/* a deleted number is not given again; a clone takes the next */
	assert_int_equal(agent__destroy(a, &tenant_p, "1", &e), 0);
	assert_int_equal(agent__get(a, &operator_p, "3", &out, &e), -ENOENT);
	assert_int_equal(agent__get(a, &tenant_b_p, "1", &out, &e), 0);	/* b's untouched */
	json_decref(out);
	assert_int_equal(create(a, &tenant_p, EXITS, &ta2, NULL, NULL, 0), 0);
	assert_int_equal(ta2, 2);
	agent__free(a);

	/* after a restart: the same numbers, and the next one goes on */
	a = new_agent(&cfg);
	assert_int_equal(agent__start(a, err, sizeof(err)), 0);
	assert_int_equal(agent__get(a, &tenant_p, "2", &out, &e), 0);
	assert_string_equal(jstr(out, "uri"), "/ca/instrumentations/2");
	json_decref(out);
	assert_int_equal(agent__get(a, &tenant_p, "1", &out, &e), -ENOENT);
	assert_int_equal(create(a, &tenant_p, EXITS, &ta3, NULL, NULL, 0), 0);
	assert_int_equal(ta3, 3);
	idtext(ta3, text, sizeof(text));
	assert_int_equal(agent__destroy(a, &tenant_p, text, &e), 0);
	agent__free(a);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A state file that is not one is set aside; the agent starts empty. */
static void test_bad_state_file(void **state)
{
	char dir[] = "/tmp/kvmscope-test-agent-XXXXXX", path[4200];
	struct agent_config cfg = { 0 };
	struct agent *a;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("{\"version\": 1, \"instrumentations\": [", f);
	fclose(f);
	cfg.state_dir = dir;
	a = new_agent(&cfg);
	assert_int_equal(agent__count(a), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	agent__free(a);
	snprintf(path, sizeof(path), "ls '%s' | grep -q '^state.json.bad-' && rm -rf '%s'", dir, dir);
	assert_int_equal(system(path), 0);
}

static size_t file_lines(const char *path, char *last)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int c, prev = '\n';

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF) {
		n += c == '\n';
		prev = c;
	}
	fclose(f);
	*last = (char)prev;
	return n;
}

/* data/<id>.log is appended to, a slot per line: a crash in an append leaves
 * a torn last line, which a restore ignores, keeping the whole lines before
 * it; the next save writes the file whole, without it. */
static void test_data_log_torn_tail(void **state)
{
	char dir[] = "/tmp/kvmscope-test-agent-XXXXXX", path[4200], err[512], last;
	struct agent_config cfg = { 0 };
	struct agent_error e;
	json_t *out = NULL;
	struct agent *a;
	long long t;
	FILE *f;

	assert_non_null(mkdtemp(dir));
	cfg.state_dir = dir;
	a = new_agent(&cfg);
	assert_int_equal(agent__start(a, err, sizeof(err)), 0);
	assert_int_equal(create_or_skip(a, &operator_p, "{\"metric\":\"vm.exits\",\"persist-data\":true}"), 1);
	agent__free(a);
	snprintf(path, sizeof(path), "%s/data/1.log", dir);
	/* nothing collected: the head line alone */
	assert_int_equal(file_lines(path, &last), 1);
	t = (long long)agent__now() - 5;
	f = fopen(path, "a");
	assert_non_null(f);
	/* two whole records, as the persister appends them, and a torn one */
	fprintf(f, "{\"start_time\":%lld,\"value\":7}\n{\"start_time\":%lld,\"value\":3}\n"
		   "{\"start_time\":%lld,\"val", t, t + 1, t + 2);
	fclose(f);

	a = new_agent(&cfg);
	assert_int_equal(agent__count(a), 1);
	assert_int_equal(agent__value_raw(a, &operator_p, "1", t, 1, 3, &out, &e), 0);
	assert_int_equal(json_array_size(out), 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 0), "value")), 7);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 1), "value")), 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 2), "value")), 0);
	json_decref(out);
	assert_int_equal(agent__start(a, err, sizeof(err)), 0);
	agent__free(a);
	/* written whole at the last save: the head and the two slots */
	assert_int_equal(file_lines(path, &last), 3);
	assert_int_equal(last, '\n');
	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	assert_int_equal(system(path), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_error_kinds),
		cmocka_unit_test(test_size_bound),
		cmocka_unit_test(test_bad_scope_config),
		cmocka_unit_test(test_metrics_off),
		cmocka_unit_test(test_bad_state_file),
		cmocka_unit_test(test_data_log_torn_tail),
		cmocka_unit_test(test_not_found),
		cmocka_unit_test(test_limit_per_owner),
		cmocka_unit_test(test_scoping),
		cmocka_unit_test(test_replace_and_clone),
		cmocka_unit_test(test_persistence_round_trip),
		cmocka_unit_test(test_tenant_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
