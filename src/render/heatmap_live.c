/* The live panel cache: see heatmap_live.h.
 *
 * A panel's columns form a ring of nslots, column of slot t at
 * (t / g) mod nslots: a window of nslots consecutive slots has each of them
 * once, so a window one second later finds all its columns but the newest
 * in place. Each column keeps what it was drawn from (its cells, keyed by
 * the panel's own key table so that they outlive the copy they came in)
 * and, stamped with the panel's configuration and colour generations, its
 * layer values and colours. The steps are heatmap__build's own
 * (heatmap_impl.h), run per column, which is what makes the answer equal a
 * cold render's. */
#include "render/heatmap_live.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render/base64.h"
#include "render/heatmap_impl.h"
#include "render/png.h"

struct column {
	int64_t t;			/* INT64_MIN: empty */
	uint64_t ver;
	struct dist_cell *cells;	/* key: the panel's key id */
	size_t ncells;
	uint32_t *keys;			/* [nkeys] key ids with data */
	size_t nkeys;
	uint32_t *bidx;			/* [nbidx] buckets with data, ascending (CA's max) */
	size_t nbidx;
	uint64_t cfg;			/* generation vals/uniq/max belong to */
	double *vals;			/* [nbuckets][nlayers] */
	double *uniq;			/* distinct non-zero values (rank colouring) */
	uint64_t *uniq_n;		/* [nuniq] cells holding each */
	size_t nuniq;
	double max, max_total;
	uint64_t colour;		/* generation rgb belongs to */
	uint8_t *rgb;			/* [nbuckets][3] */
	size_t bytes;
};

struct heatmap_live_panel {
	struct heatmap_live_panel *next;
	pthread_mutex_t mu;
	unsigned int users;
	uint64_t used;			/* LRU stamp */
	size_t bytes;

	uint64_t uid;
	int64_t g;
	size_t nslots;
	char *key;			/* the parameters, serialised */

	char **names;			/* the panel's key table */
	size_t nnames, names_cap;
	json_t *name_ids;		/* name -> id */
	struct dist_bucket *buckets;
	size_t nb;
	int decomposed;
	struct column *cols;		/* [nslots] */

	char *cfg_key;			/* keys drawn, layers, ymin, ymax, nbuckets */
	uint64_t cfg, colour;
	struct prep pr;			/* spans of cfg; keys of the last render */
	struct distinct dv;		/* ranked, of the colour generation */
	double max;

	int64_t res_start;		/* the last answer; res.image NULL if none */
	uint64_t *res_ver;		/* [nslots] */
	struct heatmap_live_image res;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct heatmap_live_panel *panels;
static uint64_t cache_clock;

/* ---- keys of the cache and of a configuration -------------------------- */

/* The parameters as a string (a new one, the caller's; NULL when out of
 * memory): two requests share a panel when these are equal. */
static char *params_key(const struct heatmap_params *p)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "%d %d %d %a %a %d %d %d %d %d %d|", p->width, p->height, p->nbuckets, p->ymin,
		p->auto_ymax ? 0.0 : p->ymax, p->auto_ymax, p->isolate, p->exclude,
		p->decompose_all, (int)p->coloring, (int)p->weights);
	for (i = 0; i < p->nselected; i++)
		fprintf(f, "%zu:%s", strlen(p->selected[i]), p->selected[i]);
	fputc('|', f);
	for (i = 0; i < p->nhues; i++)
		fprintf(f, "%d,", p->hues[i]);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* What the spread and the layer values depend on beyond the parameters.
 * New string, the caller's; NULL when out of memory. */
