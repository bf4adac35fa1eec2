#include "opts.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct kind_spec {
	const char *opt;
	enum wl_kind kind;
	const char *syntax;
	const char *allowed;	/* space separated, with spaces around */
	const char *required;
};

static const struct kind_spec kinds[] = {
	{ "--pio", WL_PIO, "vcpu=V,count=N[,rate=R][,port=P][,dir=in|out]",
	  " vcpu count rate port dir ", " count " },
	{ "--mmio", WL_MMIO, "vcpu=V,count=N[,rate=R][,addr=A]",
	  " vcpu count rate addr ", " count " },
	{ "--hlt", WL_HLT, "vcpu=V,count=N[,rate=R][,vector=0xNN]",
	  " vcpu count rate vector ", " count " },
	{ "--irq", WL_IRQ,
	  "vcpu=V,vector=0xNN,via=pic|ioapic|msi,period_ms=P,phase_ms=F,count=N[,line=L]",
	  " vcpu vector via period_ms phase_ms count line ", " vector via period_ms count " },
	{ "--cr3", WL_CR3, "vcpu=V,weights=A:B[:C...],duration=S[,unit=K]",
	  " vcpu weights duration unit ", " weights duration " },
	{ "--disk", WL_DISK,
	  "file=PATH,reads=N,writes=M,size=S[,offset=O][,pattern=seq|rand][,span=BYTES][,rate=R][,seed=X][,vcpu=V]"
	  "[,io=sync|aio|uring|uring-wq][,cache=direct|buffered]",
	  " file reads writes size offset pattern span rate seed vcpu io cache ", " file size " },
	{ "--nic", WL_NIC, "tap=NAME,tx=K,size=L[,rate=R][,rx=J][,vcpu=V]",
	  " tap tx size rate rx vcpu ", " tap " },
	{ "--pit", WL_PIT, "hz=H,count=N[,vector=0xNN]", " hz count vector ", " hz count " },
};

const char *opts__via_name(enum irq_via via)
{
	return via == VIA_PIC ? "pic" : via == VIA_IOAPIC ? "ioapic" : "msi";
}

