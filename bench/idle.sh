#!/bin/bash
# Idle cost: `kvmscope agent` with no instrumentations for IDLE_SECONDS
# (default 60): BPF programs and links it holds (must be 0: nothing is
# attached while nothing is instrumented), CPU time it used and its RSS.
# Usage: bench/idle.sh [BUILD_DIR]
BUILD=${1:-${BUILD:-build}}
BENCH_NAME=idle
. "$(dirname "$0")/lib.sh"
IDLE_SECONDS=${IDLE_SECONDS:-60}
need_root_kvm
PORT=${PORT:-$((20000 + RANDOM % 20000))}

"$KVMSCOPE" agent --listen 127.0.0.1:"$PORT" --state-dir none >"$TMPD/agent.log" 2>&1 &
AGENT=$!
bench_pids+=("$AGENT")
wait_http "http://127.0.0.1:$PORT/ca" || die "agent did not start: $(cat "$TMPD/agent.log")"
n=$(curl -s "http://127.0.0.1:$PORT/ca/instrumentations" | jq length)
[ "$n" = 0 ] || die "agent has $n instrumentations, expected none"

tick=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }	# utime + stime
t0=$(cpu_ticks "$AGENT")
say "agent pid $AGENT idle for ${IDLE_SECONDS}s ..."
fds_max=0
for ((i = 0; i < IDLE_SECONDS; i++)); do
	sleep 1
	f=$(bpf_fds_of "$AGENT")
	[ "$f" -gt "$fds_max" ] && fds_max=$f
done
t1=$(cpu_ticks "$AGENT")
rss=$(awk '/^VmRSS:/ {print $2}' /proc/"$AGENT"/status)
threads=$(awk '/^Threads:/ {print $2}' /proc/"$AGENT"/status)
cpu_ms=$(calc "($t1 - $t0) * 1000 / $tick")

result "idle agent: BPF prog/link fds" "$fds_max" "fds" "max over ${IDLE_SECONDS}s, checked each second (target 0)"
result "idle agent: CPU time" "$(fmt %.0f "$cpu_ms")" "ms/${IDLE_SECONDS}s" "$(fmt %.3f "$(calc "100 * $cpu_ms / ($IDLE_SECONDS * 1000)")")% of one core (utime+stime, ${tick} Hz ticks)"
result "idle agent: RSS" "$(fmt %.1f "$(calc "$rss / 1024")")" "MiB" "$threads threads"
[ "$fds_max" = 0 ] || { echo "bench: the idle agent holds BPF programs" >&2; exit 1; }