static char *config_key(const struct keyset *ks, double ymin, double ymax, int nbuckets)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	fprintf(f, "%a %a %d %d|", ymin, ymax, nbuckets, ks->named);
	for (i = 0; i < ks->npresent; i++)
		fprintf(f, "%zu:%s", strlen(ks->present[i]), ks->present[i]);
	fputc('|', f);
	for (i = 0; i < ks->ndrawn; i++)
		fprintf(f, "%zu:%s=%zu", ks->drawn_name[i] ? strlen(ks->drawn_name[i]) : 0,
			ks->drawn_name[i] ? ks->drawn_name[i] : "", ks->drawn_layer[i]);
	fputc('|', f);
	for (i = 0; i < ks->nlayers; i++)
		fprintf(f, "%d:%s,", ks->layer_hue[i], ks->layer_name[i] ? ks->layer_name[i] : "\x01");
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- panels ------------------------------------------------------------ */

static void column_free_derived(struct column *c)
{
	free(c->vals);
	free(c->uniq);
	free(c->uniq_n);
	free(c->rgb);
	c->vals = c->uniq = NULL;
	c->uniq_n = NULL;
	c->rgb = NULL;
	c->nuniq = 0;
	c->cfg = c->colour = 0;
}

static void column_clear(struct column *c)
{
	column_free_derived(c);
	free(c->cells);
	free(c->keys);
	free(c->bidx);
	memset(c, 0, sizeof(*c));
	c->t = INT64_MIN;
}

void heatmap_live_image__free(struct heatmap_live_image *im)
{
	free(im->image);
	json_decref(im->present);
	memset(im, 0, sizeof(*im));
}

static void panel_free(struct heatmap_live_panel *pn)
{
	size_t i;

	if (!pn)
		return;
	for (i = 0; pn->cols && i < pn->nslots; i++)
		column_clear(&pn->cols[i]);
	free(pn->cols);
	for (i = 0; i < pn->nnames; i++)
		free(pn->names[i]);
	free(pn->names);
	json_decref(pn->name_ids);
	free(pn->buckets);
	free(pn->key);
	free(pn->cfg_key);
	prep__free(&pn->pr);
	distinct__free(&pn->dv);
	free(pn->res_ver);
	heatmap_live_image__free(&pn->res);
	pthread_mutex_destroy(&pn->mu);
	free(pn);
}

/* A new empty panel (the caller's), or NULL. Takes ownership of key. */
static struct heatmap_live_panel *panel_new(uint64_t uid, int64_t g, size_t nslots, char *key)
{
	struct heatmap_live_panel *pn = calloc(1, sizeof(*pn));
	size_t i;

	if (!pn) {
		free(key);
		return NULL;
	}
	pthread_mutex_init(&pn->mu, NULL);
	pn->uid = uid;
	pn->g = g;
	pn->nslots = nslots;
	pn->key = key;
	pn->cols = calloc(nslots, sizeof(*pn->cols));
	pn->res_ver = calloc(nslots, sizeof(*pn->res_ver));
	pn->name_ids = json_object();
	if (!pn->cols || !pn->res_ver || !pn->name_ids) {
		panel_free(pn);
		return NULL;
	}
	for (i = 0; i < nslots; i++)
		pn->cols[i].t = INT64_MIN;
	pn->res_start = INT64_MIN;
	return pn;
}

/* Under cache_mu: drops the least recently used panels not in use until the
 * cache fits its bounds. */
static void cache_trim(void)
{
	for (;;) {
		struct heatmap_live_panel **pp, **lru = NULL, *victim;
		size_t bytes = 0, n = 0;

		for (pp = &panels; *pp; pp = &(*pp)->next) {
			bytes += (*pp)->bytes;
			n++;
			if (!(*pp)->users && (!lru || (*pp)->used < (*lru)->used))
				lru = pp;
		}
		if ((bytes <= HEATMAP_LIVE_BYTES && n <= HEATMAP_LIVE_PANELS) || !lru)
			return;
		victim = *lru;
		*lru = victim->next;
		panel_free(victim);
	}
}

