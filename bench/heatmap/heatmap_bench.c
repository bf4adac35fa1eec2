/* Heatmap query costs on the real code paths (libkvmscope.a), without HTTP.
 *
 *   heatmap_bench [ROUNDS]
 *
 * One vm.exits instrumentation decomposed by vm and latency, 1-second
 * slots, one hour retained, every slot holding 10 VMs x 18 latency buckets
 * (the shape of bench/query.sh, fed through instr__ingest). Timed, median
 * and max of ROUNDS runs each, as the agent serves them:
 *   image_10m    a cold 600x300 image of the last 10 minutes, 100 buckets,
 *                decompose_all, rank colouring: copy under the lock, render,
 *                PNG, base64
 *   image_1h     the same over the whole hour
 *   details      heatmap/details of one pixel (10 minutes)
 *   average, percentile   the overlays (10 minutes)
 *   refresh      the 10-minute image again after one more second came in
 *                (a live panel: through the cache of render/heatmap_live.h,
 *                which copies and draws only the new column)
 *   repeat       the same image asked again with nothing new (what the
 *                other viewers of a live panel get within the second)
 *   lock_*       the longest hold of the agent's lock by each (the copy; the
 *                agent copies up to 100000 cells per hold)
 *   floor_10m    a tight C loop drawing the same image from the same typed
 *                cells (bucket spread precomputed, linear colour, no key
 *                table, PNG as the agent writes it): what the machine can
 *                do, for comparison
 * Built with -DHEATMAP_JSON_INPUT against a tree whose renderer reads CA JSON
 * slots (kvmscope before the typed window), it times that path instead, so
 * that before and after can be compared in one run (bench/heatmap.sh).
 *
 * Output: "name median_ms max_ms" lines, then "png_bytes N".
 *
 *   heatmap_bench dump FILE
 *     writes what the requests answer (the images' RGB pixels, details,
 *     average, percentile) to FILE, so that two builds can be compared
 *     byte for byte.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "engine/instr.h"
#include "render/base64.h"
#include "render/heatmap.h"
#include "render/png.h"
#ifndef HEATMAP_JSON_INPUT
#include "render/heatmap_live.h"
#endif

#define NVMS	10
#define NLAT	18
#define HOUR	3600
#define T0	1700000000

static int64_t clock_now = T0 + HOUR;
static size_t png_bytes;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int64_t bench_clock(void *ctx)
{
	return *(const int64_t *)ctx;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int feed(struct instr *in, int64_t t)
{
	static char vms[NVMS][8];
	struct record rec = { .metric = METRIC_VM_EXITS, .time = t };

	rec.str[F_HOSTNAME] = "host1";
	rec.str[F_EXITS_CLASS] = "iox";
	rec.str[F_EXITS_REASON] = "IO_INSTRUCTION";
	rec.str[F_EXITS_VCPU] = "0";
	for (int v = 0; v < NVMS; v++) {
		snprintf(vms[v], sizeof(vms[v]), "vm%02d", v);
		rec.str[F_VM] = vms[v];
		for (int l = 0; l < NLAT; l++) {
			/* bucket lower bounds 1000, 1500, ... (as gen_state.py) */
			rec.num[F_EXITS_LATENCY] = 1000 + 500 * (uint64_t)l;
			rec.value = 1 + (uint64_t)((t * 7 + v * 13 + l) % 50);
			if (instr__ingest(in, &rec))
				return -ENOMEM;
		}
	}
	return 0;
}

static void params(struct heatmap_params *p)
{
	heatmap_params__init(p);
	p->width = 600;
	p->height = 300;
	p->nbuckets = 100;
	p->decompose_all = 1;
	p->coloring = COLORING_RANK;
}

/* The slots of [start, start + n), as the agent copies them under its lock. */
#ifdef HEATMAP_JSON_INPUT
struct copy {
	struct heatmap_slot *slots;
	struct heatmap_input in;
	size_t n;
};

static int copy_out(struct instr *in, int64_t start, size_t n, struct copy *c)
{
	c->slots = calloc(n, sizeof(*c->slots));
	c->n = n;
	if (!c->slots)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		c->slots[i].start_time = start + (int64_t)i;
		c->slots[i].value = instr__value(in, start + (int64_t)i);
	}
	c->in = (struct heatmap_input){ c->slots, n, 1 };
	return 0;
}

static int copy_finish(struct copy *c)
{
	(void)c;
	return 0;
}

