/* Tables in a terminal for values that are not heatmaps: a scalar, or a
 * discrete decomposition {"key": number, ...}. */
#ifndef KVMSCOPE_RENDER_TERM_TABLE_H
#define KVMSCOPE_RENDER_TERM_TABLE_H

#include <stdio.h>
#include <jansson.h>

/* Draws value under title: a number as "title: 573", a map as rows sorted
 * by value (largest first, then by key) with a bar scaled to the largest;
 * null or {} as "(no data)". Returns 0, -EINVAL when value is neither
 * (e.g. a distribution: draw those with term_heatmap__draw), -ENOMEM, -EIO. */
int term_table__draw(FILE *out, const json_t *value, const char *title, int use_color);

#endif