void heatmap_live__flush(void)
{
	struct heatmap_live_panel **pp = &panels, *pn;

	pthread_mutex_lock(&cache_mu);
	while ((pn = *pp)) {
		if (pn->users) {
			pp = &pn->next;
			continue;
		}
		*pp = pn->next;
		panel_free(pn);
	}
	pthread_mutex_unlock(&cache_mu);
}

size_t heatmap_live__bytes(void)
{
	struct heatmap_live_panel *pn;
	size_t n = 0;

	pthread_mutex_lock(&cache_mu);
	for (pn = panels; pn; pn = pn->next)
		n += pn->bytes;
	pthread_mutex_unlock(&cache_mu);
	return n;
}

int heatmap_live__begin(struct heatmap_live_req *q, uint64_t instr_uid,
			const struct heatmap_params *p, int64_t start, int64_t g, size_t nslots)
{
	struct heatmap_live_panel *pn;
	char *key;

	memset(q, 0, sizeof(*q));
	if (!p || g < 1 || !nslots || nslots > INSTR_SLOTS_MAX)
		return -EINVAL;
	key = params_key(p);
	q->ver = calloc(nslots, sizeof(*q->ver));
	q->stale = calloc(nslots, 1);
	if (!key || !q->ver || !q->stale) {
		free(key);
		free(q->ver);
		free(q->stale);
		return -ENOMEM;
	}
	q->p = p;
	q->start = start;
	q->g = g;
	q->nslots = nslots;
	q->same = 1;
	dist_window__init(&q->w, start, g);
	pthread_mutex_lock(&cache_mu);
	for (pn = panels; pn; pn = pn->next)
		if (pn->uid == instr_uid && pn->g == g && pn->nslots == nslots &&
		    !strcmp(pn->key, key))
			break;
	if (pn) {
		free(key);
	} else {
		pn = panel_new(instr_uid, g, nslots, key);
		if (pn) {
			pn->next = panels;
			panels = pn;
		}
	}
	if (pn) {
		pn->users++;
		pn->used = ++cache_clock;
	}
	pthread_mutex_unlock(&cache_mu);
	if (!pn) {
		free(q->ver);
		free(q->stale);
		return -ENOMEM;
	}
	q->panel = pn;
	pthread_mutex_lock(&pn->mu);
	return 0;
}

void heatmap_live__end(struct heatmap_live_req *q)
{
	struct heatmap_live_panel *pn = q->panel;

	if (pn) {
		pthread_mutex_unlock(&pn->mu);
		pthread_mutex_lock(&cache_mu);
		pn->users--;
		pn->used = ++cache_clock;
		cache_trim();
		pthread_mutex_unlock(&cache_mu);
	}
	free(q->ver);
	free(q->stale);
	dist_window__free(&q->w);
	memset(q, 0, sizeof(*q));
}

/* ---- the copy (under the owner's lock) --------------------------------- */

static size_t column_of(const struct heatmap_live_panel *pn, int64_t t)
{
	int64_t i = t / pn->g % (int64_t)pn->nslots;

	return (size_t)(i < 0 ? i + (int64_t)pn->nslots : i);
}

/* Columns are reused only when each holds one slot. */
static int per_column(const struct heatmap_live_req *q)
{
	return q->nslots <= (size_t)q->p->width;
}