static void copy_free(struct copy *c)
{
	for (size_t i = 0; i < c->n; i++)
		json_decref((json_t *)c->slots[i].value);
	free(c->slots);
}
#else
struct copy {
	struct dist_window w;
	struct heatmap_input in;
};

/* in pieces of 100000 cells, as the agent does (HEATMAP_COPY_CELLS); the
 * lock time reported is the longest piece */
static double piece_ms;

static int copy_out(struct instr *in, int64_t start, size_t n, struct copy *c)
{
	size_t done = 0;
	long k;

	dist_window__init(&c->w, start, 1);
	piece_ms = 0;
	while (done < n) {
		double t0 = now_ms();

		k = instr__window_append(in, start + (int64_t)done, n - done, 100000, &c->w);
		if (k <= 0)
			return -ENOMEM;
		done += (size_t)k;
		if (now_ms() - t0 > piece_ms)
			piece_ms = now_ms() - t0;
	}
	return 0;
}

static int copy_finish(struct copy *c)
{
	c->in = (struct heatmap_input){ &c->w, 0, c->w.nslots };
	return dist_window__finish(&c->w);
}

static void copy_free(struct copy *c)
{
	dist_window__free(&c->w);
}
#endif

enum op { OP_IMAGE, OP_DETAILS, OP_AVERAGE, OP_PERCENTILE };

static FILE *dump;

/* One request: returns its total time; *lock_ms the copy's. */
static double request(struct instr *in, int64_t dur, enum op op, double *lock_ms)
{
	struct heatmap_params p;
	struct heatmap *hm = NULL;
	struct copy c;
	unsigned char *png = NULL;
	char *b64 = NULL;
	json_t *out = NULL;
	size_t len = 0;
	double t0 = now_ms(), t1;
	int rc;

	memset(&c, 0, sizeof(c));
	params(&p);
	rc = copy_out(in, clock_now - dur, (size_t)dur, &c);
	t1 = now_ms();
	if (!rc)
		rc = copy_finish(&c);
	if (!rc) {
		switch (op) {
		case OP_IMAGE:
			rc = heatmap__build(&c.in, &p, &hm);
			if (!rc && dump)
				fwrite(hm->rgb, 3, (size_t)hm->width * hm->height, dump);
			if (!rc)
				rc = png__encode_rgb(hm->rgb, hm->width, hm->height, &png, &len);
			if (!rc)
				rc = base64__encode(png, len, &b64);
			if (!rc)
				png_bytes = len;
			break;
		case OP_DETAILS:
			rc = heatmap__details(&c.in, &p, 300, 150, &out);
			break;
		case OP_AVERAGE:
			rc = heatmap__average(&c.in, &p, &out);
			break;
		case OP_PERCENTILE:
			rc = heatmap__percentile(&c.in, &p, 95, &out);
			break;
		}
	}
	if (rc) {
		fprintf(stderr, "heatmap_bench: request failed: %d (%s)\n", rc, heatmap__last_error());
		exit(1);
	}
	if (out && dump) {
		json_dumpf(out, dump, JSON_COMPACT | JSON_REAL_PRECISION(17));
		fputc('\n', dump);
	}
	json_decref(out);
	free(b64);
	free(png);
	heatmap__free(hm);
	copy_free(&c);
#ifdef HEATMAP_JSON_INPUT
	*lock_ms = t1 - t0;
#else
	*lock_ms = piece_ms;
	(void)t1;
#endif
	return now_ms() - t0;
}

#ifndef HEATMAP_JSON_INPUT
/* A live panel's image, as the agent serves it: the copy under the lock in
 * pieces of 100000 cells, then the drawing. Returns the total time; *lock_ms
 * the longest piece. */
static double live_request(struct instr *in, int64_t dur, double *lock_ms, FILE *out)
{
	struct heatmap_params p;
	struct heatmap_live_req q;
	struct heatmap_live_image im;
	double t0 = now_ms();
	size_t done = 0;
	long k;

	params(&p);
	*lock_ms = 0;
	if (heatmap_live__begin(&q, instr__uid(in), &p, clock_now - dur, 1, (size_t)dur))
		exit(1);
	while (done < (size_t)dur) {
		double t1 = now_ms();

		k = heatmap_live__copy(&q, in, done, 100000);
		if (k <= 0)
			exit(1);
		done += (size_t)k;
		if (now_ms() - t1 > *lock_ms)
			*lock_ms = now_ms() - t1;
	}
	if (heatmap_live__image(&q, &im)) {
		fprintf(stderr, "heatmap_bench: live image failed (%s)\n", heatmap__last_error());
		exit(1);
	}
	heatmap_live__end(&q);
	if (out)
		fprintf(out, "%s\n", im.image);
	heatmap_live_image__free(&im);
	return now_ms() - t0;
}

