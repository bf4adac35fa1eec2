/* vmload: kvmscope's micro-VMM. One process, one VM, N vCPU threads named
 * like QEMU's ("CPU n/KVM"); tiny guests that do exactly what the command
 * line asks, counted where the count cannot be wrong, printed as truth JSON
 * for tests and demos to compare kvmscope's measurements against. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "devices.h"
#include "guest.h"
#include "opts.h"
#include "vm.h"

#define MAX_STREAMS   64
#define MAX_SUBSEC    100000	/* subsecond offsets kept per interrupt source */

enum stream_kind { ST_PIO, ST_MMIO, ST_DISK_READ, ST_DISK_WRITE, ST_NIC_TX };

/* An exit-driven workload: the guest runs them in order on one vCPU, so an
 * exit belongs to the first unfinished stream with its port or address. */
struct stream {
	enum stream_kind kind;
	uint32_t port;
	uint64_t addr;
	uint64_t count, done;
	double rate;
	uint64_t start_ns;
	struct disk *disk;
	struct nic *nic;
};

struct vcpu_state {
	int index;
	pid_t tid;
	pthread_t thread;
	int thread_ok;
	struct stream streams[MAX_STREAMS];
	int nr_streams;
	uint64_t pio, mmio, io_exits, mmio_exits, other_exits;
	/* CPU time of the vCPU thread while the guest ran (guest time included):
	 * what a sampler at a fixed rate can see of it on a loaded host */
	uint64_t cpu_ns;
	atomic_int stopped;
	atomic_ullong delivered;	/* interrupts the irqchip accepted for it */
};

/* An interrupt source: an --irq workload or the wake-ups of a --hlt. */
struct irq_src {
	const struct workload *wl;
	int is_hlt;
	int vcpu;
	uint8_t vector;
	enum irq_via via;
	int line;
	uint32_t hlt_base;
	uint64_t sent, delivered;
	uint32_t *subsec;
	uint64_t nr_subsec;
	/* --hlt: CLOCK_REALTIME ns at which each HLT was seen counted by the
	 * guest (it halts right after), for checking the second it is booked in */
	uint64_t *halted_ns;
	uint64_t nr_halted;
	pthread_t thread;
	int thread_ok;
	atomic_int done;
};

struct cr3_run {
	const struct workload *wl;
	uint64_t start_ns, stop_ns;
};

static struct config cfg;
static struct vm vm;
static struct vcpu_state vcpus[VM_MAX_VCPUS];
static struct irq_src irqs[MAX_WORKLOADS];
static int nr_irqs;
static struct disk disks[MAX_DISKS];
static struct nic nics[MAX_NICS];
static struct cr3_run cr3s[MAX_WORKLOADS];
static int nr_cr3s;
static const struct workload *pit_wl;	/* the --pit workload, if any */
static pthread_t rx_threads[MAX_NICS];
static int rx_thread_ok[MAX_NICS];
static atomic_int rx_done[MAX_NICS];

static atomic_int g_stop;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_started, g_quit;
static char g_error[512];
static __thread struct kvm_run *tls_run;