long heatmap_live__copy(struct heatmap_live_req *q, const struct instr *in, size_t from,
			size_t max_cells)
{
	const struct heatmap_live_panel *pn = q->panel;
	size_t i = from, cells = 0, run;
	long got;

	if (from > q->nslots || q->w.nslots != from)
		return -EINVAL;
	while (i < q->nslots) {
		int64_t t = q->start + (int64_t)i * q->g;
		const struct column *c = &pn->cols[column_of(pn, t)];

		q->ver[i] = instr__slot_version(in, t);
		if (q->ver[i] != pn->res_ver[i])
			q->same = 0;
		if (per_column(q) && c->t == t && c->ver == q->ver[i]) {
			if (dist_window__begin_slot(&q->w))
				return -ENOMEM;
			i++;
			continue;
		}
		/* a run of slots to copy, in one call */
		for (run = 1; i + run < q->nslots; run++) {
			int64_t tr = t + (int64_t)run * q->g;
			const struct column *cr = &pn->cols[column_of(pn, tr)];

			if (per_column(q) && cr->t == tr && cr->ver == instr__slot_version(in, tr))
				break;
		}
		got = instr__window_append(in, t, run, max_cells ? max_cells - cells : 0, &q->w);
		if (got < 0)
			return got;
		for (size_t k = 0; k < (size_t)got; k++) {
			size_t s = i + k;

			q->ver[s] = instr__slot_version(in, q->start + (int64_t)s * q->g);
			if (q->ver[s] != pn->res_ver[s])
				q->same = 0;
			q->stale[s] = 1;
			q->nstale++;
			cells += q->w.slot_off[q->w.nslots - (size_t)got + k + 1] -
				 q->w.slot_off[q->w.nslots - (size_t)got + k];
		}
		i += (size_t)got;
		if (max_cells && cells >= max_cells)
			break;
	}
	return (long)(i - from);
}

/* ---- drawing ----------------------------------------------------------- */

/* The panel's id for key name s (interned). -ENOMEM or the id. */
static long intern(struct heatmap_live_panel *pn, const char *s)
{
	json_t *id = json_object_get(pn->name_ids, s);
	char **nn;

	if (id)
		return (long)json_integer_value(id);
	if (pn->nnames == pn->names_cap) {
		size_t cap = pn->names_cap ? pn->names_cap * 2 : 16;

		nn = realloc(pn->names, cap * sizeof(*nn));
		if (!nn)
			return -ENOMEM;
		pn->names = nn;
		pn->names_cap = cap;
	}
	pn->names[pn->nnames] = strdup(s);
	if (!pn->names[pn->nnames] ||
	    json_object_set_new(pn->name_ids, s, json_integer((json_int_t)pn->nnames))) {
		free(pn->names[pn->nnames]);
		return -ENOMEM;
	}
	return (long)pn->nnames++;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Column c takes slot i of the request's window. 0 or -ENOMEM (c is then
 * empty). */
static int column_load(struct heatmap_live_panel *pn, struct column *c,
		       const struct heatmap_live_req *q, size_t i)
{
	const struct dist_window *w = &q->w;
	size_t n = w->slot_off[i + 1] - w->slot_off[i], k;
	const struct dist_cell *src = w->cells + w->slot_off[i];
	unsigned char *mark = NULL;

	column_clear(c);
	c->cells = malloc((n ? n : 1) * sizeof(*c->cells));
	c->keys = malloc((n ? n : 1) * sizeof(*c->keys));
	c->bidx = malloc((n ? n : 1) * sizeof(*c->bidx));
	mark = calloc(w->nbuckets ? w->nbuckets : 1, 1);
	if (!c->cells || !c->keys || !c->bidx || !mark)
		goto err;
	for (k = 0; k < n; k++) {
		long id = 0;

		if (w->decomposed && w->nkeys) {
			id = intern(pn, w->keys[src[k].key]);
			if (id < 0)
				goto err;
		}
		c->cells[k] = src[k];
		c->cells[k].key = (uint32_t)id;
		/* cells come sorted by key: one entry per key */
		if (!c->nkeys || c->keys[c->nkeys - 1] != (uint32_t)id)
			c->keys[c->nkeys++] = (uint32_t)id;
		if (src[k].count > 0 && !mark[src[k].bucket]) {
			mark[src[k].bucket] = 1;
			c->bidx[c->nbidx++] = src[k].bucket;
		}
	}
	/* the bucket table is sorted: index order is CA's */
	qsort(c->bidx, c->nbidx, sizeof(*c->bidx), cmp_u32);
	c->ncells = n;
	c->t = q->start + (int64_t)i * q->g;
	c->ver = q->ver[i];
	c->bytes = n * (sizeof(*c->cells) + sizeof(*c->keys) + sizeof(*c->bidx));
	free(mark);
	return 0;
err:
	free(mark);
	column_clear(c);
	return -ENOMEM;
}

