/* Engine and drain throughput, on the real code paths (libkvmscope.a).
 *
 *   engine_bench ingest SECONDS [DECOMPOSITION]
 *     feeds SECONDS seconds of drained vm.exits records, as the exits
 *     collector emits them (one record per VM, vCPU, reason and latency
 *     bucket per second: 100 VMs x 4 vCPUs x 10 reasons x 20 buckets =
 *     80000 records a second), through instr__ingest. Prints records/s on
 *     one core and the bytes the instrumentation holds per slot and cell.
 *   engine_bench drain N
 *     fills a BPF per-CPU hash with N entries shaped like the exits
 *     collector's and times collector__drain_percpu_hash over it (root).
 *
 * Output: "name value" lines, for bench/engine.sh.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "collectors/collector.h"
#include "engine/instr.h"
#include "exits_types.h"

#define NVMS		100
#define NVCPUS		4
#define NREASONS	10
#define NLAT		20
#define PER_SEC		(NVMS * NVCPUS * NREASONS * NLAT)
#define T0		1700000000

static const char *reasons[NREASONS] = {
	"IO_INSTRUCTION", "EPT_VIOLATION", "EPT_MISCONFIG", "HLT", "MSR_WRITE",
	"MSR_READ", "EXTERNAL_INTERRUPT", "PREEMPTION_TIMER", "CPUID", "PAUSE_INSTRUCTION",
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t bench_clock(void *ctx)
{
	return *(const int64_t *)ctx;
}

static int bench_ingest(int seconds, const char *decomp)
{
	char vms[NVMS][16], vcpus[NVCPUS][8], err[256];
	char spec_text[512];
	struct instr *in = NULL;
	struct instr_stats st;
	json_t *spec;
	int64_t clock_now = T0 + seconds;
	uint64_t n = 0;
	double t0, dt;
	int ret;

	for (int v = 0; v < NVMS; v++)
		snprintf(vms[v], sizeof(vms[v]), "vm%03d", v);
	for (int c = 0; c < NVCPUS; c++)
		snprintf(vcpus[c], sizeof(vcpus[c]), "%d", c);
	snprintf(spec_text, sizeof(spec_text),
		 "{\"metric\": \"vm.exits\", \"decomposition\": \"%s\", \"granularity\": 1,"
		 " \"retention-time\": %d}", decomp, seconds);
	spec = json_loads(spec_text, 0, NULL);
	if (!spec)
		return -EINVAL;
	ret = instr__new(spec, &in, err, sizeof(err));
	json_decref(spec);
	if (ret) {
		fprintf(stderr, "engine_bench: %s\n", err);
		return ret;
	}
	instr__set_clock(in, bench_clock, &clock_now);

	t0 = now_s();
	for (int s = 0; s < seconds; s++) {
		struct record rec = { .metric = METRIC_VM_EXITS, .time = T0 + s };

		rec.str[F_HOSTNAME] = "host1";
		rec.str[F_EXITS_CLASS] = "iox";
		for (int v = 0; v < NVMS; v++)
			for (int c = 0; c < NVCPUS; c++)
				for (int r = 0; r < NREASONS; r++)
					for (int l = 0; l < NLAT; l++) {
						rec.str[F_VM] = vms[v];
						rec.str[F_EXITS_VCPU] = vcpus[c];
						rec.str[F_EXITS_REASON] = reasons[r];
						/* the bucket lower bound, as drained */
						rec.num[F_EXITS_LATENCY] = 1000 + 900 * (uint64_t)l;
						rec.num[F_EXITS_SUBSECOND] = 10 * (uint64_t)(l * 5 % 100);
						rec.value = 1 + (v + c + r + l) % 7;
						ret = instr__ingest(in, &rec);
						if (ret)
							goto out;
						n++;
					}
	}
	dt = now_s() - t0;
	instr__stats(in, &st);
	printf("records %llu\n", (unsigned long long)n);
	printf("seconds %.6f\n", dt);
	printf("records_per_s %.0f\n", n / dt);
	printf("ns_per_record %.1f\n", dt * 1e9 / n);
	printf("keys %llu\n", (unsigned long long)st.keys);
	printf("bytes %llu\n", (unsigned long long)st.bytes);
	printf("bytes_per_slot %.0f\n", (double)st.bytes / seconds);
	/* a cell: one key's count, or one key's bucket, in one slot */
	printf("cells_per_slot %llu\n", (unsigned long long)st.keys * (instr__numeric_field(in) ? NLAT : 1));
	printf("bytes_per_cell %.1f\n",
	       (double)st.bytes / seconds / (double)(st.keys * (instr__numeric_field(in) ? NLAT : 1)));
	if (st.dropped_old || st.dropped_future || st.filtered) {
		fprintf(stderr, "engine_bench: records dropped (old %llu, future %llu, filtered %llu)\n",
			(unsigned long long)st.dropped_old, (unsigned long long)st.dropped_future,
			(unsigned long long)st.filtered);
		ret = -EPROTO;
	}