static uint64_t now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The first error wins and stops the run; the truth is still written. */
static void fatal(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&g_lock);
	if (!g_error[0]) {
		va_start(ap, fmt);
		vsnprintf(g_error, sizeof(g_error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&g_lock);
	atomic_store(&g_stop, 1);
}

/* Sleeps until abs_ns on clk in short slices so a stop is noticed; returns
 * -1 when the run was stopped first. */
static int sleep_until(clockid_t clk, uint64_t abs_ns)
{
	for (;;) {
		uint64_t now = now_ns(clk), slice_end;
		struct timespec ts;

		if (atomic_load(&g_stop))
			return -1;
		if (now >= abs_ns)
			return 0;
		slice_end = abs_ns - now > 20000000ull ? now + 20000000ull : abs_ns;
		ts.tv_sec = slice_end / 1000000000ull;
		ts.tv_nsec = slice_end % 1000000000ull;
		clock_nanosleep(clk, TIMER_ABSTIME, &ts, NULL);
	}
}

static void on_kick(int sig)
{
	(void)sig;
	if (tls_run)
		tls_run->immediate_exit = 1;
}

static struct stream *find_stream(struct vcpu_state *st, int mmio, uint64_t where)
{
	for (int i = 0; i < st->nr_streams; i++) {
		struct stream *s = &st->streams[i];

		if (s->done >= s->count)
			continue;
		if (mmio ? (s->kind == ST_MMIO && s->addr == where)
			 : (s->kind != ST_MMIO && s->port == where))
			return s;
	}
	return NULL;
}

static void handle_stream(struct vcpu_state *st, struct stream *s)
{
	int r = 0;

	if (!s->done)
		s->start_ns = now_ns(CLOCK_MONOTONIC);
	switch (s->kind) {
	case ST_PIO: st->pio++; break;
	case ST_MMIO: st->mmio++; break;
	case ST_DISK_READ: r = disk__op(s->disk, 0); break;
	case ST_DISK_WRITE: r = disk__op(s->disk, 1); break;
	case ST_NIC_TX: r = nic__tx(s->nic); break;
	}
	if (r)
		fatal("vCPU %d: %s failed: %s", st->index,
		      s->kind == ST_NIC_TX ? "tap write" : "disk I/O", strerror(-r));
	s->done++;
	if (s->rate > 0 && s->done < s->count)
		sleep_until(CLOCK_MONOTONIC, s->start_ns + (uint64_t)(s->done * 1e9 / s->rate));
}

static void vcpu_exit(struct vcpu_state *st, struct kvm_run *run)
{
	struct stream *s;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		st->io_exits++;
		if (run->io.port == GUEST_FAULT_PORT) {
			struct kvm_regs regs;

			ioctl(vm.vcpus[st->index].fd, KVM_GET_REGS, &regs);
			fatal("vCPU %d: guest exception vector %u (esp 0x%llx)", st->index,
			      *((uint8_t *)run + run->io.data_offset), (unsigned long long)regs.rsp);
			return;
		}
		s = find_stream(st, 0, run->io.port);
		if (s && s->kind == ST_PIO && run->io.direction == KVM_EXIT_IO_IN)
			memset((uint8_t *)run + run->io.data_offset, 0, run->io.size * run->io.count);
		if (!s) {
			fatal("vCPU %d: unexpected I/O exit on port 0x%x", st->index, run->io.port);
			return;
		}
		handle_stream(st, s);
		return;
	case KVM_EXIT_MMIO:
		st->mmio_exits++;
		s = run->mmio.is_write ? find_stream(st, 1, run->mmio.phys_addr) : NULL;
		if (!s) {
			/* reads of unbacked memory see all-ones, as on real hardware */
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
			else
				fatal("vCPU %d: unexpected MMIO write to 0x%llx", st->index,
				      (unsigned long long)run->mmio.phys_addr);
			return;
		}
		handle_stream(st, s);
		return;
	case KVM_EXIT_SHUTDOWN: {
		struct kvm_regs regs;
		struct kvm_sregs sregs;

		ioctl(vm.vcpus[st->index].fd, KVM_GET_REGS, &regs);
		ioctl(vm.vcpus[st->index].fd, KVM_GET_SREGS, &sregs);
		fatal("vCPU %d: guest shutdown (triple fault) at rip 0x%llx cr0 0x%llx cr3 0x%llx cr4 0x%llx",
		      st->index, (unsigned long long)regs.rip, (unsigned long long)sregs.cr0,
		      (unsigned long long)sregs.cr3, (unsigned long long)sregs.cr4);
		return;
	}
	case KVM_EXIT_FAIL_ENTRY:
		fatal("vCPU %d: VM entry failed, hardware reason 0x%llx", st->index,
		      (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return;
	case KVM_EXIT_INTERNAL_ERROR:
		fatal("vCPU %d: KVM internal error, suberror %u", st->index, run->internal.suberror);
		return;
	default:
		st->other_exits++;
		fatal("vCPU %d: unexpected exit reason %u", st->index, run->exit_reason);
		return;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu_state *st = arg;
	struct kvm_run *run = vm.vcpus[st->index].run;
	int fd = vm.vcpus[st->index].fd;
	struct timespec cpu0, cpu1;
	char name[16];

	st->tid = gettid();
	snprintf(name, sizeof(name), "CPU %d/KVM", st->index);
	if (!cfg.no_thread_names)
		pthread_setname_np(pthread_self(), name);
	tls_run = run;

	pthread_mutex_lock(&g_lock);
	while (!g_started && !g_quit)
		pthread_cond_wait(&g_cond, &g_lock);
	pthread_mutex_unlock(&g_lock);

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
	while (!atomic_load(&g_stop)) {
		if (ioctl(fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				run->immediate_exit = 0;
				continue;
			}
			fatal("vCPU %d: KVM_RUN: %s", st->index, strerror(errno));
			break;
		}
		vcpu_exit(st, run);
	}
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
	st->cpu_ns = (uint64_t)(cpu1.tv_sec - cpu0.tv_sec) * 1000000000ull + (uint64_t)cpu1.tv_nsec -
		     (uint64_t)cpu0.tv_nsec;
	atomic_store(&st->stopped, 1);
	/* Stay alive (and named) until the process ends, so --linger still
	 * shows a complete VM to discovery. */
	pthread_mutex_lock(&g_lock);
	while (!g_quit)
		pthread_cond_wait(&g_cond, &g_lock);
	pthread_mutex_unlock(&g_lock);
	return NULL;
}

static int deliver(struct irq_src *q)
{
	if (q->via == VIA_MSI)
		return vm__signal_msi(&vm, (uint8_t)q->vcpu, q->vector);
	return vm__irq_pulse(&vm, q->line);
}

static void record(struct irq_src *q, int r)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	q->sent++;
	if (r < 0) {
		fatal("interrupt 0x%x via %s to vCPU %d: %s", q->vector, opts__via_name(q->via),
		      q->vcpu, strerror(-r));
		return;
	}
	if (r == 0)
		return;		/* masked or coalesced: not delivered */
	q->delivered++;
	atomic_fetch_add(&vcpus[q->vcpu].delivered, 1);
	if (q->nr_subsec < MAX_SUBSEC)
		q->subsec[q->nr_subsec++] = ts.tv_nsec / 1000000;
}

static void *irq_thread(void *arg)
{
	struct irq_src *q = arg;
	const struct workload *w = q->wl;
	uint64_t period = w->period_ms * 1000000ull, phase = w->phase_ms * 1000000ull;
	uint64_t now = now_ns(CLOCK_REALTIME), next;

	pthread_setname_np(pthread_self(), "vmload-irq");
	/* The phase inside the second is what subsecond heatmaps are checked
	 * against; on a loaded host (a browser test on two cores) an ordinary
	 * thread wakes up to hundreds of ms late. Best effort: without the
	 * privilege it keeps the default policy, and the truth records the
	 * real offsets either way. */
	pthread_setschedparam(pthread_self(), SCHED_FIFO, &(struct sched_param){ .sched_priority = 1 });
	/* first instant after now (plus a margin) that sits at the phase */
	next = (now + 1000000ull) / period * period + phase;
	if (next <= now + 1000000ull)
		next += period;
	for (uint64_t i = 0; i < w->count; i++, next += period) {
		if (sleep_until(CLOCK_REALTIME, next))
			break;
		record(q, deliver(q));
	}
	atomic_store(&q->done, 1);
	return NULL;
}

/* Waits, up to timeout_ms, until the vCPU thread sleeps in the kernel. Once
 * its guest has counted a HLT, that sleep is KVM's halt (after halt polling,
 * up to halt_poll_ns of spinning). Waking the vCPU before it got there is a
 * halt the host never sees: KVM skips a HLT with an interrupt already
 * pending, and a kick out of KVM_RUN stops the guest before the HLT runs.
 * The truth would then count a halt that no kvm_vcpu_wakeup reports. */
static void wait_vcpu_asleep(const struct vcpu_state *st, int timeout_ms)
{
	char path[64], buf[512], *paren;
	uint64_t until = now_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)st->tid);
	do {
		struct timespec ts = { 0, 50000 };

		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			return;
		buf[n] = '\0';
		/* "tid (comm) S ...": the name may hold spaces and parentheses */
		paren = strrchr(buf, ')');
		if (paren && paren[1] == ' ' && paren[2] == 'S')
			return;
		nanosleep(&ts, NULL);
	} while (now_ns(CLOCK_MONOTONIC) < until);
}