/* The spread, layer values and distinct values of column c under the
 * panel's configuration. 0 or -ENOMEM. */
static int column_derive(struct heatmap_live_panel *pn, struct column *c,
			 const struct heatmap_params *p)
{
	const struct keyset *ks = &pn->pr.ks;
	size_t nb = (size_t)pn->pr.nbuckets, nk = ks->ndrawn ? ks->ndrawn : 1;
	size_t nl = ks->nlayers ? ks->nlayers : 1, i, n = 0;
	long rl;
	struct distinct dl = { 0 };
	double *spread;
	int err = -ENOMEM;

	column_free_derived(c);
	spread = calloc(nb * nk, sizeof(*spread));
	c->rgb = malloc(nb * 3);
	if (!spread || !c->rgb)
		goto out;
	span__spread_cells(&pn->pr, c->cells, c->ncells, p->weights == WEIGHTS_WEIGHT, spread);
	rl = keyset__rest_layer(ks);
	if (rl < 0 && keyset__layers_are_keys(ks->drawn_layer, ks->ndrawn, nl)) {
		c->vals = spread;
		spread = NULL;
	} else {
		c->vals = calloc(nb * nl, sizeof(*c->vals));
		if (!c->vals)
			goto out;
		keyset__layer_values(spread, nb, ks->drawn_layer, ks->ndrawn, nl, c->vals);
	}
	if (rl >= 0) {
		/* the rest as CA computes it (heatmap__build does the same) */
		long *sel = calloc(p->nselected ? p->nselected : 1, sizeof(*sel));
		double *tot = calloc(pn->nb ? pn->nb : 1, sizeof(*tot));
		double *row = calloc(nb * 3, sizeof(*row));

		for (i = 0; sel && i < p->nselected; i++) {
			json_t *id = json_object_get(pn->name_ids, p->selected[i]);

			sel[i] = id ? (long)json_integer_value(id) : -1;
		}
		bool ok = sel && tot && row;

		if (ok) {
			span__ca_rest(&pn->pr, c->cells, c->ncells, sel, p->nselected,
				      p->weights == WEIGHTS_WEIGHT, tot, pn->nb, row, row + nb,
				      row + 2 * nb);
			for (i = 0; i < nb; i++)
				c->vals[i * nl + (size_t)rl] = row[2 * nb + i];
		}
		free(sel);
		free(tot);
		free(row);
		if (!ok)
			goto out;
	}
	c->max = c->max_total = 0;
	if (distinct__collect(c->vals, nb, nl, p->coloring, &dl, &c->max, &c->max_total))
		goto out;
	c->uniq = malloc((dl.n ? dl.n : 1) * sizeof(*c->uniq));
	c->uniq_n = malloc((dl.n ? dl.n : 1) * sizeof(*c->uniq_n));
	if (!c->uniq || !c->uniq_n)
		goto out;
	for (i = 0; i < dl.cap; i++)
		if (dl.bits[i]) {
			memcpy(&c->uniq[n], &dl.bits[i], sizeof(double));
			c->uniq_n[n++] = dl.mult[i];
		}
	c->nuniq = n;
	c->cfg = pn->cfg;
	c->colour = 0;
	c->bytes = c->ncells * (sizeof(*c->cells) + sizeof(*c->keys) + sizeof(*c->bidx)) +
		   nb * nl * sizeof(double) + n * (sizeof(double) + sizeof(uint64_t)) + nb * 3;
	err = 0;
out:
	free(spread);
	distinct__free(&dl);
	if (err)
		column_free_derived(c);
	return err;
}

