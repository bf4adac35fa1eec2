#!/usr/bin/env python3
"""Fill the instrumentations of a kvmscope agent's state directory with
synthetic data: for each instrumentation in STATE_DIR/state.json, a data file
STATE_DIR/data/<id>.json in the shape instr__data_to_json() writes, so that
the agent restarts with every slot of its retention window full. Prints the
number of cells written.

usage: gen_state.py STATE_DIR KEYS BUCKETS [NOW]

Every slot of every instrumentation gets KEYS discrete keys ("vm01", ...;
joined per field when several discrete fields are decomposed) and, when a
numeric field is decomposed, BUCKETS non-empty buckets per key.
"""
import json
import os
import sys
import time

NUMERIC = {"latency", "subsecond", "size", "offset"}


def bucket_lows(field, n):
    if field == "subsecond":		# linear, 10 ms buckets
        return [10 * (j % 100) for j in range(n)]
    # log-linear as engine/bucket.h: base 10, 20 steps an order, from 1 us
    # (the engine accepts exact bucket lower bounds only)
    lows, m = [], 3
    while len(lows) < n:
        step = 10 ** (m + 1) // 20
        lows += range(10 ** m, 10 ** (m + 1), step)
        m += 1
    return lows[:n]


def value(keys, numeric, lows, t):
    def dist(k):
        return [[[lo, lo + 1], 1 + (t * 7 + k * 13 + j) % 50] for j, lo in enumerate(lows)]
    if not keys:
        return dist(0) if numeric else 1 + t % 100
    if numeric:
        return {key: dist(k) for k, key in enumerate(keys)}
    return {key: 1 + (t + k) % 100 for k, key in enumerate(keys)}


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sdir, nkeys, nbuckets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    now = int(sys.argv[4]) if len(sys.argv) > 4 else int(time.time())
    with open(os.path.join(sdir, "state.json")) as f:
        state = json.load(f)
    os.makedirs(os.path.join(sdir, "data"), exist_ok=True)
    cells = 0
    for inst in state["instrumentations"]:
        spec = inst["spec"]
        decomp = spec.get("decomposition", [])
        gran, ret = spec["granularity"], spec["retention-time"]
        numeric = [d for d in decomp if d in NUMERIC]
        discrete = [d for d in decomp if d not in NUMERIC]
        keys = []
        if discrete:
            keys = [",".join(["vm%02d" % (k + 1)] + ["%d" % k] * (len(discrete) - 1))
                    for k in range(nkeys)]
        lows = bucket_lows(numeric[0], nbuckets) if numeric else []
        last = now // gran * gran - gran
        slots = []
        for t in range(last - ret + gran, last + 1, gran):
            slots.append({"start_time": t, "value": value(keys, bool(numeric), lows, t)})
            cells += max(len(keys), 1) * max(len(lows), 1)
        data = {"metric": "%s.%s" % (spec["module"], spec["stat"]),
                "decomposition": decomp, "granularity": gran, "slots": slots}
        with open(os.path.join(sdir, "data", "%d.json" % inst["id"]), "w") as f:
            json.dump(data, f, separators=(",", ":"))
    print(cells)


main()
