#!/bin/bash
# The agent's HTTP edge and its cost bounds under hostile or careless
# clients: ambiguous message framing, too many parameters, HEAD, raw reads
# longer than the retention, trickling pre-auth connections from the same
# address as the operator, and heatmaps as large as the API allows.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"

post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
alive() { kill -0 "$AGENT_PID" 2>/dev/null && [ "$(code GET /ca)" = 200 ]; }
# raw_status REQUEST: sends REQUEST (printf escapes) as is, prints the status code
raw_status() {
	python3 - "$PORT" "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
try:
    data = s.recv(4096).decode("latin-1")
    print(data.split(" ")[1] if data.startswith("HTTP/") else "none")
except Exception:
    print("none")
EOF
}
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/$AGENT_PID/status; }

LOG=$TMPD/agent.log
agent_start "$LOG" --state-dir none || { not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done; }

# ---- framing: one Content-Length or chunked, never both or two
body='{"module":"vm","stat":"exits"}'
c=$(raw_status "POST /ca/instrumentations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n$body")
expect_eq "two Content-Length headers -> 400" "$c" 400
c=$(raw_status "POST /ca/instrumentations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n$body")
expect_eq "Content-Length with Transfer-Encoding -> 400" "$c" 400
expect_eq "nothing was created by them" "$(curl -s "$BASE/ca/instrumentations" | jq length)" 0

# ---- too many parameters: a precise answer, quickly
q=$(python3 -c 'print("&".join("p%d=1" % i for i in range(600)))')
t0=$(date +%s%N)
c=$(curl -s -m 5 -o "$TMPD/body" -w '%{http_code}' "$BASE/ca?$q")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "600 query parameters -> 414 or 431 ($c) in $ms ms" test "$c" = 414 -o "$c" = 431
check "with a JSON error body" jq -e .message "$TMPD/body"

# ---- HEAD where GET exists
for p in /ca /ca/instrumentations /ca/vms /; do
	c=$(curl -s -m 5 -I -o "$TMPD/head" -w '%{http_code}' "$BASE$p")
	expect_eq "HEAD $p" "$c" 200
done

# ---- raw reads: no longer than the retention, and no lock held for long
I=$(post '{"module":"vm","stat":"exits","decomposition":["vm"],"retention-time":600}' | jq -r .id)
check "an instrumentation to read (id $I)" test "$I" -ge 1
now=$(date +%s)
c=$(code GET "/ca/instrumentations/$I/value/raw?start_time=$((now - 604800))&duration=604800&ndatapoints=3600")
check "duration x ndatapoints beyond the retention -> 400 ($c)" test "$c" = 400
check "saying why" grep -qi 'retention' "$TMPD/body"
# the longest legal read, repeated, while the catalogue is asked for
( for _ in 1 2 3 4; do curl -s -o /dev/null "$BASE/ca/instrumentations/$I/value/raw?start_time=$((now - 600))&duration=1&ndatapoints=600"; done ) &
reader=$!
slow=0
for _ in $(seq 10); do
	t=$(curl -s -o /dev/null -m 5 -w '%{time_total}' "$BASE/ca")
	awk -v t="$t" 'BEGIN { exit !(t >= 1) }' && slow=$((slow + 1))
	sleep 0.1
done
wait $reader
expect_eq "GET /ca under long raw reads: answers slower than 1 s" "$slow" 0

# ---- trickling pre-auth connections from the operator's own address
python3 "$(dirname "$0")/../reliability/slowloris.py" 127.0.0.1 "$PORT" 128 12 127.0.0.1 >"$TMPD/slow.out" 2>&1
nopen=$(jq .slow_opened "$TMPD/slow.out" 2>/dev/null)
nalive=$(jq .slow_alive_at_end "$TMPD/slow.out" 2>/dev/null)
nfail=$(jq .normal_failed "$TMPD/slow.out" 2>/dev/null)
worst=$(jq '.normal | max' "$TMPD/slow.out" 2>/dev/null)
check "128 trickling connections opened from 127.0.0.1 ($nopen)" test "${nopen:-0}" -ge 100
expect_eq "none of them is left open after 12 s of trickling" "${nalive:-x}" 0
check "a loopback client is answered, within 1 s, while they trickle (failed ${nfail:-?}, worst ${worst:-?} s)" \
	sh -c "[ '${nfail:-1}' = 0 ] && awk -v t='${worst:-9}' 'BEGIN { exit !(t < 1) }'"

# ---- heatmaps as large as the API allows: refused or bounded, never an OOM
H=$(post '{"module":"vm","stat":"exits","decomposition":["vm","latency"]}' | jq -r .id)
"$VMLOAD" -name guest=hh-$$ --pio vcpu=0,count=1000000,rate=2000 --duration 20 >/dev/null 2>&1 &
cleanup_pids+=("$!")
sleep 5
rss0=$(rss_kb)
big="/ca/instrumentations/$H/value/heatmap/image?width=4096&height=4096&nbuckets=1000&decompose_all=true&duration=600&start_time=$(( $(date +%s) - 600 ))"
for i in 1 2 3 4 5 6 7 8; do
	curl -s -D "$TMPD/big.$i.h" -o "$TMPD/big.$i.b" -w '%{http_code}\n' -m 60 "$BASE$big" >>"$TMPD/big.codes" &
done
peak=0 ca_slow=0
for _ in $(seq 20); do
	r=$(rss_kb); [ "${r:-0}" -gt "$peak" ] && peak=$r
	t=$(curl -s -o /dev/null -m 5 -w '%{time_total}' "$BASE/ca")
	awk -v t="$t" 'BEGIN { exit !(t >= 1) }' && ca_slow=$((ca_slow + 1))
	sleep 0.25
done
wait $(jobs -p | grep -v "^$AGENT_PID\$") 2>/dev/null
check "eight maximal heatmaps at once: each answered 200 or 503 ($(sort "$TMPD/big.codes" | uniq -c | tr '\n' ' '))" \
	sh -c "! grep -qvE '^(200|503)$' '$TMPD/big.codes'"
bad503=0
for i in 1 2 3 4 5 6 7 8; do
	grep -q '^HTTP/1.1 503' "$TMPD/big.$i.h" 2>/dev/null || continue
	grep -qi '^Retry-After: 1' "$TMPD/big.$i.h" && jq -e '.message | test("budget")' "$TMPD/big.$i.b" >/dev/null || bad503=$((bad503 + 1))
done
expect_eq "every 503 says why and when to retry" "$bad503" 0
grow=$(( (peak - rss0) / 1024 ))
check "the agent's RSS grew by at most 448 MiB under them, the budget plus slack ($grow MiB)" test "$grow" -le 448
expect_eq "GET /ca slower than 1 s while they ran" "$ca_slow" 0
check "agent alive after the heavy heatmaps" alive
agent_stop
tap_done
