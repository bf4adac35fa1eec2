/* Small helpers around jansson shared by the engine and the API. */
#ifndef KVMSCOPE_COMMON_JSON_UTIL_H
#define KVMSCOPE_COMMON_JSON_UTIL_H

#include <jansson.h>

/* "an object", "an array", "a string", "an integer", "a real number",
 * "true", "false", "null": for messages such as "granularity must be an
 * integer, got a string". */
const char *json__type_name(const json_t *j);

#endif
