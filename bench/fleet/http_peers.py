#!/usr/bin/env python3
"""Simulated peers for the HTTP poller that bench/fleet_nats.sh compares
with (kvmscope before the NATS fleet: `agent --peers`, libcurl, at most 64
peers). One process, one listening port per peer, answering what the
poller asks as a kvmscope agent would: GET /ca, POST/GET/PUT/DELETE of
instrumentations, and value/raw of the newest slots with values of the
instrumentation's arity (scalar, a map of 8 VMs, a distribution of 8
buckets, in CA's inclusive [lo, hi] form). Counts the bytes in and out, and
for each slot the delay from its "drain" (the second's end + 150 ms, as the
agent's) to the first answer that carried it.

usage: http_peers.py FIRST_PORT N OUT_JSON   (runs until SIGTERM)"""
import asyncio, json, signal, sys, time, urllib.parse

first, n, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
stats = {"bytes_in": 0, "bytes_out": 0, "requests": 0}
delays = []
peers = [dict(next_id=1, instrs={}, seen={}) for _ in range(n)]


def value_of(shape, p):
    if shape == "scalar":
        return p + 1
    if shape == "map":
        return {"vm-%d-%d" % (p % 50, i): i + 1 for i in range(8)}
    return [[[i * 100000, (i + 1) * 100000 - 1], i + 3] for i in range(8)]


def answer(p, method, path, body):
    peer = peers[p]
    u = urllib.parse.urlparse(path)
    parts = [x for x in u.path.split("/") if x]
    if parts == ["ca"]:
        return 200, {"name": "kvmscope"}
    if parts == ["ca", "instrumentations"] and method == "POST":
        spec = json.loads(body or b"{}")
        dec = spec.get("decomposition", [])
        shape = "dist" if "subsecond" in dec else "map" if dec else "scalar"
        i = peer["next_id"]
        peer["next_id"] += 1
        peer["instrs"][i] = dict(shape=shape, crtime=int(time.time() * 1000))
        return 201, {"id": str(i), "crtime": peer["instrs"][i]["crtime"], "granularity": 1}
    if len(parts) >= 3 and parts[:2] == ["ca", "instrumentations"] and parts[2].isdigit():
        i = int(parts[2])
        ins = peer["instrs"].get(i)
        if not ins:
            return 404, {"code": "ResourceNotFound", "message": "no such instrumentation"}
        if len(parts) == 3:
            if method == "DELETE":
                del peer["instrs"][i]
                return 204, None
            return 200, {"id": str(i), "crtime": ins["crtime"], "granularity": 1}
        if parts[3:] == ["value", "raw"]:
            q = urllib.parse.parse_qs(u.query)
            start = int(q["start_time"][0])
            npts = int(q.get("ndatapoints", ["1"])[0])
            now = time.time()
            pts = []
            for t in range(start, start + npts):
                if t + 1.15 > now:
                    break  # not drained yet: the agent would show it empty
                key = (i, t)
                if key not in peer["seen"]:
                    peer["seen"][key] = True
                    delays.append(now - (t + 1.15))
                pts.append({"start_time": t, "duration": 1, "end_time": t + 1,
                            "value": value_of(ins["shape"], p), "transformations": {}})
            return 200, pts
    return 404, {"code": "ResourceNotFound", "message": "no such path"}


async def serve(reader, writer, p):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for l in lines[1:]:
                if l.lower().startswith("content-length:"):
                    length = int(l.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            status, obj = answer(p, method, path, body)
            data = b"" if obj is None else json.dumps(obj).encode()
            resp = ("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(data))).encode() + data
            writer.write(resp)
            stats["bytes_in"] += len(head) + length
            stats["bytes_out"] += len(resp)
            stats["requests"] += 1
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    writer.close()


def dump():
    d = sorted(delays)
    res = dict(stats, slots=len(d),
               p50_ms=d[len(d) // 2] * 1000 if d else None,
               p99_ms=d[len(d) * 99 // 100] * 1000 if d else None)
    with open(out_path, "w") as f:
        json.dump(res, f)


async def main():
    for p in range(n):
        await asyncio.start_server(lambda r, w, p=p: serve(r, w, p), "127.0.0.1", first + p)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    dump()

asyncio.run(main())
