/* libspng writes into its own growing buffer; we hand that buffer to the
 * caller as is, so no copy of the image is made. */
#include "render/png.h"

#include <errno.h>
#include <spng.h>
#include <stdlib.h>

#include "common/log.h"

static int encode(const uint8_t *rgb, int w, int h, int filter, unsigned char **out, size_t *len)
{
	struct spng_ihdr ihdr = {
		.width = (uint32_t)w,
		.height = (uint32_t)h,
		.bit_depth = 8,
		.color_type = SPNG_COLOR_TYPE_TRUECOLOR,
	};
	spng_ctx *ctx;
	void *buf;
	int err, rc;

	if (!rgb || !out || !len || w < 1 || h < 1 || w > 65535 || h > 65535)
		return -EINVAL;
	ctx = spng_ctx_new(SPNG_CTX_ENCODER);
	if (!ctx)
		return -ENOMEM;
	rc = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
	/* heatmaps are runs of flat colour that deflate squeezes well as they
	 * are: per-row filter selection costs more time than it saves bytes
	 * (bench/heatmap.sh measures both) */
	if (!rc && !filter)
		rc = spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_DISABLE_FILTERING);
	/* deflate at level 1: a live panel's refresh is mostly the encoding
	 * (2.5 ms of 3.2 at the default level, 0.7 ms at 1), for files about
	 * twice as large (5 KB for 600x300), same pixels */
	if (!rc && !filter)
		rc = spng_set_option(ctx, SPNG_IMG_COMPRESSION_LEVEL, 1);
	if (!rc)
		rc = spng_set_ihdr(ctx, &ihdr);
	if (!rc)
		rc = spng_encode_image(ctx, rgb, (size_t)w * h * 3, SPNG_FMT_PNG,
				       SPNG_ENCODE_FINALIZE);
	if (rc) {
		log_error("render", "png encode %dx%d: %s", w, h, spng_strerror(rc));
		err = rc == SPNG_EMEM ? -ENOMEM : -EIO;
		goto out;
	}
	/* ownership of the buffer passes from the context to us */
	buf = spng_get_png_buffer(ctx, len, &rc);
	if (!buf) {
		log_error("render", "png encode %dx%d: %s", w, h, spng_strerror(rc));
		err = -EIO;
		goto out;
	}
	*out = buf;
	err = 0;
out:
	spng_ctx_free(ctx);
	return err;
}

int png__encode_rgb(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *len)
{
	return encode(rgb, w, h, 0, out, len);
}

int png__encode_rgb_filtered(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *len)
{
	return encode(rgb, w, h, 1, out, len);
}