void opts__usage(FILE *out)
{
	fputs(
"usage: vmload [options] [workloads]\n"
"Runs one tiny KVM guest (a micro-VMM on /dev/kvm, in-kernel PIC+IOAPIC+LAPIC)\n"
"that does exactly what the workloads ask, then prints the truth as JSON.\n"
"\n"
"options:\n"
"  --vcpus N          vCPU threads, named 'CPU <n>/KVM' (default 1, max 64)\n"
"  -name guest=NAME   VM name, as QEMU spells it (also -name NAME, --name NAME)\n"
"  -uuid UUID, -id N  VM identities as QEMU (libvirt, OpenStack) and Proxmox pass\n"
"                     them; only on the command line, for kvmscope to find\n"
"  --duration S       stop after S seconds even if workloads are unfinished\n"
"                     (default 60); the truth then says what was really done\n"
"  --delay MS         wait MS after the VM and vCPU threads exist, before the\n"
"                     guest starts (lets tracers attach)\n"
"  --thread-names on|off  name vCPU threads 'CPU <n>/KVM' (on, default) or\n"
"                     leave them unnamed, like QEMU without debug-threads=on\n"
"  --linger MS        stay alive MS after the workloads end (vCPUs stopped,\n"
"                     threads and fds kept); the truth is written before\n"
"  --truth FILE       write the truth JSON to FILE (atomically) instead of stdout\n"
"  --inject tap=NAME,count=J,size=L\n"
"                     helper, no VM: send J Ethernet frames of L bytes out of\n"
"                     host interface NAME (AF_PACKET); feeds a --nic rx=J\n"
"  -h, --help         this text\n"
"\n"
"workloads (repeatable, run in command-line order on their vCPU; numbers may\n"
"be hex; rate R = operations per second, 0 or absent = as fast as possible):\n"
"  --pio vcpu=V,count=N[,rate=R][,port=P][,dir=out|in]\n"
"        N x OUT to (or IN from, dir=in) port P (default 0x3f0), each a\n"
"        userspace I/O exit\n"
"  --mmio vcpu=V,count=N[,rate=R][,addr=A]\n"
"        N x 32-bit write to unbacked address A (default 0xd0000000)\n"
"  --hlt vcpu=V,count=N[,rate=R][,vector=0xNN]\n"
"        N x HLT, each woken by an MSI with vector (default 0x40) raised by\n"
"        vmload once the guest has halted; counted in irqs with via msi\n"
"  --irq vcpu=V,vector=0xNN,via=pic|ioapic|msi,period_ms=P,phase_ms=F,count=N[,line=L]\n"
"        N interrupts, one per P ms at wall-clock phase F ms inside each period\n"
"        (CLOCK_REALTIME). pic: vCPU 0 only, line = vector & 7 (PIC base =\n"
"        vector & ~7); ioapic: line L (default 16+), routed to vCPU V\n"
"  --cr3 vcpu=V,weights=A:B[:C...],duration=S[,unit=K]\n"
"        switch CR3 round-robin between up to 8 page-table roots mapping the\n"
"        same memory, spinning weight*K iterations (K default 1) after each\n"
"        switch, for S seconds; one --cr3 per vCPU\n"
"  --disk file=PATH,reads=N,writes=M,size=S[,offset=O][,pattern=seq|rand]\n"
"         [,span=BYTES][,rate=R][,seed=X][,vcpu=V]\n"
"        PATH (file or block device) opened O_RDWR|O_DIRECT for the whole run;\n"
"        the guest rings a doorbell (port 0x511+2d write, 0x510+2d read, d =\n"
"        disk index) and vmload does the real pwrite/pread of S bytes: first\n"
"        the M writes, then the N reads. seq: offset O + i*S per op type;\n"
"        rand: S-aligned offsets in [O, O+span) (span default: to the end)\n"
"         [,io=sync|aio|uring|uring-wq][,cache=direct|buffered]\n"
"        io: pread/pwrite (sync, default), io_submit of one PREADV/PWRITEV iocb\n"
"        (aio), an io_uring READV/WRITEV (uring), the same forced into an\n"
"        iou-wrk worker with IOSQE_ASYNC (uring-wq); each op is waited for\n"
"        before the guest goes on. cache=buffered opens PATH without O_DIRECT\n"
"  --nic tap=NAME,tx=K,size=L[,rate=R][,rx=J][,vcpu=V]\n"
"        opens tap NAME (IFF_TAP|IFF_NO_PI, created if absent, IPv6 off, set\n"
"        up); the guest sends K frames of L bytes (60..1514, Ethernet header\n"
"        included: broadcast dst, 02:6b:76:6d:00:xx src, type 0x88b5) via\n"
"        doorbell port 0x530+n; vmload counts every frame read from the tap as\n"
"        guest rx and the workload ends after J (send them with --inject)\n"
"  --pit hz=H,count=N[,vector=0xNN]\n"
"        KVM's in-kernel PIT (KVM_CREATE_PIT2): vCPU 0's guest sets the PIC's\n"
"        vector base with ICW2 (vector, default 0x20, a multiple of 8), unmasks\n"
"        IRQ0 only, programs PIT channel 0 (ports 0x43/0x40) as a rate\n"
"        generator at H Hz (19..2000) and waits for N timer interrupts; it EOIs\n"
"        all but the last, so the PIT (which re-raises only after an EOI)\n"
"        raises exactly N. Not with --irq via=pic, or via=ioapic line 0 or 2\n"
"\n"
"truth JSON: pid, name, completed, vcpus[] (index, tid, pio, mmio, hlt,\n"
"idle_hlt, irqs, irq_vectors, cr3_switches, io_exits, mmio_exits), irqs[]\n"
"(vcpu, vector, via, line, count, subsecond_ms[]; for a --hlt also\n"
"halted_ns[]: CLOCK_REALTIME ns each HLT was seen counted, just before it\n"
"halts), disk/disks, nic/nics, cr3,\n"
"pit (vcpu, hz, divisor, vector, source, count asked, received by the guest).\n"
"pio/mmio are userspace exits counted by vmload per port/address; hlt, irqs\n"
"and cr3_switches are counted by the guest itself.\n"
"\n"
"exit status: 0 when the run ended (all done, or --duration reached: see\n"
"\"completed\"), 1 on a KVM, device or guest error (truth still written, with\n"
"\"error\"), 2 on a bad command line.\n", out);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!*s || *s == '-')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