/* Orders key ids by name (qsort_r's context: the panel's names). */
static int cmp_id_name(const void *a, const void *b, void *names)
{
	char *const *n = names;

	return strcmp(n[*(const size_t *)a], n[*(const size_t *)b]);
}

/* The keys drawn, ymax and spans of this window; bumps the configuration
 * generation when they differ from the last render's. 0 or -ENOMEM. */
static int configure(struct heatmap_live_panel *pn, const struct heatmap_params *p,
		     struct column **cols, size_t ncols)
{
	size_t nk = pn->nnames ? pn->nnames : 1, i, k, norder = 0, *order = NULL;
	unsigned char *seen = calloc(nk, 1);
	struct keyset ks;
	double ymin = p->ymin, ymax, max = 0;
	int nbuckets = p->nbuckets < p->height ? p->nbuckets : p->height, err = -ENOMEM;
	int named = pn->decomposed && pn->nnames;
	char *cfg = NULL;

	memset(&ks, 0, sizeof(ks));
	order = malloc(nk * sizeof(*order));
	if (!seen || !order)
		goto out;
	for (i = 0; i < ncols; i++)
		for (k = 0; k < cols[i]->nkeys; k++)
			seen[cols[i]->keys[k]] = 1;
	if (named) {
		for (i = 0; i < nk; i++)
			if (seen[i])
				order[norder++] = i;
		qsort_r(order, norder, sizeof(*order), cmp_id_name, pn->names);
		/* unseen keys last: they are not drawn */
		for (i = 0; i < nk; i++)
			if (!seen[i])
				order[norder++] = i;
	}
	err = keyset__from_seen(p, nk, named ? (const char *const *)pn->names : NULL, seen,
				named ? order : NULL, &ks);
	if (err)
		goto out;	/* -EINVAL: too few hues for decompose_all */
	err = -ENOMEM;
	if (p->auto_ymax) {
		/* CA's: over every key, the columns in time order */
		for (i = 0; i < ncols; i++)
			for (k = 0; k < cols[i]->nbidx; k++)
				max = ca__max_step(max, &pn->buckets[cols[i]->bidx[k]]);
		ymax = heatmap__ca_ymax(max, ymin);
	} else {
		ymax = p->ymax;
	}
	cfg = config_key(&ks, ymin, ymax, nbuckets);
	if (!cfg)
		goto out;
	if (!pn->cfg_key || strcmp(cfg, pn->cfg_key) || !pn->pr.span) {
		struct prep pr = { .ymin = ymin, .ymax = ymax, .nbuckets = nbuckets };

		if (prep__spans(&pr, pn->buckets, pn->nb)) {
			prep__free(&pr);
			goto out;
		}
		prep__free(&pn->pr);
		pn->pr = pr;
		free(pn->cfg_key);
		pn->cfg_key = cfg;
		cfg = NULL;
		pn->cfg++;
	}
	/* the keys are this window's (ids may have been added since) */
	keyset__free(&pn->pr.ks);
	pn->pr.ks = ks;
	memset(&ks, 0, sizeof(ks));
	err = 0;
out:
	keyset__free(&ks);
	free(cfg);
	free(seen);
	free(order);
	return err;
}

/* Does dv hold exactly the cells of the ranked set old (each value as
 * many times)? */
static int same_values(const struct distinct *dv, const struct distinct *old)
{
	size_t i;

	if (!old->le || dv->n != old->n || dv->total != old->total)
		return 0;
	for (i = 0; i < dv->cap; i++) {
		double v;

		if (!dv->bits[i])
			continue;
		memcpy(&v, &dv->bits[i], sizeof(v));
		if (distinct__mult(old, v) != dv->mult[i])
			return 0;
	}
	return 1;
}

/* The colour scale of the window; bumps the colour generation when it
 * differs from the last render's. 0 or -ENOMEM. */
