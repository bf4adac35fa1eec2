/* kvmscope stat: the illumos kvmstat, rebuilt on BPF.
 *
 *    pid vcpu |  exits :  haltx   irqx  irqwx    iox  mmiox |   irqs   emul   eptv vm
 *
 * Counters are aggregated in the kernel per (second, pid, vCPU) and drained
 * once per interval. Counting starts at the first whole second after the
 * programs are attached (the partial second is not printed, as kvmstat
 * does not print its first interval). A column the host cannot provide
 * prints '-' (null in JSON), never a made-up 0: on hosts where kvm_exit does
 * not fire, irqx, irqwx and eptv are not derivable.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/commands.h"
#include "collectors/kvmstat.h"
#include "collectors/vmcache.h"
#include "common/log.h"

#define MAX_ROWS 4096
#define HEADER_EVERY 20

enum col { COL_EXITS, COL_HALTX, COL_IRQX, COL_IRQWX, COL_IOX, COL_MMIOX, COL_IRQS, COL_EMUL,
	   COL_EPTV, COL__N };
static const char *const col_names[COL__N] = { "exits", "haltx", "irqx", "irqwx", "iox",
					       "mmiox", "irqs", "emul", "eptv" };

struct row {
	pid_t pid;
	int vcpu;
	uint64_t v[KVMSTAT__N];
};

struct hw_pid {
	pid_t pid;
	int hw_exits, hw_irqs;
};

struct stat_state {
	struct vmcache *vms;
	pid_t only_pid;
	int64_t from, to;		/* the interval being accumulated [from, to) */
	struct row rows[MAX_ROWS];
	size_t nrows;
	struct hw_pid hw[256];		/* sticky: which VMs show hardware exits */
	size_t nhw;
	uint64_t unattributed;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static struct hw_pid *hw_of(struct stat_state *st, pid_t pid, int create)
{
	for (size_t i = 0; i < st->nhw; i++)
		if (st->hw[i].pid == pid)
			return &st->hw[i];
	if (!create || st->nhw == sizeof(st->hw) / sizeof(st->hw[0]))
		return NULL;
	st->hw[st->nhw] = (struct hw_pid){ .pid = pid };
	return &st->hw[st->nhw++];
}

static struct row *row_of(struct stat_state *st, pid_t pid, int vcpu)
{
	for (size_t i = 0; i < st->nrows; i++)
		if (st->rows[i].pid == pid && st->rows[i].vcpu == vcpu)
			return &st->rows[i];
	if (st->nrows == MAX_ROWS)
		return NULL;
	st->rows[st->nrows] = (struct row){ .pid = pid, .vcpu = vcpu };
	return &st->rows[st->nrows++];
}

static int on_entry(const struct kvmstat_entry *e, void *ctx)
{
	struct stat_state *st = ctx;
	struct hw_pid *hw;
	struct row *r;
	int vcpu = e->vcpu;

	if (e->time < st->from || e->time >= st->to)
		return 0;	/* the partial second before counting started */
	if (st->only_pid && e->pid != st->only_pid)
		return 0;
	if (vcpu < 0 && e->tid)
		vcpu = vmcache__vcpu(st->vms, e->pid, e->tid);
	hw = hw_of(st, e->pid, 1);
	if (hw) {
		for (int c = 0; c < EXIT_CLASS__COUNT; c++)
			if (e->v[KVMSTAT_HW_CLASS + c])
				hw->hw_exits = 1;
		if (e->v[KVMSTAT_HW_IRQS])
			hw->hw_irqs = 1;
	}
	r = row_of(st, e->pid, vcpu);
	if (!r) {
		st->unattributed++;
		return 0;
	}
	for (int i = 0; i < KVMSTAT__N; i++)
		r->v[i] += e->v[i];
	return 0;
}