static int parse_double(const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || *end || !*s || !isfinite(*out) || *out < 0)
		return -EINVAL;
	return 0;
}

static int has_word(const char *list, const char *word)
{
	char pat[64];

	snprintf(pat, sizeof(pat), " %s ", word);
	return strstr(list, pat) != NULL;
}

static int set_key(struct workload *w, const char *key, const char *val)
{
	if (!strcmp(key, "vcpu")) {
		uint64_t v;

		if (parse_u64(val, &v) || v >= VM_MAX_VCPUS)
			return -EINVAL;
		w->vcpu = (int)v;
		return 0;
	}
	if (!strcmp(key, "count")) return parse_u64(val, &w->count);
	if (!strcmp(key, "rate")) return parse_double(val, &w->rate);
	if (!strcmp(key, "port")) return parse_u64(val, &w->port);
	if (!strcmp(key, "dir")) {
		if (strcmp(val, "in") && strcmp(val, "out"))
			return -EINVAL;
		w->pio_in = !strcmp(val, "in");
		return 0;
	}
	if (!strcmp(key, "addr")) return parse_u64(val, &w->addr);
	if (!strcmp(key, "vector")) return parse_u64(val, &w->vector);
	if (!strcmp(key, "period_ms")) return parse_u64(val, &w->period_ms);
	if (!strcmp(key, "phase_ms")) return parse_u64(val, &w->phase_ms);
	if (!strcmp(key, "unit")) return parse_u64(val, &w->unit);
	if (!strcmp(key, "duration")) return parse_double(val, &w->duration);
	if (!strcmp(key, "reads")) return parse_u64(val, &w->reads);
	if (!strcmp(key, "writes")) return parse_u64(val, &w->writes);
	if (!strcmp(key, "size")) return parse_u64(val, &w->size);
	if (!strcmp(key, "offset")) return parse_u64(val, &w->offset);
	if (!strcmp(key, "span")) return parse_u64(val, &w->span);
	if (!strcmp(key, "seed")) return parse_u64(val, &w->seed);
	if (!strcmp(key, "tx")) return parse_u64(val, &w->tx);
	if (!strcmp(key, "rx")) return parse_u64(val, &w->rx);
	if (!strcmp(key, "hz")) return parse_u64(val, &w->hz);
	if (!strcmp(key, "line")) {
		uint64_t v;

		if (parse_u64(val, &v) || v > 23)
			return -EINVAL;
		w->line = (int64_t)v;
		return 0;
	}
	if (!strcmp(key, "via")) {
		if (!strcmp(val, "pic")) w->via = VIA_PIC;
		else if (!strcmp(val, "ioapic")) w->via = VIA_IOAPIC;
		else if (!strcmp(val, "msi")) w->via = VIA_MSI;
		else return -EINVAL;
		return 0;
	}
	if (!strcmp(key, "io")) {
		if (!strcmp(val, "sync")) w->io = DISK_IO_SYNC;
		else if (!strcmp(val, "aio")) w->io = DISK_IO_AIO;
		else if (!strcmp(val, "uring")) w->io = DISK_IO_URING;
		else if (!strcmp(val, "uring-wq")) w->io = DISK_IO_URING_WQ;
		else return -EINVAL;
		return 0;
	}
	if (!strcmp(key, "cache")) {
		if (!strcmp(val, "direct")) w->buffered = 0;
		else if (!strcmp(val, "buffered")) w->buffered = 1;
		else return -EINVAL;
		return 0;
	}
	if (!strcmp(key, "pattern")) {
		if (!strcmp(val, "seq")) w->rand = 0;
		else if (!strcmp(val, "rand")) w->rand = 1;
		else return -EINVAL;
		return 0;
	}
	if (!strcmp(key, "file") || !strcmp(key, "tap")) {
		char **dst = key[0] == 'f' ? &w->path : &w->tap;

		if (!*val)
			return -EINVAL;
		free(*dst);	/* a repeated key replaces the earlier value */
		*dst = strdup(val);
		return *dst ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "weights")) {
		const char *p = val;

		w->nr_weights = 0;
		while (*p) {
			char *end;
			unsigned long long v;

			if (w->nr_weights == GUEST_MAX_ROOTS || *p < '0' || *p > '9')
				return -EINVAL;
			v = strtoull(p, &end, 10);
			if (v == 0 || (*end && *end != ':'))
				return -EINVAL;
			w->weights[w->nr_weights++] = v;
			p = *end ? end + 1 : end;
			if (*end == ':' && !*p)
				return -EINVAL;
		}
		return w->nr_weights >= 1 ? 0 : -EINVAL;
	}
	return -ENOENT;
}

