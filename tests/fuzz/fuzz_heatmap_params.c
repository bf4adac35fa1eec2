/* libFuzzer target for the heatmap renderer's parameters and input values.
 * Build all targets with tests/fuzz/build.sh, or this one alone:
 *   clang -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc \
 *     tests/fuzz/fuzz_heatmap_params.c src/render/heatmap.c src/engine/window.c -ljansson -lm \
 *     -o build/fuzz/fuzz_heatmap_params
 *   build/fuzz/fuzz_heatmap_params -max_total_time=60 tests/fuzz/corpus/fuzz_heatmap_params
 *
 * Input: one JSON document
 *   {"width", "height", "nbuckets", "ymin", "ymax", "auto_ymax", "isolate",
 *    "exclude", "decompose_all", "coloring", "weights", "selected": [...],
 *    "hues": [...], "granularity", "x", "y", "pct",
 *    "slots": [VALUE, ...]}
 * Every member is optional and may have any type: what the API would have
 * rejected as a query parameter still reaches the renderer here, so the
 * renderer's own checks are what is tested. Every slot VALUE is a CA raw value
 * of any shape, well formed or not, going in through dist_window__add_json
 * as an aggregator's merged values do. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "render/heatmap.h"

#define MAX_SLOTS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static double num(const json_t *o, const char *k, double dflt)
{
	const json_t *v = json_object_get(o, k);

	return json_is_number(v) ? json_number_value(v) : dflt;
}

/* Clamps to int without UB on NaN or huge doubles: the API hands the
 * renderer ints, so an out-of-range double is a harness matter. */
static int to_int(double d)
{
	if (!(d == d))
		return 0;
	if (d > 1e6)
		return 1000000;
	if (d < -1e6)
		return -1000000;
	return (int)d;
}

static void check_image(const struct heatmap *hm, const struct heatmap_params *p)
{
	/* the contract the API relies on when it encodes the PNG */
	if (hm->width != p->width || hm->height != p->height || !hm->rgb)
		abort();
	if (hm->nbuckets < 1 || hm->nbuckets > hm->height)
		abort();
	/* an auto-scaled window with nothing in it is CA's autoscale(0): ymax
	 * 0 and a white image, whatever ymin says */
	int empty = !(hm->ymax > hm->ymin);

	if (empty && !(p->auto_ymax && hm->ymax == 0))
		abort();
	/* touch every pixel: a short buffer shows up under ASan */
	volatile uint8_t px;

	for (size_t i = 0; i < (size_t)hm->width * (size_t)hm->height * 3; i++) {
		px = hm->rgb[i];
		if (empty && px != 255)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, 0, NULL), *slots, *v, *sel, *hues;
	struct dist_window w;
	char err[256] = "";
	const char *selected[64];
	int hue[64];
	struct heatmap_params p;
	struct heatmap_input in;
	struct heatmap *hm = NULL;
	json_t *out = NULL;
	size_t i, n = 0;
	const char *s;
	int rc = 0;

	dist_window__init(&w, 1700000000, 1);

	if (!j || !json_is_object(j))
		goto out;
	heatmap_params__init(&p);
	p.width = to_int(num(j, "width", p.width));
	p.height = to_int(num(j, "height", p.height));
	/* keep the image small enough for many runs a second; sizes beyond
	 * the API's limits must still be refused, not drawn */
	if ((p.width > 512 && p.width <= HEATMAP_MAX_WIDTH) ||
	    (p.height > 512 && p.height <= HEATMAP_MAX_HEIGHT))
		goto out;
	p.nbuckets = to_int(num(j, "nbuckets", p.nbuckets));
	p.ymin = num(j, "ymin", p.ymin);
	p.ymax = num(j, "ymax", p.ymax);
	p.auto_ymax = json_is_true(json_object_get(j, "auto_ymax")) ||
		      !json_object_get(j, "ymax");
	p.isolate = json_is_true(json_object_get(j, "isolate"));
	p.exclude = json_is_true(json_object_get(j, "exclude"));
	p.decompose_all = json_is_true(json_object_get(j, "decompose_all"));
	s = json_string_value(json_object_get(j, "coloring"));
	p.coloring = s && !strcmp(s, "linear") ? COLORING_LINEAR : COLORING_RANK;
	s = json_string_value(json_object_get(j, "weights"));
	p.weights = s && !strcmp(s, "weight") ? WEIGHTS_WEIGHT : WEIGHTS_COUNT;
	sel = json_object_get(j, "selected");
	json_array_foreach(sel, i, v)
		if (json_is_string(v) && p.nselected < 64)
			selected[p.nselected++] = json_string_value(v);
	p.selected = selected;
	hues = json_object_get(j, "hues");
	json_array_foreach(hues, i, v)
		if (json_is_integer(v) && p.nhues < 64)
			hue[p.nhues++] = (int)(json_integer_value(v) % 100000);
	p.hues = p.nhues ? hue : NULL;

	w.granularity = to_int(num(j, "granularity", 1));
	slots = json_object_get(j, "slots");
	json_array_foreach(slots, i, v) {
		if (n >= MAX_SLOTS)
			break;
		rc = dist_window__add_json(&w, v, err, sizeof(err));
		if (rc == -EINVAL && !err[0])
			abort();	/* every refusal says why */
		if (rc)
			goto out;
		n++;
	}
	if (dist_window__finish(&w))
		goto out;
	in.w = &w;
	in.first = 0;
	in.nslots = w.nslots;

	rc = heatmap__build(&in, &p, &hm);
	if (rc == 0) {
		int x = to_int(num(j, "x", 0)), y = to_int(num(j, "y", 0));

		check_image(hm, &p);
		if (heatmap__details(&in, &p, x, y, &out) == 0)
			json_decref(out);
		out = NULL;
		/* the corners are always inside, and name the cell the image drew */
		if (heatmap__details(&in, &p, hm->width - 1, hm->height - 1, &out))
			abort();
		json_decref(out);
		out = NULL;
		heatmap__free(hm);
	} else if (rc == -EINVAL && !strcmp(heatmap__last_error(), "no error")) {
		abort();	/* every refusal says why */
	}
	if (heatmap__average(&in, &p, &out) == 0)
		json_decref(out);
	out = NULL;
	if (heatmap__percentile(&in, &p, num(j, "pct", 95), &out) == 0)
		json_decref(out);
out:
	dist_window__free(&w);
	json_decref(j);
	return 0;
}
