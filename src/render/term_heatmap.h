/* Heatmaps in a terminal, for `kvmscope watch` over ssh.
 *
 * One character column per time slot (latest at the right); each character
 * is two heatmap cells stacked, drawn as an upper half block (U+2580) with
 * the top cell as the 24-bit foreground and the bottom cell as the
 * background. Without colour (not a tty, NO_COLOR) each character is a
 * shade from the ramp " .:-=+*#%@" of the stronger of its two cells. */
#ifndef KVMSCOPE_RENDER_TERM_HEATMAP_H
#define KVMSCOPE_RENDER_TERM_HEATMAP_H

#include <stddef.h>
#include <stdio.h>

#include "render/heatmap.h"

#define TERM_SHADES " .:-=+*#%@"

/* Draws a heatmap with a title line, y-axis labels in y_unit, an x-axis
 * with the first and last slot times (HH:MM:SS, local time) and a legend.
 * Here params->width is the most plot columns (older slots beyond it are
 * dropped) and params->height the plot rows in characters (2..100); every
 * other parameter means what it means for images. Returns 0, -EINVAL (see
 * heatmap__last_error()), -ENOMEM, -EIO when out fails. */
int term_heatmap__draw(FILE *out, const struct heatmap_input *in,
		       const struct heatmap_params *params, const char *title,
		       const char *y_unit, int use_color);

/* Writes v in a human unit into buf: for y_unit "ns", "us"/"µs", "ms", "s"
 * the time unit that keeps the number under 1000 ("250ms", "10µs", "1.5s");
 * for "bytes"/"B" powers of 1024 ("4KB"); otherwise k/M/G and the unit as
 * given. */
void term__format_value(double v, const char *y_unit, char *buf, size_t len);

/* Whether to colour output going to f: a tty and NO_COLOR unset or empty. */
int term__use_color(FILE *f);

#endif