/* Column values of a row; *derivable says which are known on this source. */
static void row_columns(struct stat_state *st, const struct row *r, uint64_t out[COL__N],
			int derivable[COL__N])
{
	struct hw_pid *hw = hw_of(st, r->pid, 0);
	int hw_exits = hw && hw->hw_exits, hw_irqs = hw && hw->hw_irqs;
	int base = hw_exits ? KVMSTAT_HW_CLASS : KVMSTAT_FB_CLASS;
	uint64_t total = 0;

	for (int c = 0; c < EXIT_CLASS__COUNT; c++)
		total += r->v[base + c];
	out[COL_EXITS] = total;
	out[COL_HALTX] = r->v[base + EXIT_CLASS_HALT];
	out[COL_IRQX] = r->v[base + EXIT_CLASS_IRQ];
	out[COL_IRQWX] = r->v[base + EXIT_CLASS_IRQW];
	out[COL_IOX] = r->v[base + EXIT_CLASS_IO];
	out[COL_MMIOX] = r->v[base + EXIT_CLASS_MMIO];
	out[COL_IRQS] = hw_irqs ? r->v[KVMSTAT_HW_IRQS] : r->v[KVMSTAT_FB_IRQS];
	out[COL_EMUL] = r->v[KVMSTAT_EMUL];
	out[COL_EPTV] = hw_exits ? r->v[KVMSTAT_HW_EPTV] : 0;
	for (int c = 0; c < COL__N; c++)
		derivable[c] = 1;
	if (!hw_exits) {
		/* external-interrupt and interrupt-window exits, and EPT
		 * violations, have no tracepoint of their own here */
		derivable[COL_IRQX] = derivable[COL_IRQWX] = derivable[COL_EPTV] = 0;
	}
}

static const char *source_of(struct stat_state *st)
{
	int hw = 0, fb = 0;

	for (size_t i = 0; i < st->nrows; i++) {
		struct hw_pid *h = hw_of(st, st->rows[i].pid, 0);

		if (h && h->hw_exits)
			hw = 1;
		else
			fb = 1;
	}
	if (hw && fb)
		return "mixed";
	return hw ? "kvm_exit" : "fallback";
}

static const char *source_help(const char *source)
{
	if (!strcmp(source, "kvm_exit"))
		return "kvm:kvm_exit/kvm_entry (VMX/SVM), irqs from kvm:kvm_inj_virq";
	if (!strcmp(source, "mixed"))
		return "kvm_exit for VMs where it fires, fallback for the others";
	return "fallback: kvm_pio, kvm_mmio, kvm_vcpu_wakeup, kvm_userspace_exit (kvm_exit does not "
	       "fire on this host); irqs from the irqchip tracepoints";
}

/* Make sure every vCPU of every VM has a row, even an idle one. */
static void add_idle_rows(struct stat_state *st)
{
	const struct vm_list *list = vmcache__list(st->vms);

	for (size_t i = 0; i < list->nvms; i++) {
		const struct vm_info *vm = &list->vms[i];

		if (st->only_pid && vm->pid != st->only_pid)
			continue;
		for (size_t c = 0; c < vm->nvcpus; c++)
			row_of(st, vm->pid, vm->vcpus[c].index);
	}
}

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return (x->vcpu > y->vcpu) - (x->vcpu < y->vcpu);
}