static int fail(const struct kind_spec *k, const char *fmt, const char *what)
{
	fprintf(stderr, "vmload: %s: ", k->opt);
	fprintf(stderr, fmt, what);
	fprintf(stderr, " (expected %s %s)\n", k->opt, k->syntax);
	return -EINVAL;
}

/* Fills *w from "key=value,..." for kind k, checking keys, values and the
 * ranges a guest can honour. */
static int parse_workload(const struct kind_spec *k, const char *spec, struct workload *w)
{
	char buf[1024], *tok, *save = NULL;
	char seen[512] = " ";

	memset(w, 0, sizeof(*w));
	w->kind = k->kind;
	w->line = -1;
	w->unit = 1;
	w->seed = 1;
	w->port = 0x3f0;
	w->addr = 0xd0000000;
	w->vector = k->kind == WL_HLT ? 0x40 : k->kind == WL_PIT ? 0x20 : 0;
	if (strlen(spec) >= sizeof(buf))
		return fail(k, "spec too long: '%.40s...'", spec);
	strcpy(buf, spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		int r;

		if (!eq)
			return fail(k, "'%s' is not key=value", tok);
		*eq = '\0';
		if (!has_word(k->allowed, tok))
			return fail(k, "unknown key '%s'", tok);
		r = set_key(w, tok, eq + 1);
		if (r == -ENOMEM)
			return r;
		if (r) {
			*eq = '=';
			return fail(k, "bad value in '%s'", tok);
		}
		if (strlen(seen) + strlen(tok) + 2 < sizeof(seen)) {
			strcat(seen, tok);
			strcat(seen, " ");
		}
	}
	for (const char *p = k->required; *p; ) {
		char word[32];
		int n = 0;

		while (*p == ' ')
			p++;
		while (*p && *p != ' ' && n < 31)
			word[n++] = *p++;
		word[n] = '\0';
		if (n && !has_word(seen, word))
			return fail(k, "missing key '%s'", word);
	}
	if (!strcmp(k->opt, "--inject"))
		return 0;	/* checked by opts__parse_inject */
	switch (k->kind) {
	case WL_PIO:
		if (w->port > 0xffff)
			return fail(k, "port %s is not 0..0xffff", "");
		if ((w->port >= 0x510 && w->port < 0x540) || w->port == GUEST_FAULT_PORT ||
		    w->port == 0x20 || w->port == 0x21 || w->port == 0xa0 || w->port == 0xa1 ||
		    w->port == 0x4d0 || w->port == 0x4d1)
			return fail(k, "port is reserved (PIC, ELCR, vmload doorbells 0x510-0x53f, 0x5ff)%s", "");
		/* fall through */
	case WL_MMIO:
		if (k->kind == WL_MMIO &&
		    (w->addr < GUEST_MEM_SIZE || w->addr > 0xfffffffcull || (w->addr & 3) ||
		     (w->addr >= 0xfec00000 && w->addr < 0xfec01000) ||
		     (w->addr >= 0xfee00000 && w->addr < 0xfee01000)))
			return fail(k, "addr must be 4-byte aligned, above guest RAM (8 MiB), below 4 GiB, not IOAPIC/LAPIC%s", "");
		/* fall through */
	case WL_HLT:
		if (w->count < 1 || w->count > 0xffffffffull)
			return fail(k, "count must be 1..4294967295%s", "");
		if (k->kind == WL_HLT && (w->vector < 0x20 || w->vector > 0xfe))
			return fail(k, "vector must be 0x20..0xfe%s", "");
		break;
	case WL_IRQ:
		if (w->vector < 0x20 || w->vector > 0xfe)
			return fail(k, "vector must be 0x20..0xfe%s", "");
		if (w->count < 1)
			return fail(k, "count must be >= 1%s", "");
		if (w->period_ms < 1 || w->phase_ms >= w->period_ms)
			return fail(k, "need period_ms >= 1 and phase_ms < period_ms%s", "");
		if (w->via == VIA_PIC) {
			if (w->vcpu != 0)
				return fail(k, "via=pic delivers through vCPU 0's LINT0 only%s", "");
			if ((w->vector & 7) == 2)
				return fail(k, "via=pic: vector & 7 == 2 is the cascade line%s", "");
			if (w->line >= 0 && w->line != (int64_t)(w->vector & 7))
				return fail(k, "via=pic: line must equal vector & 7%s", "");
			w->line = w->vector & 7;
		}
		if (w->via == VIA_MSI && w->line >= 0)
			return fail(k, "via=msi takes no line%s", "");
		break;
	case WL_CR3:
		if (w->duration <= 0)
			return fail(k, "duration must be > 0 seconds%s", "");
		for (int j = 0; j < w->nr_weights; j++)
			if (w->unit < 1 || w->weights[j] * w->unit > 0xffffffffull)
				return fail(k, "weight*unit must be 1..4294967295%s", "");
		break;
	case WL_DISK:
		if (w->size < 512 || w->size % 512 || w->size > (64u << 20))
			return fail(k, "size must be a multiple of 512, at most 64 MiB (O_DIRECT)%s", "");
		if (w->offset % 512)
			return fail(k, "offset must be a multiple of 512 (O_DIRECT)%s", "");
		if (w->reads + w->writes < 1 || w->reads > 0xffffffffull || w->writes > 0xffffffffull)
			return fail(k, "need reads + writes >= 1%s", "");
		if (w->span && (w->span < w->size || w->span % w->size))
			return fail(k, "span must be a multiple of size%s", "");
		break;
	case WL_NIC:
		if (strlen(w->tap) >= 16)
			return fail(k, "tap name '%s' is longer than 15 characters", w->tap);
		if (w->tx > 0xffffffffull)
			return fail(k, "tx must be < 2^32%s", "");
		if (w->tx && (w->size < 60 || w->size > 1514))
			return fail(k, "size must be 60..1514 bytes (an Ethernet frame without FCS)%s", "");
		if (!w->tx && !w->rx)
			return fail(k, "need tx >= 1 or rx >= 1%s", "");
		break;
	case WL_PIT:
		if (w->hz < 19 || w->hz > 2000)
			return fail(k, "hz must be 19..2000 (a 16-bit PIT divisor; an emulated guest)%s", "");
		if (w->count < 1 || w->count > 0xffffffffull)
			return fail(k, "count must be 1..4294967295%s", "");
		if (w->vector < 0x20 || w->vector > 0xf8 || (w->vector & 7))
			return fail(k, "vector must be a multiple of 8 in 0x20..0xf8 (the PIC's ICW2 base, IRQ0)%s", "");
		break;
	}
	return 0;
}

