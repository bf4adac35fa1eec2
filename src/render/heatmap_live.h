/* Live heatmap panels: a panel that asks again a second later shares the
 * work of its previous answer.
 *
 * A process-wide cache keeps, per panel (an instrumentation, the heatmap
 * parameters and the number of slots), the columns of its last image: each
 * column's cells, the values spread over the y-buckets and its colours,
 * stamped with the version of the slot they came from
 * (instr__slot_version). A request copies under the owner's lock only the
 * slots whose version changed, draws only the columns that are new, and
 * reuses the others while the keys drawn, ymax and the colour scale (the
 * ranks of the distinct values, or the linear maximum) stay as they were;
 * when one of those changes every column is coloured again (spread again
 * for keys or ymax) from the cells the cache holds. A request whose slots
 * all still have the versions of the last answer gets that answer. The
 * answer is byte for byte what heatmap__build, png__encode_rgb and
 * base64__encode give for the same window.
 *
 * Columns are reused when each holds one slot (nslots <= width); a window
 * of more slots than pixels is copied and drawn whole unless nothing changed.
 *
 * Memory: HEATMAP_LIVE_BYTES for all panels together, at most
 * HEATMAP_LIVE_PANELS of them; the least recently used panel not in use goes
 * first.
 *
 * Use, per request:
 *   heatmap_live__begin     finds (or makes) the panel and holds it: other
 *                           requests for it wait (take it before the
 *                           owner's lock, never while holding it)
 *   heatmap_live__copy      under the owner's lock, in pieces of at most
 *                           max_cells cells like instr__window_append
 *   heatmap_live__image     outside the lock
 *   heatmap_live__end       lets go of the panel (always, after begin)
 */
#ifndef KVMSCOPE_RENDER_HEATMAP_LIVE_H
#define KVMSCOPE_RENDER_HEATMAP_LIVE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "engine/instr.h"
#include "engine/window.h"
#include "render/heatmap.h"

#define HEATMAP_LIVE_BYTES (64UL << 20)
#define HEATMAP_LIVE_PANELS 32

struct heatmap_live_panel;

/* One request; the caller's, released by heatmap_live__end. */
struct heatmap_live_req {
	struct heatmap_live_panel *panel;
	const struct heatmap_params *p;	/* borrowed until end */
	int64_t start, g;
	size_t nslots;
	uint64_t *ver;			/* [nslots] the versions copied */
	unsigned char *stale;		/* [nslots] slot copied into w */
	size_t nstale;
	int same;			/* every version as in the panel's last answer */
	struct dist_window w;		/* the stale slots' cells; other slots empty */
	/* what heatmap_live__image did: columns spread and coloured anew (the
	 * rest was reused), or whether the last answer was given as it was */
	size_t nspread, ncoloured;
	int reused;
};

/* What heatmap/image answers. Owned by the caller:
 * heatmap_live_image__free. */
struct heatmap_live_image {
	char *image;			/* base64 of the PNG */
	double ymin, ymax;
	int nbuckets, width, height;
	json_t *present;		/* sorted keys with data */
};

/* Parameters are checked here (-EINVAL, heatmap__last_error() says why);
 * -ENOMEM. On failure nothing is held and end need not be called. */
int heatmap_live__begin(struct heatmap_live_req *q, uint64_t instr_uid,
			const struct heatmap_params *p, int64_t start, int64_t g, size_t nslots);
/* Looks at the slots from slot `from` on (from = what earlier calls
 * returned, summed) and copies those the panel lacks; stops after
 * max_cells cells (0: no limit) unless the first slot alone has more.
 * Returns the slots looked at, or -ENOMEM, -EINVAL. */
long heatmap_live__copy(struct heatmap_live_req *q, const struct instr *in, size_t from,
			size_t max_cells);
/* After the copy: the image into out. 0, -EINVAL (heatmap__last_error()),
 * -ENOMEM, -EIO (PNG encoding), -EAGAIN (the window's buckets are not the
 * panel's: the panel starts over, ask again; an instrumentation's buckets
 * never change, so only a caller mixing instrumentations under one uid
 * sees it). */
int heatmap_live__image(struct heatmap_live_req *q, struct heatmap_live_image *out);
void heatmap_live__end(struct heatmap_live_req *q);
void heatmap_live_image__free(struct heatmap_live_image *im);

/* Drops every panel not in use (tests, and the memory check of the bench). */
void heatmap_live__flush(void);
/* Bytes the panels hold. */
size_t heatmap_live__bytes(void);

#endif
