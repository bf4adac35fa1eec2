/* libFuzzer harness for the agent's input parsers: token files, form
 * bodies, route matching and listen addresses. Build (after make) and run:
 *   tests/fuzz/build.sh build fuzz_api
 *   build/fuzz/fuzz_api -max_total_time=60 tests/fuzz/corpus/fuzz_api
 * The first input byte picks the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], buf[512], addr[128];
	const char *params[4];
	struct token_set *ts = NULL;
	json_t *o = NULL;
	char *s;
	int port;
	bool lo;

	if (size < 1)
		return 0;
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 4) {
	case 0:
		if (!tokens__parse(s, size - 1, "fuzz", &ts, err, sizeof(err))) {
			tokens__lookup(ts, s, strlen(s));
			tokens__free(ts);
		}
		break;
	case 1:
		if (!form__parse(s, size - 1, &o, err, sizeof(err)))
			json_decref(o);
		break;
	case 2:
		route__match("/ca/instrumentations/:id/value/heatmap/image", s, params, 4, buf, sizeof(buf));
		route__match(s, "/ca/instrumentations/1/clone", params, 4, buf, sizeof(buf));
		break;
	case 3:
		server__parse_listen(s, addr, sizeof(addr), &port, &lo);
		agent__clean(s, buf, sizeof(buf));
		break;
	}
	free(s);
	return 0;
}