static void print_json(struct stat_state *st, int interval)
{
	json_t *root = json_object(), *vcpus = json_array();
	char name[VM_NAME_MAX + 16];

	json_object_set_new(root, "time", json_integer(st->from));
	json_object_set_new(root, "interval", json_integer(interval));
	json_object_set_new(root, "source", json_string(source_of(st)));
	for (size_t i = 0; i < st->nrows; i++) {
		const struct row *r = &st->rows[i];
		json_t *o = json_object();
		uint64_t v[COL__N];
		int known[COL__N];

		row_columns(st, r, v, known);
		json_object_set_new(o, "pid", json_integer(r->pid));
		json_object_set_new(o, "vm", json_string(vmcache__vm_name(st->vms, r->pid, name,
									   sizeof(name))));
		json_object_set_new(o, "vcpu", r->vcpu >= 0 ? json_integer(r->vcpu) : json_null());
		{
			struct hw_pid *h = hw_of(st, r->pid, 0);

			json_object_set_new(o, "source",
					    json_string(h && h->hw_exits ? "kvm_exit" : "fallback"));
		}
		for (int c = 0; c < COL__N; c++)
			json_object_set_new(o, col_names[c],
					    known[c] ? json_integer((json_int_t)v[c]) : json_null());
		json_array_append_new(vcpus, o);
	}
	json_object_set_new(root, "vcpus", vcpus);
	if (st->unattributed)
		json_object_set_new(root, "unattributed", json_integer((json_int_t)st->unattributed));
	char *s = json_dumps(root, JSON_COMPACT);

	if (s) {
		puts(s);
		free(s);
	}
	fflush(stdout);
	json_decref(root);
}

static void print_header(void)
{
	printf("%6s %4s | %6s : %6s %6s %6s %6s %6s | %6s %6s %6s  %s\n", "pid", "vcpu", "exits",
	       "haltx", "irqx", "irqwx", "iox", "mmiox", "irqs", "emul", "eptv", "vm");
}

static void print_text(struct stat_state *st, int interval, int *lines, const char **last_source)
{
	const char *source = source_of(st);
	char name[VM_NAME_MAX + 16];

	if (!*last_source || strcmp(*last_source, source)) {
		printf("# source: %s\n", source_help(source));
		*last_source = source;
		*lines = 0;
	}
	for (size_t i = 0; i < st->nrows; i++) {
		const struct row *r = &st->rows[i];
		uint64_t v[COL__N];
		int known[COL__N];
		char cells[COL__N][24], vcpu[16];

		if (*lines % HEADER_EVERY == 0)
			print_header();
		(*lines)++;
		row_columns(st, r, v, known);
		for (int c = 0; c < COL__N; c++) {
			if (known[c])
				snprintf(cells[c], sizeof(cells[c]), "%llu",
					 (unsigned long long)((v[c] + interval / 2) / interval));
			else
				snprintf(cells[c], sizeof(cells[c]), "-");
		}
		if (r->vcpu >= 0)
			snprintf(vcpu, sizeof(vcpu), "%d", r->vcpu);
		else
			snprintf(vcpu, sizeof(vcpu), "?");
		printf("%6d %4s | %6s : %6s %6s %6s %6s %6s | %6s %6s %6s  %s\n", (int)r->pid, vcpu,
		       cells[COL_EXITS], cells[COL_HALTX], cells[COL_IRQX], cells[COL_IRQWX],
		       cells[COL_IOX], cells[COL_MMIOX], cells[COL_IRQS], cells[COL_EMUL],
		       cells[COL_EPTV], vmcache__vm_name(st->vms, r->pid, name, sizeof(name)));
	}
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kvmscope stat [-p PID] [-j] [interval [count]]\n"
		"\n"
		"kvmstat for Linux: one line per vCPU with per-second rates of VM exits by class\n"
		"(haltx: halts, irqx: external interrupts, irqwx: interrupt windows, iox: port I/O,\n"
		"mmiox: MMIO), interrupts injected (irqs), emulated instructions (emul) and EPT/NPT\n"
		"violations (eptv). '-' marks a column this host cannot provide.\n"
		"\n"
		"  -p, --pid PID   only the VM with this process id\n"
		"  -j, --json      one JSON object per interval with the counts over the interval\n"
		"                  (not rates): {\"time\", \"interval\", \"source\", \"vcpus\": [...]}\n"
		"  -h, --help      this help\n"
		"  interval        seconds per line (default 1); count: intervals (default: forever)\n"
		"\n"
		"Counting starts at the next whole second. Needs root (BPF) and tracefs.\n");
}