static void workload_free(struct workload *w)
{
	free(w->path);
	free(w->tap);
	w->path = w->tap = NULL;
}

void opts__free(struct config *cfg)
{
	for (int i = 0; i < MAX_WORKLOADS; i++)
		workload_free(&cfg->wl[i]);
	free(cfg->name_owned);
	cfg->name_owned = NULL;
	cfg->name = NULL;
}

int opts__parse_inject(const char *spec, char **tap, uint64_t *count, uint64_t *size)
{
	static const struct kind_spec k = { "--inject", WL_NIC, "tap=NAME,count=J,size=L",
					    " tap count size ", " tap count size " };
	struct workload w;
	int r = parse_workload(&k, spec, &w);

	if (!r && (w.size < 60 || w.size > 1514))
		r = fail(&k, "size must be 60..1514 bytes%s", "");
	if (r) {
		workload_free(&w);
		return r;
	}
	*tap = w.tap;
	*count = w.count;
	*size = w.size;
	return 0;
}

static int take_value(int argc, char **argv, int *i, const char *opt, const char **val)
{
	size_t n = strlen(opt);

	if (!strncmp(argv[*i], opt, n) && argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return 1;
	}
	if (strcmp(argv[*i], opt))
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "vmload: %s needs a value (see vmload --help)\n", opt);
		return -1;
	}
	*val = argv[++*i];
	return 1;
}

