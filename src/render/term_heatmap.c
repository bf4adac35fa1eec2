/* The terminal view reuses the image renderer: it asks for an image exactly
 * one pixel per cell (a column per slot, a pixel row per y-bucket) and
 * prints two pixel rows per text line. */
#include "render/term_heatmap.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LABEL_W 8	/* y-axis label column, e.g. " 1.25s" */
#define HALF_BLOCK "\xe2\x96\x80"	/* U+2580 upper half block */

int term__use_color(FILE *f)
{
	const char *nc = getenv("NO_COLOR");

	if (nc && *nc)
		return 0;
	return isatty(fileno(f));
}

/* Prints v (already scaled) with up to 4 significant digits, no exponent. */
static void fmt_num(double v, const char *suffix, char *buf, size_t len)
{
	if (fabs(v - round(v)) < 1e-9 * fmax(1, fabs(v)))
		snprintf(buf, len, "%.0f%s", v, suffix);
	else
		snprintf(buf, len, "%.4g%s", v, suffix);
}

void term__format_value(double v, const char *u, char *buf, size_t len)
{
	static const char *const times[] = { "ns", "µs", "ms", "s" };
	static const char *const bytes[] = { "B", "KB", "MB", "GB", "TB", "PB" };
	static const char *const si[] = { "", "k", "M", "G", "T", "P" };
	char suffix[32];
	size_t i = 0;

	if (!u)
		u = "";
	if (!strcmp(u, "ns") || !strcmp(u, "us") || !strcmp(u, "µs") || !strcmp(u, "ms") ||
	    !strcmp(u, "s")) {
		i = u[0] == 'n' ? 0 : u[0] == 'm' ? 2 : u[0] == 's' ? 3 : 1;
		while (i > 0 && v != 0 && fabs(v) < 1) {
			v *= 1000;
			i--;
		}
		while (i < 3 && fabs(v) >= 1000) {
			v /= 1000;
			i++;
		}
		fmt_num(v, times[i], buf, len);
		return;
	}
	if (!strcmp(u, "bytes") || !strcmp(u, "B")) {
		while (i < 5 && fabs(v) >= 1024) {
			v /= 1024;
			i++;
		}
		fmt_num(v, bytes[i], buf, len);
		return;
	}
	while (i < 5 && fabs(v) >= 1000) {
		v /= 1000;
		i++;
	}
	snprintf(suffix, sizeof(suffix), "%s%s%s", si[i], *u && !*si[i] ? " " : "", u);
	fmt_num(v, suffix, buf, len);
}

static void fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!localtime_r(&tt, &tm) || !strftime(buf, len, "%H:%M:%S", &tm))
		snprintf(buf, len, "%lld", (long long)t);
}

static void set_rgb(FILE *out, int bg, const uint8_t *c)
{
	fprintf(out, "\x1b[%d;2;%u;%u;%um", bg ? 48 : 38, c[0], c[1], c[2]);
}

static char shade(float level)
{
	int i;

	if (level <= 0)
		return TERM_SHADES[0];
	i = 1 + (int)(level * 9);
	return TERM_SHADES[i > 9 ? 9 : i];
}

static void draw_rows(FILE *out, const struct heatmap *hm, const char *y_unit, int use_color)
{
	int rows = hm->height / 2, r, x, lstep = rows >= 12 ? 4 : 2;
	char label[32];

	for (r = 0; r < rows; r++) {
		const uint8_t *prev_fg = NULL, *prev_bg = NULL;

		/* a row's label is the value at its top edge */
		if (r % lstep == 0) {
			term__format_value(hm->ymax - (hm->ymax - hm->ymin) * r / rows, y_unit,
					   label, sizeof(label));
			fprintf(out, "%*s ┤", LABEL_W - 1, label);
		} else {
			fprintf(out, "%*s│", LABEL_W, "");
		}
		for (x = 0; x < hm->width; x++) {
			const uint8_t *fg = hm->rgb + ((size_t)(2 * r) * hm->width + x) * 3;
			const uint8_t *bg = hm->rgb + ((size_t)(2 * r + 1) * hm->width + x) * 3;

			if (!use_color) {
				/* pixel rows map 1:1 to buckets, top first */
				size_t b0 = (size_t)hm->nbuckets - 1 - (size_t)(2 * r) * hm->nbuckets / hm->height;
				size_t b1 = (size_t)hm->nbuckets - 1 - (size_t)(2 * r + 1) * hm->nbuckets / hm->height;
				size_t col = (size_t)x * hm->ncols / hm->width;
				float l0 = hm->level[col * hm->nbuckets + b0];
				float l1 = hm->level[col * hm->nbuckets + b1];

				fputc(shade(l0 > l1 ? l0 : l1), out);
				continue;
			}
			if (!prev_fg || memcmp(prev_fg, fg, 3))
				set_rgb(out, 0, fg);
			if (!prev_bg || memcmp(prev_bg, bg, 3))
				set_rgb(out, 1, bg);
			prev_fg = fg;
			prev_bg = bg;
			fputs(HALF_BLOCK, out);
		}
		fputs(use_color ? "\x1b[0m\n" : "\n", out);
	}
}