static void sleep_until(int64_t unix_sec, long extra_ns)
{
	struct timespec ts = { .tv_sec = unix_sec, .tv_nsec = extra_ns };

	while (!stop && clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

int cmd_stat(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct stat_state *st = NULL;
	struct kvmstat *ks = NULL;
	const char *last_source = NULL;
	int json = 0, interval = 1, lines = 0, opt, rc = 1;
	long count = -1;
	pid_t only_pid = 0;
	char err[256];

	while ((opt = getopt_long(argc, argv, "p:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'p': {
			char *end;
			long p = strtol(optarg, &end, 10);

			if (*end || p <= 0) {
				fprintf(stderr, "kvmscope stat: -p wants a process id, got '%s'\n", optarg);
				return 2;
			}
			only_pid = (pid_t)p;
			break;
		}
		case 'j': json = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	for (int i = optind, n = 0; i < argc; i++, n++) {
		char *end;
		long v = strtol(argv[i], &end, 10);

		if (*end || v <= 0 || n > 1 || (n == 0 && v > 3600)) {
			fprintf(stderr, "kvmscope stat: unexpected argument '%s' (interval is 1..3600 "
					"seconds, count a positive number)\n", argv[i]);
			return 2;
		}
		if (n == 0)
			interval = (int)v;
		else
			count = v;
	}
	if (access("/dev/kvm", F_OK))
		fprintf(stderr, "kvmscope stat: note: /dev/kvm does not exist: this host runs no KVM "
				"guests (load kvm_intel or kvm_amd)\n");
	if (kvmstat__open(&ks, err, sizeof(err))) {
		fprintf(stderr, "kvmscope stat: %s\n", err);
		return 1;
	}
	st = calloc(1, sizeof(*st));
	if (!st || !(st->vms = vmcache__new("/proc"))) {
		fprintf(stderr, "kvmscope stat: out of memory\n");
		goto out;
	}
	st->only_pid = only_pid;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);

	int64_t start = time(NULL) + 1;

	/* forget what the partial first second collected */
	sleep_until(start, 50 * 1000 * 1000);
	st->from = st->to = 0;
	kvmstat__drain(ks, start, on_entry, st);
	for (long n = 0; !stop && (count < 0 || n < count); n++) {
		st->from = start + n * interval;
		st->to = st->from + interval;
		st->nrows = 0;
		st->unattributed = 0;
		/* events of the last second can still be in flight: a grace period */
		sleep_until(st->to, 150 * 1000 * 1000);
		vmcache__refresh(st->vms);
		if (kvmstat__drain(ks, st->to, on_entry, st) < 0) {
			fprintf(stderr, "kvmscope stat: reading the kernel counters failed\n");
			goto out;
		}
		/* printed once final: an exit that began in the interval (a halt
		 * of 1 s) is counted there when it ends, COLLECTOR_FINAL_WAIT_MAX_S
		 * late at most; never a partial interval */
		while (!stop && kvmstat__final_until(ks) < st->to) {
			struct timespec poll = { 0, 100 * 1000 * 1000 };

			nanosleep(&poll, NULL);
			if (kvmstat__drain(ks, st->to, on_entry, st) < 0) {
				fprintf(stderr, "kvmscope stat: reading the kernel counters failed\n");
				goto out;
			}
		}
		add_idle_rows(st);
		qsort(st->rows, st->nrows, sizeof(st->rows[0]), cmp_rows);
		if (json)
			print_json(st, interval);
		else
			print_text(st, interval, &lines, &last_source);
	}
	if (kvmstat__drops(ks))
		fprintf(stderr, "kvmscope stat: %llu events lost (kernel map full)\n",
			(unsigned long long)kvmstat__drops(ks));
	rc = 0;
out:
	if (st)
		vmcache__free(st->vms);
	free(st);
	kvmstat__close(ks);
	return rc;
}
