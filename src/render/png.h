/* PNG encoding of rendered heatmaps (libspng). */
#ifndef KVMSCOPE_RENDER_PNG_H
#define KVMSCOPE_RENDER_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Encodes w x h 8-bit RGB pixels (row-major from the top, 3 bytes a pixel)
 * as a PNG. On success *out is a malloc'd buffer of *len bytes that the
 * caller frees. Returns 0, -EINVAL for bad arguments, -ENOMEM, or -EIO when
 * libspng refuses (the reason is logged). */
int png__encode_rgb(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *len);
/* The same with libspng's adaptive per-row filtering, which png__encode_rgb
 * leaves off: on heatmaps it costs several times the encoding for a file a
 * kilobyte or so smaller (bench/heatmap.sh shows both). Same ownership. */
int png__encode_rgb_filtered(const uint8_t *rgb, int w, int h, unsigned char **out, size_t *len);

#endif