static void draw_x_axis(FILE *out, const struct heatmap *hm, const char *y_unit)
{
	char label[32], left[32], right[32];
	int x, pad;

	term__format_value(hm->ymin, y_unit, label, sizeof(label));
	fprintf(out, "%*s └", LABEL_W - 1, label);
	for (x = 0; x < hm->width; x++)
		fputs("─", out);
	fputc('\n', out);

	fmt_time(hm->col_start[0], left, sizeof(left));
	fmt_time(hm->col_start[hm->ncols - 1], right, sizeof(right));
	fprintf(out, "%*s", LABEL_W + 1, "");
	if (hm->ncols == 1) {
		fprintf(out, "%s\n", right);
		return;
	}
	pad = hm->width - (int)strlen(left) - (int)strlen(right);
	if (pad >= 1)
		fprintf(out, "%s%*s%s\n", left, pad, "", right);
	else
		fprintf(out, "%s .. %s\n", left, right);
}

static void draw_legend(FILE *out, const struct heatmap *hm, const struct heatmap_params *p,
			int use_color)
{
	const char *what = p->weights == WEIGHTS_WEIGHT ? "weight" : "count";
	uint8_t full[3];
	char max[32];
	size_t l;

	fprintf(out, "%*s", LABEL_W + 1, "");
	for (l = 0; l < hm->nlayers; l++) {
		const char *name = hm->layers[l].name ? hm->layers[l].name :
				   hm->keys[0] ? "other" : "all";

		if (use_color) {
			/* the layer's colour at full intensity, as drawn for a maximal cell */
			heatmap__hue_rgb(hm->layers[l].hue, 1, full);
			set_rgb(out, 0, full);
			fprintf(out, "██\x1b[0m %s  ", name);
		} else {
			fprintf(out, "%s%s", l ? ", " : "", name);
		}
	}
	fmt_num(hm->max_total, "", max, sizeof(max));
	if (use_color)
		fprintf(out, "(max %s %s per cell, %s)\n", what, max,
			p->coloring == COLORING_RANK ? "rank" : "linear");
	else
		fprintf(out, "%s shades \"%s\" = 0 .. max %s %s per cell (%s)\n",
			hm->nlayers ? "  " : "", TERM_SHADES, what, max,
			p->coloring == COLORING_RANK ? "rank" : "linear");
	if (hm->present && json_array_size(hm->present) > hm->nkeys) {
		fprintf(out, "%*s%zu of %zu keys drawn\n", LABEL_W + 1, "", hm->nkeys,
			json_array_size(hm->present));
	}
}

int term_heatmap__draw(FILE *out, const struct heatmap_input *in,
		       const struct heatmap_params *params, const char *title,
		       const char *y_unit, int use_color)
{
	struct heatmap_params q;
	struct heatmap_input win;
	struct heatmap *hm = NULL;
	int rows, err;

	if (!out || !in || !params)
		return -EINVAL;
	q = *params;
	rows = params->height < 2 ? 2 : params->height > 100 ? 100 : params->height;
	if (params->width < 1) {
		fprintf(stderr, "kvmscope: terminal heatmap: width %d: need at least 1 column\n",
			params->width);
		return -EINVAL;
	}
	win = *in;
	if (win.nslots > (size_t)params->width) {
		/* keep the latest slots: they are what an operator watches */
		win.first += win.nslots - (size_t)params->width;
		win.nslots = (size_t)params->width;
	}
	q.width = win.nslots ? (int)win.nslots : 1;
	q.height = 2 * rows;
	err = heatmap__build(&win, &q, &hm);
	if (err)
		return err;
	if (title && *title)
		fprintf(out, "%s\n", title);
	draw_rows(out, hm, y_unit, use_color);
	draw_x_axis(out, hm, y_unit);
	draw_legend(out, hm, &q, use_color);
	heatmap__free(hm);
	if (fflush(out) || ferror(out))
		return -EIO;
	return 0;
}