/* The base64 PNG of a cold render, for comparison with the live one. */
static char *cold_b64(struct instr *in, int64_t dur)
{
	struct heatmap_params p;
	struct heatmap *hm;
	struct copy c;
	unsigned char *png;
	char *b64;
	size_t len;

	memset(&c, 0, sizeof(c));
	params(&p);
	if (copy_out(in, clock_now - dur, (size_t)dur, &c) || copy_finish(&c) ||
	    heatmap__build(&c.in, &p, &hm) || png__encode_rgb(hm->rgb, hm->width, hm->height, &png, &len) ||
	    base64__encode(png, len, &b64))
		exit(1);
	free(png);
	heatmap__free(hm);
	copy_free(&c);
	return b64;
}
#endif

static void report(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	printf("%s %.3f %.3f\n", name, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[n - 1]);
}

#ifndef HEATMAP_JSON_INPUT
/* The floor: the same image from the same typed cells in one tight loop. */
static double floor_image(struct instr *in, int64_t dur)
{
	enum { W = 600, H = 300, NB = 100 };
	struct copy c;
	double t0 = now_ms(), *grid, ymax = 12500, step = ymax / NB;
	uint8_t *rgb = malloc(W * H * 3), *png = NULL, hue_rgb[NVMS][3];
	size_t len, ncols;
	char *b64 = NULL;

	memset(&c, 0, sizeof(c));
	if (!rgb || copy_out(in, clock_now - dur, (size_t)dur, &c) || copy_finish(&c))
		exit(1);
	ncols = c.w.nslots < W ? c.w.nslots : W;
	grid = calloc(ncols * NB * NVMS, sizeof(*grid));
	if (!grid)
		exit(1);
	for (int k = 0; k < NVMS; k++)
		heatmap__hue_rgb(heatmap__default_hue((size_t)k + 1), 1, hue_rgb[k]);
	for (size_t s = 0; s < c.w.nslots; s++) {
		size_t col = s * ncols / c.w.nslots;

		for (size_t i = c.w.slot_off[s]; i < c.w.slot_off[s + 1]; i++) {
			const struct dist_cell *e = &c.w.cells[i];
			const struct dist_bucket *b = &c.w.buckets[e->bucket];
			int y = (int)(b->lo / step);

			if (y < NB && e->key < NVMS)
				grid[(col * NB + (size_t)y) * NVMS + e->key] += e->count;
		}
	}
	for (int y = 0; y < H; y++) {
		int bk = NB - 1 - y * NB / H;

		for (int x = 0; x < W; x++) {
			const double *g = &grid[((size_t)x * ncols / W * NB + (size_t)bk) * NVMS];
			double tot = 0, r = 0, gg = 0, bb = 0;

			for (int k = 0; k < NVMS; k++)
				tot += g[k];
			for (int k = 0; k < NVMS && tot > 0; k++) {
				double sh = g[k] / tot;

				r += sh * hue_rgb[k][0];
				gg += sh * hue_rgb[k][1];
				bb += sh * hue_rgb[k][2];
			}
			uint8_t *px = rgb + ((size_t)y * W + (size_t)x) * 3;

			px[0] = tot > 0 ? (uint8_t)r : 255;
			px[1] = tot > 0 ? (uint8_t)gg : 255;
			px[2] = tot > 0 ? (uint8_t)bb : 255;
		}
	}
	if (png__encode_rgb(rgb, W, H, &png, &len) || base64__encode(png, len, &b64))
		exit(1);
	free(b64);
	free(png);
	free(grid);
	free(rgb);
	copy_free(&c);
	return now_ms() - t0;
}
#endif

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 21;

	if (argc > 2 && !strcmp(argv[1], "dump")) {
		dump = fopen(argv[2], "w");
		if (!dump)
			return 1;
		rounds = 1;
	}
	double *v = calloc((size_t)rounds, sizeof(*v)), *lk = calloc((size_t)rounds, sizeof(*lk));
	static const struct { const char *name; int64_t dur; enum op op; } ops[] = {
		{ "image_10m", 600, OP_IMAGE },
		{ "image_1h", HOUR, OP_IMAGE },
		{ "details", 600, OP_DETAILS },
		{ "average", 600, OP_AVERAGE },
		{ "percentile", 600, OP_PERCENTILE },
	};
	char err[256], name[64];
	struct instr *in = NULL;
	json_t *spec;

	if (rounds < 1 || !v || !lk)
		return 2;
	spec = json_pack("{s:s, s:[s,s], s:i, s:i}", "metric", "vm.exits", "decomposition", "vm",
			 "latency", "granularity", 1, "retention-time", HOUR);
	if (!spec || instr__new(spec, &in, err, sizeof(err))) {
		fprintf(stderr, "heatmap_bench: %s\n", err);
		return 1;
	}
	json_decref(spec);
	instr__set_clock(in, bench_clock, &clock_now);
	for (int64_t t = T0; t < T0 + HOUR; t++)
		if (feed(in, t))
			return 1;

	if (dump) {
		for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++)
			request(in, ops[o].dur, ops[o].op, &lk[0]);
		return fclose(dump) ? 1 : 0;
	}
	for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		int n = ops[o].dur == HOUR ? (rounds + 3) / 4 : rounds;

		/* warm up: the agent is a long-running process whose allocator
		 * has seen requests of this size before */
		request(in, ops[o].dur, ops[o].op, &lk[0]);
		request(in, ops[o].dur, ops[o].op, &lk[0]);
		for (int i = 0; i < n; i++)
			v[i] = request(in, ops[o].dur, ops[o].op, &lk[i]);
		report(ops[o].name, v, n);
		snprintf(name, sizeof(name), "lock_%s", ops[o].name);
		report(name, lk, n);
	}
	/* a live panel: one more second, then the same 10 minutes again */
