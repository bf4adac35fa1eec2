#!/bin/bash
# make demo: a few vmload guests with known behaviour, the agent with its web
# UI, and kvmscope's terminal views of them. Runs for DEMO_SECONDS (default
# 120) or until Ctrl-C, then cleans up everything it made.
set -u
OUT=${1:-build}
cd "$(dirname "$0")/.."
KVMSCOPE=$PWD/$OUT/bin/kvmscope
VMLOAD=$PWD/$OUT/bin/vmload
SECONDS_TO_RUN=${DEMO_SECONDS:-120}
PORT=${DEMO_PORT:-7134}
STATE=$(mktemp -d /tmp/kvmscope-demo.XXXXXX)
pids=()
LOOP=""

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	ip link del ksdemo0 2>/dev/null
	rm -rf "$STATE"
}
trap cleanup EXIT INT TERM

if [ ! -c /dev/kvm ]; then
	echo "kvmscope demo: /dev/kvm is missing: this host cannot run KVM guests" >&2
	exit 1
fi

# a loop device as a VM's virtual disk
truncate -s 64M "$STATE/disk.img"
LOOP=$(losetup -f --show "$STATE/disk.img")

echo "== starting the agent on http://127.0.0.1:$PORT/"
"$KVMSCOPE" agent --listen "127.0.0.1:$PORT" --state-dir "$STATE/agent" --web-dir web \
	2> "$STATE/agent.log" &
pids+=($!)

echo "== starting three vmload guests"
# web1: an interrupt every second at +250 ms, steady port I/O
"$VMLOAD" -name guest=web1 --vcpus 2 --duration "$SECONDS_TO_RUN" \
	--irq vcpu=0,vector=0x31,via=ioapic,period_ms=1000,phase_ms=250,count=$SECONDS_TO_RUN \
	--pio vcpu=1,count=$((SECONDS_TO_RUN * 2000)),rate=2000 > /dev/null &
pids+=($!)
# db2: a disk on the loop device, and a timer at +700 ms
"$VMLOAD" -name guest=db2 --duration "$SECONDS_TO_RUN" \
	--disk file="$LOOP",reads=$((SECONDS_TO_RUN * 20)),writes=$((SECONDS_TO_RUN * 10)),size=4096,pattern=rand,rate=30 \
	--irq vcpu=0,vector=0x32,via=msi,period_ms=500,phase_ms=200,count=$((SECONDS_TO_RUN * 2)) > /dev/null &
pids+=($!)
# batch3: two guest "processes" (CR3 roots) sharing a vCPU 80:20, and a NIC
"$VMLOAD" -name guest=batch3 --vcpus 2 --duration "$SECONDS_TO_RUN" \
	--cr3 vcpu=0,weights=4:1,unit=500,duration=$SECONDS_TO_RUN \
	--nic tap=ksdemo0,tx=$((SECONDS_TO_RUN * 10)),size=512,rate=10,vcpu=1 > /dev/null &
pids+=($!)
sleep 2

echo
echo "== kvmscope vms"
"$KVMSCOPE" vms
echo
echo "== kvmscope stat 1 5   (kvmstat: per-vCPU exit rates)"
"$KVMSCOPE" stat 1 5
echo
echo "== kvmscope watch vm.irqs -d vm,subsecond -n 8   (the subsecond-offset heatmap)"
"$KVMSCOPE" watch vm.irqs -d vm,subsecond -n 8
echo
echo "== kvmscope watch vm.samples -d mmuctx -n 5   (guest processes by CR3)"
"$KVMSCOPE" watch vm.samples -d vm,mmuctx -n 5
echo
echo "The agent keeps running with its web UI at http://127.0.0.1:$PORT/"
echo "(open it in a browser; curl http://127.0.0.1:$PORT/ca for the API)."
echo "The guests run for $SECONDS_TO_RUN s in all; Ctrl-C ends the demo."
wait "${pids[1]}" 2>/dev/null
