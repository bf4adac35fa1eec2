# Shared helpers for the benchmarks. Source it after setting BUILD (the build
# folder, default build/). Each benchmark prints its own lines and reports
# its headline figures with `result`, which bench/run-all.sh collects into
# the summary table (BENCH_RESULTS: a TSV file, one figure per line).
set -u
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$BENCH_ROOT/build}
case $BUILD in /*) ;; *) BUILD=$BENCH_ROOT/$BUILD ;; esac
KVMSCOPE=$BUILD/bin/kvmscope
VMLOAD=$BUILD/bin/vmload
export LC_ALL=C

# result METRIC VALUE UNIT COMPARISON
result() {
	printf '  => %-46s %14s %-12s %s\n' "$1" "$2" "$3" "$4"
	if [ -n "${BENCH_RESULTS:-}" ]; then
		printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$BENCH_RESULTS"
	fi
}
say() { echo "# $*"; }
die() { echo "bench: $*" >&2; exit 1; }
# A benchmark that cannot run here says why, loudly, and reports it.
bench_skip() { echo "# SKIP $*" >&2; result "$BENCH_NAME" "skipped" "-" "$*"; exit 0; }

need_root_kvm() {
	[ "$(id -u)" = 0 ] || bench_skip "needs root (BPF, /dev/kvm)"
	[ -c /dev/kvm ] || bench_skip "/dev/kvm is absent on this host"
	[ -x "$KVMSCOPE" ] && [ -x "$VMLOAD" ] || die "no binaries in $BUILD/bin: run 'make' first"
	mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
}
need_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || bench_skip "'$c' is not installed (make deps installs it)"
	done
}

# median of the numbers on stdin; percentile P of them (nearest rank)
median() { sort -g | awk '{a[NR]=$1} END {if (!NR) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
percentile() { sort -g | awk -v p="$1" '{a[NR]=$1} END {if (!NR) {print "nan"; exit} i=int((p*NR+99)/100); if (i<1) i=1; print a[i]}'; }
# calc EXPR: floating-point arithmetic
calc() { awk "BEGIN {printf \"%.6g\", $*}"; }
fmt() { awk -v v="$2" "BEGIN {printf \"$1\", v}"; }

TMPD=$(mktemp -d /tmp/kvmscope-bench.XXXXXX)
bench_pids=()
BPF_STATS_WAS=
bpf_stats_on() {
	BPF_STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
	sysctl -qw kernel.bpf_stats_enabled=1
}
bpf_stats_off() {
	[ -n "$BPF_STATS_WAS" ] && sysctl -qw kernel.bpf_stats_enabled="$BPF_STATS_WAS"
	BPF_STATS_WAS=
}
bench_cleanup() {
	local p
	bpf_stats_off
	for p in "${bench_pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$TMPD"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# BPF program ids a process holds (program fds and link fds both name one)
prog_ids_of() {
	local f
	for f in /proc/"$1"/fdinfo/*; do
		awk '/^prog_id:/ {print $2}' "$f" 2>/dev/null
	done | sort -un
}
# bpf-prog and bpf_link fds a process holds
bpf_fds_of() {
	ls -l /proc/"$1"/fd 2>/dev/null | grep -cE 'anon_inode:bpf[-_](prog|link)'
}
# wait_progs PID N [SECONDS]: until PID holds at least N BPF programs
wait_progs() {
	local i
	for ((i = 0; i < ${3:-20} * 10; i++)); do
		[ "$(prog_ids_of "$1" | wc -l)" -ge "$2" ] && return 0
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# prog_stats IDS...: "id name run_cnt run_time_ns" per program
prog_stats() {
	local ids
	ids=$(printf '%s,' "$@"); ids="[${ids%,}]"
	bpftool prog show -j | jq -r --argjson ids "$ids" \
		'.[] | select(.id as $i | $ids | index($i)) | "\(.id) \(.name) \(.run_cnt // 0) \(.run_time_ns // 0)"'
}
# guest rate from a vmload truth file: exits per second of guest run time
truth_rate() {
	jq -r '([.vcpus[].io_exits, .vcpus[].mmio_exits] | add) / ((.end_realtime_ns - .start_realtime_ns) / 1e9)' "$1"
}
# wait_http URL [SECONDS]
wait_http() {
	local i
	for ((i = 0; i < ${2:-20} * 10; i++)); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.1
	done
	return 1
}

# start_agent STATE_DIR: an agent on a free loopback port (AGENT, PORT, URL)
start_agent() {
	PORT=${PORT:-$((20000 + RANDOM % 20000))}
	URL=http://127.0.0.1:$PORT
	"$KVMSCOPE" agent --listen 127.0.0.1:"$PORT" --state-dir "$1" >>"$TMPD/agent.log" 2>&1 &
	AGENT=$!
	bench_pids+=("$AGENT")
	wait_http "$URL/ca" 60 || die "agent did not start: $(tail -5 "$TMPD/agent.log")"
}
# stop_agent: SIGTERM, wait until it has saved its state and exited
stop_agent() {
	kill -TERM "$AGENT" 2>/dev/null
	wait "$AGENT" 2>/dev/null
}
# create_instr JSON: POST it, print the new id
create_instr() {
	curl -sf -XPOST -H 'Content-Type: application/json' -d "$1" "$URL/ca/instrumentations" | jq -r .id
}
rss_kib() { awk '/^VmRSS:/ {print $2}' /proc/"$1"/status; }

# before_tree TARGET: sets old_root to a tree of revision $BEFORE with TARGET
# (a make target, e.g. build/bin/kvmscope) built, or to $BEFORE_BUILD when
# given (a tree already built), for side-by-side runs against it.
before_tree() {
	if [ -n "${BEFORE_BUILD:-}" ]; then
		old_root=$BEFORE_BUILD
		return
	fi
	old_root=$TMPD/before
	mkdir -p "$old_root"
	git -C "$BENCH_ROOT" archive "$BEFORE" | tar -x -C "$old_root" || die "no revision $BEFORE"
	say "building kvmscope $BEFORE in $old_root (a few minutes)"
	make -C "$old_root" -j"$(nproc)" "$1" >"$TMPD/before.log" 2>&1 ||
		die "kvmscope $BEFORE does not build: $(tail -5 "$TMPD/before.log")"
}