#ifdef HEATMAP_JSON_INPUT
	for (int i = 0; i < rounds; i++) {
		if (feed(in, clock_now))
			return 1;
		clock_now++;
		v[i] = request(in, 600, OP_IMAGE, &lk[i]);
	}
	report("refresh", v, rounds);
	report("lock_refresh", lk, rounds);
#else
	{
		char *b64, *line = NULL;
		size_t cap = 0;
		FILE *f;

		live_request(in, 600, &lk[0], NULL);	/* the panel opens */
		for (int i = 0; i < rounds; i++) {
			if (feed(in, clock_now))
				return 1;
			clock_now++;
			v[i] = live_request(in, 600, &lk[i], NULL);
		}
		report("refresh", v, rounds);
		report("lock_refresh", lk, rounds);
		for (int i = 0; i < rounds; i++)
			v[i] = live_request(in, 600, &lk[i], NULL);
		report("repeat", v, rounds);
		report("lock_repeat", lk, rounds);
		/* the refreshed panel is what a cold render draws */
		f = tmpfile();
		if (!f)
			return 1;
		live_request(in, 600, &lk[0], f);
		rewind(f);
		b64 = cold_b64(in, 600);
		if (getline(&line, &cap, f) < 1 || strncmp(line, b64, strlen(b64)) ||
		    line[strlen(b64)] != '\n') {
			fprintf(stderr, "heatmap_bench: the live panel differs from a cold render\n");
			return 1;
		}
		printf("live_equals_cold 1 1\n");
		free(line);
		free(b64);
		fclose(f);
	}
#endif
#ifndef HEATMAP_JSON_INPUT
	for (int i = 0; i < rounds; i++)
		v[i] = floor_image(in, 600);
	report("floor_10m", v, rounds);
	{
		/* the PNG alone, with and without libspng's adaptive filtering */
		struct heatmap_params p;
		struct heatmap *hm;
		struct copy c;
		unsigned char *png;
		size_t len, flen = 0;

		memset(&c, 0, sizeof(c));
		params(&p);
		if (copy_out(in, clock_now - 600, 600, &c) || copy_finish(&c) ||
		    heatmap__build(&c.in, &p, &hm))
			return 1;
		for (int f = 0; f < 2; f++) {
			for (int i = 0; i < rounds; i++) {
				double t0 = now_ms();

				if ((f ? png__encode_rgb_filtered : png__encode_rgb)(hm->rgb, hm->width,
										  hm->height, &png, &len))
					return 1;
				v[i] = now_ms() - t0;
				free(png);
			}
			report(f ? "png_filtered" : "png", v, rounds);
			if (f)
				flen = len;
		}
		printf("png_filtered_bytes %zu\n", flen);
		heatmap__free(hm);
		copy_free(&c);
	}
#endif
	printf("png_bytes %zu\n", png_bytes);
	instr__free(in);
	free(v);
	free(lk);
	return 0;
}
