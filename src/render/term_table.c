#include "render/term_table.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BAR_W 30

struct row {
	const char *key;
	double v;
};

static int cmp_row(const void *a, const void *b)
{
	const struct row *x = a, *y = b;

	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	return strcmp(x->key, y->key);
}

static void print_num(FILE *out, int width, double v)
{
	if (fabs(v - round(v)) < 1e-9 && fabs(v) < 1e15)
		fprintf(out, "%*.0f", width, v);
	else
		fprintf(out, "%*.3f", width, v);
}

int term_table__draw(FILE *out, const json_t *value, const char *title, int use_color)
{
	struct row *rows = NULL;
	const char *k;
	json_t *v;
	size_t n = 0, i;
	int kw = 3, err = 0;
	double max = 0;

	if (!out)
		return -EINVAL;
	if (!title)
		title = "value";
	if (json_is_number(value)) {
		fprintf(out, "%s: ", title);
		print_num(out, 0, json_number_value(value));
		fputc('\n', out);
		goto out;
	}
	if (!value || json_is_null(value) || (json_is_object(value) && !json_object_size(value))) {
		fprintf(out, "%s: (no data)\n", title);
		goto out;
	}
	if (!json_is_object(value)) {
		fprintf(stderr, "kvmscope: table %s: value is a %s, not a number or {key: number}\n",
			title, json_is_array(value) ? "distribution" : "non-numeric value");
		return -EINVAL;
	}
	rows = calloc(json_object_size(value), sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	json_object_foreach((json_t *)value, k, v) {
		if (!json_is_number(v)) {
			fprintf(stderr, "kvmscope: table %s: key \"%s\" is not a number%s\n", title, k,
				json_is_array(v) ? " (a distribution: draw it as a heatmap)" : "");
			err = -EINVAL;
			goto out;
		}
		rows[n].key = k;
		rows[n].v = json_number_value(v);
		if (rows[n].v > max)
			max = rows[n].v;
		if ((int)strlen(k) > kw)
			kw = (int)strlen(k);
		n++;
	}
	qsort(rows, n, sizeof(*rows), cmp_row);
	if (kw > 40)
		kw = 40;
	fprintf(out, "%s\n", title);
	for (i = 0; i < n; i++) {
		int bar = max > 0 && rows[i].v > 0 ? (int)lround(rows[i].v / max * BAR_W) : 0, j;

		fprintf(out, "  %-*.*s ", kw, kw, rows[i].key);
		print_num(out, 12, rows[i].v);
		fputs(use_color && bar ? "  \x1b[38;2;230;100;40m" : "  ", out);
		for (j = 0; j < bar; j++)
			fputs(use_color ? "█" : "#", out);
		fputs(use_color && bar ? "\x1b[0m\n" : "\n", out);
	}
out:
	free(rows);
	if (!err && (fflush(out) || ferror(out)))
		err = -EIO;
	return err;
}