static int scale(struct heatmap_live_panel *pn, const struct heatmap_params *p,
		 struct column **cols, size_t ncols, uint64_t cfg_before)
{
	struct distinct dv = { 0 };
	double max = 0;
	size_t i, k;
	int changed = pn->cfg != cfg_before;

	for (i = 0; i < ncols; i++)
		if (cols[i]->max > max)
			max = cols[i]->max;
	if (p->coloring == COLORING_LINEAR) {
		changed |= max != pn->max;
	} else {
		for (i = 0; i < ncols; i++)
			for (k = 0; k < cols[i]->nuniq; k++)
				if (distinct__add_n(&dv, cols[i]->uniq[k], cols[i]->uniq_n[k])) {
					distinct__free(&dv);
					return -ENOMEM;
				}
		if (!same_values(&dv, &pn->dv)) {
			if (distinct__rank(&dv)) {
				distinct__free(&dv);
				return -ENOMEM;
			}
			distinct__free(&pn->dv);
			pn->dv = dv;
			changed = 1;
		} else {
			distinct__free(&dv);
		}
	}
	pn->max = max;
	if (changed)
		pn->colour++;
	return 0;
}

/* Draws the window column by column, reusing what still holds. */
static int draw_columns(struct heatmap_live_req *q, uint8_t *rgb)
{
	struct heatmap_live_panel *pn = q->panel;
	const struct heatmap_params *p = q->p;
	struct column **cols = malloc(q->nslots * sizeof(*cols));
	const uint8_t **colrgb = malloc(q->nslots * sizeof(*colrgb));
	struct hue_tab *ht = NULL;
	size_t i, nb, nl;
	uint64_t cfg_before = pn->cfg;
	int err = -ENOMEM;

	if (!cols || !colrgb)
		goto out;
	if (q->nstale && q->w.nbuckets) {
		/* the bucket table is the metric's: it changes only if the
		 * instrumentation does, and then nothing cached holds */
		if (pn->nb != q->w.nbuckets ||
		    memcmp(pn->buckets, q->w.buckets, pn->nb * sizeof(*pn->buckets))) {
			struct dist_bucket *b = malloc(q->w.nbuckets * sizeof(*b));

			if (!b)
				goto out;
			memcpy(b, q->w.buckets, q->w.nbuckets * sizeof(*b));
			free(pn->buckets);
			pn->buckets = b;
			pn->nb = q->w.nbuckets;
			free(pn->cfg_key);
			pn->cfg_key = NULL;
			for (i = 0; i < pn->nslots; i++)
				if (!q->stale[i])
					q->stale[i] = 2;	/* must be copied again */
		}
		pn->decomposed = q->w.decomposed;
	}
	for (i = 0; i < q->nslots; i++) {
		struct column *c = &pn->cols[column_of(pn, q->start + (int64_t)i * q->g)];

		if (q->stale[i] == 2) {
			err = -EAGAIN;
			goto out;
		}
		if (q->stale[i] && column_load(pn, c, q, i))
			goto out;
		cols[i] = c;
	}
	err = configure(pn, p, cols, q->nslots);
	if (err)
		goto out;
	err = -ENOMEM;
	for (i = 0; i < q->nslots; i++)
		if (cols[i]->cfg != pn->cfg) {
			if (column_derive(pn, cols[i], p))
				goto out;
			q->nspread++;
		}
	if (scale(pn, p, cols, q->nslots, cfg_before))
		goto out;
	nb = (size_t)pn->pr.nbuckets;
	nl = pn->pr.ks.nlayers ? pn->pr.ks.nlayers : 1;
	ht = calloc(nl, sizeof(*ht));
	if (!ht)
		goto out;
	for (i = 0; i < pn->pr.ks.nlayers; i++)
		hue_tab__init(&ht[i], pn->pr.ks.layer_hue[i]);
	for (i = 0; i < q->nslots; i++) {
		if (cols[i]->colour != pn->colour) {
			if (hue_tab__colour_cells(cols[i]->vals, nb, nl, p->coloring, pn->max, &pn->dv,
						  ht, cols[i]->rgb, NULL))
				goto out;
			cols[i]->colour = pn->colour;
			q->ncoloured++;
		}
		colrgb[i] = cols[i]->rgb;
	}
	err = heatmap__paint(rgb, p->width, p->height, (int)nb, q->nslots, colrgb);
out:
	if (err)
		/* a half-loaded panel must not be trusted: start over */
		for (i = 0; i < pn->nslots; i++)
			column_clear(&pn->cols[i]);
	free(ht);
	free(cols);
	free(colrgb);
	return err;
}