static void *hlt_thread(void *arg)
{
	struct irq_src *q = arg;
	const struct workload *w = q->wl;
	volatile uint32_t *hlt = guest__counter(vm.mem, q->vcpu, GD_HLT);
	uint64_t t0 = 0;

	pthread_setname_np(pthread_self(), "vmload-hlt");
	for (uint64_t i = 0; i < w->count; i++) {
		/* the guest counts a HLT just before executing it: once the
		 * count shows it, a wake-up cannot be lost */
		while (*hlt < q->hlt_base + i + 1) {
			struct timespec ts = { 0, 20000 };

			if (atomic_load(&g_stop))
				goto out;
			nanosleep(&ts, NULL);
		}
		if (q->nr_halted < MAX_SUBSEC)
			q->halted_ns[q->nr_halted++] = now_ns(CLOCK_REALTIME);
		if (!t0)
			t0 = now_ns(CLOCK_MONOTONIC);
		if (w->rate > 0 && sleep_until(CLOCK_MONOTONIC, t0 + (uint64_t)(i * 1e9 / w->rate)))
			goto out;
		wait_vcpu_asleep(&vcpus[q->vcpu], 100);
		record(q, deliver(q));
	}
out:
	atomic_store(&q->done, 1);
	return NULL;
}

static void *rx_thread(void *arg)
{
	struct nic *n = arg;

	pthread_setname_np(pthread_self(), "vmload-rx");
	while (!atomic_load(&g_stop) && n->rx_packets < n->wl->rx)
		nic__rx_poll(n, 20);
	atomic_store(&rx_done[n->wl->index], 1);
	return NULL;
}

static int add_stream(struct vcpu_state *st, enum stream_kind kind, uint32_t port, uint64_t addr,
		      uint64_t count, double rate, struct disk *d, struct nic *n)
{
	struct stream *s;

	if (!count)
		return 0;
	if (st->nr_streams == MAX_STREAMS) {
		fprintf(stderr, "vmload: too many workloads on vCPU %d\n", st->index);
		return -E2BIG;
	}
	s = &st->streams[st->nr_streams++];
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->port = port;
	s->addr = addr;
	s->count = count;
	s->rate = rate;
	s->disk = d;
	s->nic = n;
	return 0;
}

