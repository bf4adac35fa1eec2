/* Base64 (RFC 4648 section 4, with padding) for the API's "image" field.
 * None of our Debian dependencies exports an encoder, hence this one. */
#ifndef KVMSCOPE_RENDER_BASE64_H
#define KVMSCOPE_RENDER_BASE64_H

#include <stddef.h>

/* Characters base64__encode writes for len bytes, without the NUL. */
size_t base64__encoded_len(size_t len);

/* Encodes len bytes of data. On success *out is a malloc'd NUL-terminated
 * string the caller frees. Returns 0, -EINVAL, -ENOMEM. */
int base64__encode(const void *data, size_t len, char **out);

#endif