/* The present keys as JSON: a new reference, or NULL. */
static json_t *present_json(const struct keyset *ks)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < ks->npresent; i++)
		if (json_array_append_new(a, json_string(ks->present[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static int copy_image(const struct heatmap_live_image *from, struct heatmap_live_image *to)
{
	*to = *from;
	to->image = strdup(from->image);
	to->present = json_deep_copy(from->present);
	if (!to->image || !to->present) {
		heatmap_live_image__free(to);
		return -ENOMEM;
	}
	return 0;
}

int heatmap_live__image(struct heatmap_live_req *q, struct heatmap_live_image *out)
{
	struct heatmap_live_panel *pn = q->panel;
	const struct heatmap_params *p = q->p;
	struct heatmap_input in = { &q->w, 0, q->w.nslots };
	struct heatmap_live_image im = { 0 };
	struct heatmap *hm = NULL;
	unsigned char *png = NULL;
	uint8_t *rgb = NULL;
	size_t len, i;
	int err;

	memset(out, 0, sizeof(*out));
	if (q->w.nslots != q->nslots)
		return -EINVAL;
	err = heatmap__check_params(&in, p);
	if (err)
		return err;
	if (q->same && pn->res.image && pn->res_start == q->start) {
		q->reused = 1;
		return copy_image(&pn->res, out);
	}
	err = dist_window__finish(&q->w);
	if (err)
		goto out;
	if (per_column(q)) {
		rgb = malloc((size_t)p->width * (size_t)p->height * 3);
		err = -ENOMEM;
		if (!rgb)
			goto out;
		err = draw_columns(q, rgb);
		if (err)
			goto out;
		im.ymin = pn->pr.ymin;
		im.ymax = pn->pr.ymax;
		im.nbuckets = pn->pr.nbuckets;
		im.present = present_json(&pn->pr.ks);
	} else {
		err = heatmap__build(&in, p, &hm);
		if (err)
			goto out;
		im.ymin = hm->ymin;
		im.ymax = hm->ymax;
		im.nbuckets = hm->nbuckets;
		im.present = json_incref(hm->present);
	}
	im.width = p->width;
	im.height = p->height;
	err = -ENOMEM;
	if (!im.present)
		goto out;
	err = png__encode_rgb(hm ? hm->rgb : rgb, p->width, p->height, &png, &len);
	if (!err)
		err = base64__encode(png, len, &im.image);
	if (err)
		goto out;
	/* the answer for these versions */
	heatmap_live_image__free(&pn->res);
	err = copy_image(&im, &pn->res);
	if (err)
		goto out;
	pn->res_start = q->start;
	memcpy(pn->res_ver, q->ver, q->nslots * sizeof(*q->ver));
	pn->bytes = strlen(pn->res.image) + q->nslots * (sizeof(struct column) + sizeof(uint64_t));
	for (i = 0; i < pn->nslots; i++)
		pn->bytes += pn->cols[i].bytes;
	*out = im;
	memset(&im, 0, sizeof(im));
out:
	if (err) {
		heatmap_live_image__free(&pn->res);
		pn->res_start = INT64_MIN;
	}
	heatmap_live_image__free(&im);
	heatmap__free(hm);
	free(png);
	free(rgb);
	return err;
}