out:
	instr__free(in);
	return ret;
}

static int count_entry(const void *key, const uint64_t *vals, void *ctx)
{
	uint64_t *sum = ctx;

	(void)key;
	*sum += vals[0];
	return 0;
}

static int bench_drain(int n)
{
	int ncpus = libbpf_num_possible_cpus();
	uint64_t *vals = NULL, sum = 0;
	struct exits_key key = {};
	double t0, dt;
	int fd, ret;

	if (ncpus <= 0)
		return -EINVAL;
	fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_HASH, "bench_exits", sizeof(key), sizeof(uint64_t),
			    (uint32_t)n, NULL);
	if (fd < 0) {
		fprintf(stderr, "engine_bench: bpf_map_create: %s (needs root)\n", strerror(errno));
		return -errno;
	}
	vals = calloc((size_t)ncpus, sizeof(*vals));
	if (!vals) {
		ret = -ENOMEM;
		goto out;
	}
	for (int c = 0; c < ncpus; c++)
		vals[c] = 1;
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		key.sec = 100 + (uint32_t)(i % 2);
		key.tgid = 1000 + (uint32_t)(i / 800);
		key.tid = key.tgid + (uint32_t)(i / 200 % 4);
		key.vcpu = i / 200 % 4;
		key.reason = (uint32_t)(i / 20 % 10);
		key.latency = 1000 + 900 * (uint64_t)(i % 20);
		if (bpf_map_update_elem(fd, &key, vals, BPF_NOEXIST)) {
			ret = -errno;
			fprintf(stderr, "engine_bench: filling entry %d: %s\n", i, strerror(errno));
			goto out;
		}
	}
	printf("fill_per_s %.0f\n", n / (now_s() - t0));
	t0 = now_s();
	ret = collector__drain_percpu_hash(fd, sizeof(key), 1, UINT32_MAX, count_entry, &sum);
	dt = now_s() - t0;
	if (ret < 0)
		goto out;
	if (ret != n || sum != (uint64_t)n * (uint64_t)ncpus) {
		fprintf(stderr, "engine_bench: drained %d entries summing %llu, expected %d and %llu\n",
			ret, (unsigned long long)sum, n, (unsigned long long)n * ncpus);
		ret = -EPROTO;
		goto out;
	}
	printf("entries %d\n", n);
	printf("cpus %d\n", ncpus);
	printf("drain_seconds %.6f\n", dt);
	printf("entries_per_s %.0f\n", n / dt);
	printf("ns_per_entry %.0f\n", dt * 1e9 / n);
	ret = 0;
out:
	free(vals);
	close(fd);
	return ret;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 0;
	int ret;

	if (argc < 3 || n <= 0 || (strcmp(argv[1], "ingest") && strcmp(argv[1], "drain"))) {
		fprintf(stderr, "usage: engine_bench ingest SECONDS [DECOMPOSITION] | drain ENTRIES\n");
		return 2;
	}
	if (!strcmp(argv[1], "ingest"))
		ret = bench_ingest(n, argc > 3 ? argv[3] : "vm,vcpu,reason,latency");
	else
		ret = bench_drain(n);
	if (ret)
		fprintf(stderr, "engine_bench: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}