/* Turns the workloads into guest programs, exit streams and interrupt
 * sources, and programs the irqchip. */
static int plan(void)
{
	static struct guest_op ops[VM_MAX_VCPUS][MAX_WORKLOADS];
	int nr_ops[VM_MAX_VCPUS] = { 0 };
	uint32_t hlt_total[VM_MAX_VCPUS] = { 0 };
	uint8_t pic_base = 0x30, pic_unmask = 0;
	int next_ioapic_line = 16, i, r;
	uint64_t ioapic_used = 0;

	for (i = 0; i < cfg.nr_workloads; i++) {
		struct workload *w = &cfg.wl[i];
		struct vcpu_state *st = &vcpus[w->vcpu];
		struct guest_op *op = &ops[w->vcpu][nr_ops[w->vcpu]];
		struct irq_src *q;

		memset(op, 0, sizeof(*op));
		switch (w->kind) {
		case WL_PIO:
			op->kind = w->pio_in ? GOP_IN : GOP_OUT;
			op->port = w->port;
			op->count = w->count;
			nr_ops[w->vcpu]++;
			r = add_stream(st, ST_PIO, w->port, 0, w->count, w->rate, NULL, NULL);
			break;
		case WL_MMIO:
			op->kind = GOP_MMIO;
			op->addr = w->addr;
			op->count = w->count;
			nr_ops[w->vcpu]++;
			r = add_stream(st, ST_MMIO, 0, w->addr, w->count, w->rate, NULL, NULL);
			break;
		case WL_DISK:
			if (w->writes) {
				op->kind = GOP_OUT;
				op->port = DISK_PORT_WRITE(w->index);
				op->count = w->writes;
				op = &ops[w->vcpu][++nr_ops[w->vcpu]];
			}
			if (w->reads) {
				op->kind = GOP_OUT;
				op->port = DISK_PORT_READ(w->index);
				op->count = w->reads;
				nr_ops[w->vcpu]++;
			}
			r = add_stream(st, ST_DISK_WRITE, DISK_PORT_WRITE(w->index), 0, w->writes,
				       w->rate, &disks[w->index], NULL);
			if (!r)
				r = add_stream(st, ST_DISK_READ, DISK_PORT_READ(w->index), 0, w->reads,
					       w->rate, &disks[w->index], NULL);
			break;
		case WL_NIC:
			if (w->tx) {
				op->kind = GOP_OUT;
				op->port = NIC_PORT_TX(w->index);
				op->count = w->tx;
				nr_ops[w->vcpu]++;
			}
			r = add_stream(st, ST_NIC_TX, NIC_PORT_TX(w->index), 0, w->tx, w->rate,
				       NULL, &nics[w->index]);
			break;
		case WL_CR3:
			op->kind = GOP_CR3;
			op->nr_roots = w->nr_weights;
			for (int j = 0; j < w->nr_weights; j++)
				op->spin[j] = (uint32_t)(w->weights[j] * w->unit);
			nr_ops[w->vcpu]++;
			cr3s[nr_cr3s++].wl = w;
			r = 0;
			break;
		case WL_PIT:
			op->kind = GOP_PIT;
			op->count = (uint32_t)w->count;
			op->vector = (uint8_t)w->vector;
			op->pit_divisor = (uint16_t)((1193182u + w->hz / 2) / w->hz);
			nr_ops[w->vcpu]++;
			pit_wl = w;
			r = vm__create_pit(&vm);
			if (r)
				fprintf(stderr, "vmload: --pit: KVM_CREATE_PIT2: %s\n", strerror(-r));
			break;
		case WL_HLT:
		case WL_IRQ:
			q = &irqs[nr_irqs++];
			q->wl = w;
			q->vcpu = w->vcpu;
			q->vector = (uint8_t)w->vector;
			q->line = (int)w->line;
			q->subsec = calloc(w->count < MAX_SUBSEC ? w->count + 1 : MAX_SUBSEC, sizeof(uint32_t));
			q->halted_ns = calloc(w->count < MAX_SUBSEC ? w->count + 1 : MAX_SUBSEC,
					      sizeof(uint64_t));
			if (!q->subsec || !q->halted_ns)
				return -ENOMEM;
			if (w->kind == WL_HLT) {
				q->is_hlt = 1;
				q->via = VIA_MSI;
				q->hlt_base = hlt_total[w->vcpu];
				hlt_total[w->vcpu] += w->count;
				op->kind = GOP_HLT;
				op->count = w->count;
				nr_ops[w->vcpu]++;
				r = 0;
				break;
			}
			q->via = w->via;
			r = 0;
			if (w->via == VIA_PIC) {
				pic_base = w->vector & ~7;
				pic_unmask |= 1u << q->line;
			} else if (w->via == VIA_IOAPIC) {
				if (q->line < 0) {
					if (next_ioapic_line > 23) {
						fprintf(stderr, "vmload: --irq via=ioapic: out of IOAPIC lines (16..23); give line=L\n");
						return -EINVAL;
					}
					q->line = next_ioapic_line++;
				}
				if (ioapic_used & (1ull << q->line)) {
					fprintf(stderr, "vmload: --irq via=ioapic: line %d is used twice\n", q->line);
					return -EINVAL;
				}
				ioapic_used |= 1ull << q->line;
				r = vm__ioapic_route(&vm, q->line, q->vector, (uint8_t)w->vcpu);
				if (r) {
					fprintf(stderr, "vmload: IOAPIC line %d: %s\n", q->line, strerror(-r));
					return r;
				}
			}
			break;
		}
		if (r)
			return r;
	}
	/* GSIs below 16 reach the PIC too: a line the IOAPIC uses must stay
	 * masked there, or it would fire a second time. */
	if (ioapic_used & pic_unmask) {
		fprintf(stderr, "vmload: --irq: a line is used both via=pic and via=ioapic\n");
		return -EINVAL;
	}
	r = vm__pic_program(&vm, pic_base, pic_unmask);
	if (r) {
		fprintf(stderr, "vmload: programming the PIC: %s\n", strerror(-r));
		return r;
	}
	guest__build_common(vm.mem, cfg.nr_vcpus);
	for (i = 0; i < cfg.nr_vcpus; i++) {
		struct vm_boot boot;

		r = guest__build_program(vm.mem, i, ops[i], nr_ops[i], &boot);
		if (r) {
			fprintf(stderr, "vmload: vCPU %d: guest program too large (too many workloads)\n", i);
			return r;
		}
		r = vm__vcpu_boot(&vm, i, &boot);
		if (r) {
			fprintf(stderr, "vmload: vCPU %d: setting registers: %s\n", i, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int all_done(void)
{
	int i;

	for (i = 0; i < cfg.nr_vcpus; i++)
		if (!*guest__counter(vm.mem, i, GD_DONE))
			return 0;
	for (i = 0; i < nr_irqs; i++)
		if (!atomic_load(&irqs[i].done))
			return 0;
	for (i = 0; i < cfg.nr_workloads; i++) {
		const struct workload *w = &cfg.wl[i];

		if (w->kind == WL_NIC && w->rx && !atomic_load(&rx_done[w->index]))
			return 0;
	}
	return 1;
}

/* Every accepted interrupt has reached the guest's handler. */
static int irqs_settled(void)
{
	for (int i = 0; i < cfg.nr_vcpus; i++) {
		uint64_t seen = 0;

		for (int v = 32; v < 256; v++)
			seen += *guest__counter(vm.mem, i, GD_IRQ + v * 4);
		if (seen < atomic_load(&vcpus[i].delivered))
			return 0;
	}
	return 1;
}

static void cr3_tick(uint64_t now)
{
	for (int i = 0; i < nr_cr3s; i++) {
		struct cr3_run *c = &cr3s[i];

		if (!c->start_ns && *guest__counter(vm.mem, c->wl->vcpu, GD_CR3_SWITCHES))
			c->start_ns = now;
		if (c->start_ns && !c->stop_ns && now - c->start_ns >= c->wl->duration * 1e9) {
			*guest__counter(vm.mem, c->wl->vcpu, GD_STOP) = 1;
			c->stop_ns = now;
		}
	}
}

static const char *hex(char *buf, uint64_t v)
{
	sprintf(buf, "0x%llx", (unsigned long long)v);
	return buf;
}

static json_t *u64s(const uint64_t *v, uint64_t n)
{
	json_t *a = json_array();

	for (uint64_t i = 0; i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

/* Returns a new JSON object owned by the caller. */
static json_t *truth(int completed, uint64_t start_rt, uint64_t end_rt)
{
	json_t *t = json_object(), *a, *disk_a, *nic_a, *cr3_a;
	char h[32];
	int i;

	json_object_set_new(t, "pid", json_integer(getpid()));
	json_object_set_new(t, "name", cfg.name ? json_string(cfg.name) : json_null());
	json_object_set_new(t, "completed", json_boolean(completed));
	json_object_set_new(t, "error", g_error[0] ? json_string(g_error) : json_null());
	json_object_set_new(t, "start_realtime_ns", json_integer(start_rt));
	json_object_set_new(t, "end_realtime_ns", json_integer(end_rt));

	a = json_array();
	for (i = 0; i < cfg.nr_vcpus; i++) {
		struct vcpu_state *st = &vcpus[i];
		json_t *v = json_object(), *vec = json_object();
		uint64_t nirq = 0;

		for (int x = 32; x < 256; x++) {
			uint32_t c = *guest__counter(vm.mem, i, GD_IRQ + x * 4);

			if (c) {
				json_object_set_new(vec, hex(h, x), json_integer(c));
				nirq += c;
			}
		}
		json_object_set_new(v, "index", json_integer(i));
		json_object_set_new(v, "tid", json_integer(st->tid));
		json_object_set_new(v, "pio", json_integer(st->pio));
		json_object_set_new(v, "mmio", json_integer(st->mmio));
		json_object_set_new(v, "hlt", json_integer(*guest__counter(vm.mem, i, GD_HLT)));
		json_object_set_new(v, "idle_hlt", json_integer(*guest__counter(vm.mem, i, GD_IDLE_HLT)));
		json_object_set_new(v, "irqs", json_integer(nirq));
		json_object_set_new(v, "irq_vectors", vec);
		json_object_set_new(v, "cr3_switches", json_integer(*guest__counter(vm.mem, i, GD_CR3_SWITCHES)));
		json_object_set_new(v, "io_exits", json_integer(st->io_exits));
		json_object_set_new(v, "mmio_exits", json_integer(st->mmio_exits));
		json_object_set_new(v, "cpu_ns", json_integer((json_int_t)st->cpu_ns));
		json_array_append_new(a, v);
	}
	json_object_set_new(t, "vcpus", a);

	a = json_array();
	for (i = 0; i < nr_irqs; i++) {
		struct irq_src *q = &irqs[i];
		json_t *o = json_object(), *ss = json_array();

		json_object_set_new(o, "vcpu", json_integer(q->vcpu));
		json_object_set_new(o, "vector", json_string(hex(h, q->vector)));
		json_object_set_new(o, "via", json_string(opts__via_name(q->via)));
		json_object_set_new(o, "line", q->via == VIA_MSI ? json_null() : json_integer(q->line));
		json_object_set_new(o, "purpose", json_string(q->is_hlt ? "hlt" : "irq"));
		json_object_set_new(o, "sent", json_integer(q->sent));
		json_object_set_new(o, "count", json_integer(q->delivered));
		if (!q->is_hlt) {
			json_object_set_new(o, "period_ms", json_integer(q->wl->period_ms));
			json_object_set_new(o, "phase_ms", json_integer(q->wl->phase_ms));
		}
		for (uint64_t k = 0; k < q->nr_subsec; k++)
			json_array_append_new(ss, json_integer(q->subsec[k]));
		json_object_set_new(o, "subsecond_ms", ss);
		if (q->is_hlt) {
			json_t *h = json_array();

			for (uint64_t k = 0; k < q->nr_halted; k++)
				json_array_append_new(h, json_integer((json_int_t)q->halted_ns[k]));
			json_object_set_new(o, "halted_ns", h);
		}
		json_array_append_new(a, o);
	}
	json_object_set_new(t, "irqs", a);

	if (pit_wl) {
		uint32_t divisor = (1193182u + pit_wl->hz / 2) / pit_wl->hz;
		json_t *o = json_object();

		json_object_set_new(o, "vcpu", json_integer(pit_wl->vcpu));
		json_object_set_new(o, "hz", json_integer(pit_wl->hz));
		json_object_set_new(o, "divisor", json_integer(divisor));
		json_object_set_new(o, "vector", json_string(hex(h, pit_wl->vector)));
		json_object_set_new(o, "source", json_string("pic"));
		json_object_set_new(o, "count", json_integer(pit_wl->count));
		/* counted by the guest's IRQ0 handler; the PIT raised exactly
		 * as many (see guest__build_program) */
		json_object_set_new(o, "received",
				    json_integer(*guest__counter(vm.mem, pit_wl->vcpu,
								 GD_IRQ + pit_wl->vector * 4)));
		json_object_set_new(t, "pit", o);
	} else {
		json_object_set_new(t, "pit", json_null());
	}

	disk_a = json_array();
	nic_a = json_array();
	cr3_a = json_array();
	for (i = 0; i < cfg.nr_workloads; i++) {
		const struct workload *w = &cfg.wl[i];
		json_t *o = json_object();

		if (w->kind == WL_DISK) {
			struct disk *d = &disks[w->index];

			json_object_set_new(o, "path", json_string(w->path));
			json_object_set_new(o, "vcpu", json_integer(w->vcpu));
			json_object_set_new(o, "pattern", json_string(w->rand ? "rand" : "seq"));
			json_object_set_new(o, "io", json_string(disk__io_name(w->io)));
			json_object_set_new(o, "cache", json_string(w->buffered ? "buffered" : "direct"));
			json_object_set_new(o, "size", json_integer(w->size));
			json_object_set_new(o, "offset", json_integer(w->offset));
			json_object_set_new(o, "reads", json_integer(d->reads));
			json_object_set_new(o, "writes", json_integer(d->writes));
			json_object_set_new(o, "read_bytes", json_integer(d->read_bytes));
			json_object_set_new(o, "write_bytes", json_integer(d->write_bytes));
			json_object_set_new(o, "errors", json_integer(d->errors));
			json_object_set_new(o, "min_offset", d->reads + d->writes ? json_integer(d->min_offset) : json_null());
			json_object_set_new(o, "max_offset", d->reads + d->writes ? json_integer(d->max_offset) : json_null());
			if (d->reads <= DISK_MAX_OFFSETS && d->writes <= DISK_MAX_OFFSETS) {
				json_object_set_new(o, "read_offsets", u64s(d->read_offsets, d->reads));
				json_object_set_new(o, "write_offsets", u64s(d->write_offsets, d->writes));
			}
			if (!json_array_size(disk_a))
				json_object_set(t, "disk", o);
			json_array_append_new(disk_a, o);
		} else if (w->kind == WL_NIC) {
			struct nic *n = &nics[w->index];

			json_object_set_new(o, "tap", json_string(w->tap));
			json_object_set_new(o, "vcpu", json_integer(w->vcpu));
			json_object_set_new(o, "size", json_integer(w->size));
			json_object_set_new(o, "tx_packets", json_integer(n->tx_packets));
			json_object_set_new(o, "tx_bytes", json_integer(n->tx_bytes));
			json_object_set_new(o, "rx_packets", json_integer(n->rx_packets));
			json_object_set_new(o, "rx_bytes", json_integer(n->rx_bytes));
			if (!json_array_size(nic_a))
				json_object_set(t, "nic", o);
			json_array_append_new(nic_a, o);
		} else if (w->kind == WL_CR3) {
			json_t *roots = json_array(), *wts = json_array(), *spin = json_array(), *per = json_array();

			for (int j = 0; j < w->nr_weights; j++) {
				json_array_append_new(roots, json_string(hex(h, guest__root(j))));
				json_array_append_new(wts, json_integer(w->weights[j]));
				json_array_append_new(spin, json_integer(w->weights[j] * w->unit));
				json_array_append_new(per, json_integer(*guest__counter(vm.mem, w->vcpu, GD_ROOT_SWITCHES + j * 4)));
			}
			json_object_set_new(o, "vcpu", json_integer(w->vcpu));
			json_object_set_new(o, "roots", roots);
			json_object_set_new(o, "weights", wts);
			json_object_set_new(o, "unit", json_integer(w->unit));
			json_object_set_new(o, "spin_iterations", spin);
			json_object_set_new(o, "switches", json_integer(*guest__counter(vm.mem, w->vcpu, GD_CR3_SWITCHES)));
			json_object_set_new(o, "root_switches", per);
			if (!json_array_size(cr3_a))
				json_object_set(t, "cr3", o);
			json_array_append_new(cr3_a, o);
		} else {
			json_decref(o);
		}
	}
	json_object_set_new(t, "disks", disk_a);
	json_object_set_new(t, "nics", nic_a);
	json_object_set_new(t, "cr3s", cr3_a);
	return t;
}

static int write_truth(json_t *t)
{
	char tmp[4096];

	if (!cfg.truth_path) {
		json_dumpf(t, stdout, JSON_INDENT(1));
		fputc('\n', stdout);
		fflush(stdout);
		return 0;
	}
	/* a reader polling for the file never sees it half-written */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", cfg.truth_path, getpid());
	if (json_dump_file(t, tmp, JSON_INDENT(1)) < 0 || rename(tmp, cfg.truth_path) < 0) {
		fprintf(stderr, "vmload: --truth %s: cannot write: %s\n", cfg.truth_path, strerror(errno));
		unlink(tmp);
		return -EIO;
	}
	return 0;
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg, int *ok)
{
	int r = pthread_create(t, NULL, fn, arg);

	if (r) {
		fprintf(stderr, "vmload: cannot start a thread: %s\n", strerror(r));
		return -r;
	}
	*ok = 1;
	return 0;
}

int main(int argc, char **argv)
{
	char err[512] = "";
	struct sigaction sa;
	uint64_t start_mono, start_rt, end_rt, deadline, settle_until = 0;
	int r, i, completed = 0, rc = 1, nr_disks_open = 0, nr_nics_open = 0;
	json_t *t;

	r = opts__parse(argc, argv, &cfg);
	if (r) {
		opts__free(&cfg);
		return r > 0 ? 0 : 2;
	}
	if (cfg.inject) {
		char *tap;
		uint64_t count, size;

		opts__free(&cfg);
		if (opts__parse_inject(cfg.inject, &tap, &count, &size))
			return 2;
		rc = nic__inject(tap, count, size) ? 1 : 0;
		free(tap);
		return rc;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick;	/* no SA_RESTART: KVM_RUN must return */
	sigaction(SIGUSR1, &sa, NULL);

	r = vm__open(&vm, cfg.nr_vcpus, GUEST_MEM_SIZE, err, sizeof(err));
	if (r) {
		fprintf(stderr, "vmload: %s\n", err);
		goto out;
	}
	for (i = 0; i < cfg.nr_workloads; i++) {
		const struct workload *w = &cfg.wl[i];

		if (w->kind == WL_DISK) {
			r = disk__open(&disks[w->index], w, err, sizeof(err));
			if (r) {
				fprintf(stderr, "vmload: %s\n", err);
				goto err_devices;
			}
			nr_disks_open++;
		} else if (w->kind == WL_NIC) {
			r = nic__open(&nics[w->index], w, err, sizeof(err));
			if (r) {
				fprintf(stderr, "vmload: %s\n", err);
				goto err_devices;
			}
			nr_nics_open++;
		}
	}
	for (i = 0; i < cfg.nr_vcpus; i++)
		vcpus[i].index = i;
	if (plan())
		goto err_devices;
	for (i = 0; i < cfg.nr_vcpus; i++)
		if (start_thread(&vcpus[i].thread, vcpu_thread, &vcpus[i], &vcpus[i].thread_ok))
			goto err_threads;

	if (cfg.delay_ms) {
		struct timespec ts = { cfg.delay_ms / 1000, (cfg.delay_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}
	start_mono = now_ns(CLOCK_MONOTONIC);
	start_rt = now_ns(CLOCK_REALTIME);
	deadline = start_mono + (uint64_t)(cfg.duration * 1e9);
	pthread_mutex_lock(&g_lock);
	g_started = 1;
	pthread_cond_broadcast(&g_cond);
	pthread_mutex_unlock(&g_lock);
	for (i = 0; i < nr_irqs; i++)
		if (start_thread(&irqs[i].thread, irqs[i].is_hlt ? hlt_thread : irq_thread, &irqs[i],
				 &irqs[i].thread_ok))
			fatal("cannot start interrupt thread");
	for (i = 0; i < cfg.nr_workloads; i++) {
		const struct workload *w = &cfg.wl[i];

		if (w->kind == WL_NIC && w->rx &&
		    start_thread(&rx_threads[w->index], rx_thread, &nics[w->index], &rx_thread_ok[w->index]))
			fatal("cannot start NIC receive thread");
	}

	while (!atomic_load(&g_stop)) {
		struct timespec ts = { 0, 1000000 };
		uint64_t now = now_ns(CLOCK_MONOTONIC);

		cr3_tick(now);
		if (all_done()) {
			/* let the last interrupts reach the guest's handler */
			if (!settle_until)
				settle_until = now + 500000000ull;
			if (irqs_settled() || now >= settle_until) {
				completed = 1;
				break;
			}
		}
		if (now >= deadline)
			break;
		nanosleep(&ts, NULL);
	}
	atomic_store(&g_stop, 1);
	/* finished guests are on their way into the idle HLT they counted:
	 * let them reach it before the kick below ends KVM_RUN */
	for (i = 0; i < cfg.nr_vcpus; i++)
		if (*guest__counter(vm.mem, i, GD_DONE))
			wait_vcpu_asleep(&vcpus[i], 100);
	for (i = 0; i < nr_irqs; i++)
		if (irqs[i].thread_ok)
			pthread_join(irqs[i].thread, NULL);
	for (i = 0; i < MAX_NICS; i++)
		if (rx_thread_ok[i])
			pthread_join(rx_threads[i], NULL);
	for (i = 0; i < cfg.nr_vcpus; i++) {
		while (!atomic_load(&vcpus[i].stopped)) {
			struct timespec ts = { 0, 200000 };

			pthread_kill(vcpus[i].thread, SIGUSR1);
			nanosleep(&ts, NULL);
		}
	}
	end_rt = now_ns(CLOCK_REALTIME);
	if (g_error[0])
		fprintf(stderr, "vmload: %s\n", g_error);
	else if (!completed)
		fprintf(stderr, "vmload: --duration %g s reached before the workloads finished; the truth says what was done\n",
			cfg.duration);
	t = truth(completed && !g_error[0], start_rt, end_rt);
	rc = write_truth(t) || g_error[0] ? 1 : 0;
	json_decref(t);
	if (cfg.linger_ms) {
		struct timespec ts = { cfg.linger_ms / 1000, (cfg.linger_ms % 1000) * 1000000 };

		nanosleep(&ts, NULL);
	}

err_threads:
	pthread_mutex_lock(&g_lock);
	g_quit = 1;
	pthread_cond_broadcast(&g_cond);
	pthread_mutex_unlock(&g_lock);
	atomic_store(&g_stop, 1);
	for (i = 0; i < cfg.nr_vcpus; i++) {
		if (!vcpus[i].thread_ok)
			continue;
		pthread_kill(vcpus[i].thread, SIGUSR1);
		pthread_join(vcpus[i].thread, NULL);
	}
err_devices:
	for (i = 0; i < MAX_DISKS; i++)
		if (i < cfg.nr_disks && disks[i].wl)
			disk__close(&disks[i]);
	for (i = 0; i < MAX_NICS; i++)
		if (i < cfg.nr_nics && nics[i].wl)
			nic__close(&nics[i]);
	for (i = 0; i < nr_irqs; i++) {
		free(irqs[i].subsec);
		free(irqs[i].halted_ns);
	}
	vm__close(&vm);
out:
	opts__free(&cfg);
	(void)nr_disks_open;
	(void)nr_nics_open;
	return rc;
}