int opts__parse(int argc, char **argv, struct config *cfg)
{
	const char *val;
	int i, r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->nr_vcpus = 1;
	cfg->duration = 60;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		size_t k;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			opts__usage(stdout);
			return 1;
		}
		if ((r = take_value(argc, argv, &i, "--vcpus", &val))) {
			uint64_t n;

			if (r < 0)
				return -EINVAL;
			if (parse_u64(val, &n) || n < 1 || n > VM_MAX_VCPUS) {
				fprintf(stderr, "vmload: --vcpus '%s': expected 1..%d\n", val, VM_MAX_VCPUS);
				return -EINVAL;
			}
			cfg->nr_vcpus = (int)n;
			continue;
		}
		if ((r = take_value(argc, argv, &i, "-name", &val)) ||
		    (r = take_value(argc, argv, &i, "--name", &val))) {
			if (r < 0)
				return -EINVAL;
			/* QEMU syntax: -name guest=NAME[,opts] or -name NAME. */
			if (!strncmp(val, "guest=", 6)) {
				char *n = strdup(val + 6), *comma;

				if (!n)
					return -ENOMEM;
				comma = strchr(n, ',');
				if (comma)
					*comma = '\0';
				free(cfg->name_owned);
				cfg->name = cfg->name_owned = n;
			} else {
				cfg->name = val;
			}
			if (!*cfg->name) {
				fprintf(stderr, "vmload: -name: empty name (expected -name guest=NAME or --name NAME)\n");
				return -EINVAL;
			}
			continue;
		}
		/* identities only kvmscope's discovery reads, from the command
		 * line, as it does for QEMU (-uuid) and Proxmox's QEMU (-id) */
		if ((r = take_value(argc, argv, &i, "-uuid", &val)) ||
		    (r = take_value(argc, argv, &i, "-id", &val))) {
			if (r < 0)
				return -EINVAL;
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--duration", &val))) {
			if (r < 0)
				return -EINVAL;
			if (parse_double(val, &cfg->duration) || cfg->duration <= 0) {
				fprintf(stderr, "vmload: --duration '%s': expected seconds > 0\n", val);
				return -EINVAL;
			}
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--delay", &val))) {
			if (r < 0 || parse_u64(val, &cfg->delay_ms)) {
				fprintf(stderr, "vmload: --delay: expected milliseconds\n");
				return -EINVAL;
			}
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--thread-names", &val))) {
			if (r < 0 || (strcmp(val, "on") && strcmp(val, "off"))) {
				fprintf(stderr, "vmload: --thread-names: expected on or off\n");
				return -EINVAL;
			}
			cfg->no_thread_names = !strcmp(val, "off");
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--linger", &val))) {
			if (r < 0 || parse_u64(val, &cfg->linger_ms)) {
				fprintf(stderr, "vmload: --linger: expected milliseconds\n");
				return -EINVAL;
			}
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--truth", &val))) {
			if (r < 0)
				return -EINVAL;
			cfg->truth_path = val;
			continue;
		}
		if ((r = take_value(argc, argv, &i, "--inject", &val))) {
			if (r < 0)
				return -EINVAL;
			cfg->inject = val;
			continue;
		}
		for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			r = take_value(argc, argv, &i, kinds[k].opt, &val);
			if (r)
				break;
		}
		if (r < 0)
			return -EINVAL;
		if (r > 0) {
			struct workload *w;

			if (cfg->nr_workloads == MAX_WORKLOADS) {
				fprintf(stderr, "vmload: at most %d workloads\n", MAX_WORKLOADS);
				return -EINVAL;
			}
			w = &cfg->wl[cfg->nr_workloads];
			r = parse_workload(&kinds[k], val, w);
			if (r)
				return r;
			if (w->kind == WL_DISK) {
				if (cfg->nr_disks == MAX_DISKS) {
					fprintf(stderr, "vmload: --disk: at most %d disks\n", MAX_DISKS);
					return -EINVAL;
				}
				w->index = cfg->nr_disks++;
			}
			if (w->kind == WL_NIC) {
				if (cfg->nr_nics == MAX_NICS) {
					fprintf(stderr, "vmload: --nic: at most %d nics\n", MAX_NICS);
					return -EINVAL;
				}
				w->index = cfg->nr_nics++;
			}
			cfg->nr_workloads++;
			continue;
		}
		fprintf(stderr, "vmload: unknown option '%s' (see vmload --help)\n", a);
		return -EINVAL;
	}
	for (i = 0; i < cfg->nr_workloads; i++) {
		const struct workload *w = &cfg->wl[i];

		if (w->vcpu >= cfg->nr_vcpus) {
			fprintf(stderr, "vmload: %s workload #%d names vcpu=%d but --vcpus is %d\n",
				kinds[w->kind].opt, i + 1, w->vcpu, cfg->nr_vcpus);
			return -EINVAL;
		}
		for (int j = 0; j < i; j++) {
			const struct workload *o = &cfg->wl[j];

			if (w->kind == WL_PIT || o->kind == WL_PIT) {
				const struct workload *irq = w->kind == WL_IRQ ? w : o->kind == WL_IRQ ? o : NULL;

				if (w->kind == o->kind) {
					fprintf(stderr, "vmload: --pit: a VM has one PIT\n");
					return -EINVAL;
				}
				if (irq && (irq->via == VIA_PIC ||
					    (irq->via == VIA_IOAPIC && (irq->line == 0 || irq->line == 2)))) {
					fprintf(stderr, "vmload: --pit owns the PIC (and IOAPIC pins 0 and 2): not with --irq via=pic or via=ioapic,line=0|2\n");
					return -EINVAL;
				}
			}
			if (w->kind == WL_CR3 && o->kind == WL_CR3 && o->vcpu == w->vcpu) {
				fprintf(stderr, "vmload: --cr3: vCPU %d already has a --cr3 workload\n", w->vcpu);
				return -EINVAL;
			}
			if (w->kind == WL_IRQ && o->kind == WL_IRQ && w->via == VIA_PIC &&
			    o->via == VIA_PIC && (w->vector & ~7ull) != (o->vector & ~7ull)) {
				fprintf(stderr, "vmload: --irq via=pic: all PIC vectors must share one base (vector & ~7): 0x%llx vs 0x%llx\n",
					(unsigned long long)o->vector, (unsigned long long)w->vector);
				return -EINVAL;
			}
		}
	}
	return 0;
}
