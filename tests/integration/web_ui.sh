#!/bin/bash
# The web UI end to end: the real agent serves web/, a vmload guest with 4
# vCPUs (an interrupt every second at +250 ms, one HLT a second, one MMIO
# write a second, random 4 KiB disk ops), and headless Chromium
# (playwright-core) drives the UI: the host overview, a VM's page, time
# navigation, state in the URL, dashboards, export, colours, keyboard and
# an axe-core accessibility check (tests/web/ui_test.mjs), then a second
# agent that wants a token, seen by a tenant (tests/web/ui_states.mjs).
# No request may leave the agent's origin; the console stays free of
# errors. The README's screenshots (docs/img/web-*.png) are taken here, into
# tests/artifacts/docs-img; WEB_SCREENSHOTS_DIR=docs/img refreshes them in
# place (a test run leaves tracked files alone).
# Needs: Debian package chromium; npm packages playwright-core and axe-core
# in tests/web (cd tests/web && npm install).
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KVMSCOPE=${KVMSCOPE:-$ROOT/build/bin/kvmscope}
VMLOAD=${VMLOAD:-$ROOT/build/bin/vmload}
ART=$ROOT/tests/artifacts
mkdir -p "$ART"

require_kvm "web UI"
if [ ! -x /usr/bin/chromium ]; then
	skip "web UI: /usr/bin/chromium is absent (apt-get install -y chromium)"; tap_done
fi
if [ ! -d "$ROOT/tests/web/node_modules/playwright-core" ] || [ ! -d "$ROOT/tests/web/node_modules/axe-core" ] || ! command -v node >/dev/null; then
	skip "web UI: node or tests/web/node_modules/{playwright-core,axe-core} is absent (cd tests/web && npm install)"; tap_done
fi

PORT=${WEB_UI_PORT:-$((20000 + RANDOM % 20000))}
"$KVMSCOPE" agent --listen 127.0.0.1:$PORT --state-dir "$TMPD/state" --web-dir "$ROOT/web" \
	>"$ART/web-agent.log" 2>&1 &
cleanup_pids+=($!)
for _ in $(seq 50); do
	curl -sf "http://127.0.0.1:$PORT/ca" >/dev/null && break
	sleep 0.1
done
check "the agent answers on 127.0.0.1:$PORT" curl -sf -o /dev/null "http://127.0.0.1:$PORT/ca"
code=$(curl -s -o "$TMPD/index.html" -w '%{http_code}' "http://127.0.0.1:$PORT/")
expect_eq "GET / serves the UI" "$code" 200
check "the page is kvmscope's" grep -q '<title>kvmscope</title>' "$TMPD/index.html"
# Everything the page loads must be on the agent: no http(s) URL to elsewhere.
ext=$(grep -rhoE '(src|href)="(https?:)?//[^"]*"|import[^;]*"https?://[^"]*"|url\((https?:)?//' "$ROOT/web" | head -3)
expect_eq "web/ refers to nothing outside the agent" "$ext" ""

touch "$TMPD/started"
# Outlives both browser sessions: 240 s of steady, known work.
truncate -s 64M "$TMPD/disk.img"
"$VMLOAD" -name guest=ui -uuid 3a1c5e7f-9b2d-4f60-8a13-c5e7f9b2d4f6 -id 7001 --vcpus 4 --duration 240 \
	--irq vcpu=0,vector=0x30,via=ioapic,period_ms=1000,phase_ms=250,count=240 \
	--hlt vcpu=1,count=240,rate=1 --mmio vcpu=2,count=240,rate=1 \
	--disk file="$TMPD/disk.img",reads=4000,writes=800,size=4096,pattern=rand,rate=20,vcpu=3 \
	>"$TMPD/truth.json" 2>"$ART/web-vmload.log" &
cleanup_pids+=($!)
for _ in $(seq 50); do
	curl -sf "http://127.0.0.1:$PORT/ca/vms" | grep -q '"name":"ui"' && break
	sleep 0.1
done

# relay_checks OUTPUT: the browser scripts' "ok DESC" / "not_ok DESC" lines as
# TAP, anything else as comments; sets n to the checks seen
relay_checks() {
	local line
	n=0
	while IFS= read -r line; do
		case "$line" in
		"ok "*) ok "${line#ok }"; n=$((n + 1)) ;;
		"not_ok "*) not_ok "${line#not_ok }"; n=$((n + 1)) ;;
		*) echo "# $line" ;;
		esac
	done <<<"$1"
}

udd=$(mktemp -d "$TMPD/chromium.XXXXXX")
SHOTS=$(realpath -m "${WEB_SCREENSHOTS_DIR:-$ART/docs-img}")
mkdir -p "$SHOTS"
out=$(cd "$ROOT/tests/web" && timeout 170 node ui_test.mjs "http://127.0.0.1:$PORT" ui "$ART" "$udd" "$SHOTS" 2>&1)
rc=$?
relay_checks "$out"
expect_eq "the browser session ran to its end" "$rc" 0
if [ "$n" -lt 57 ]; then not_ok "only $n browser checks reported, want 57"; fi
# Honest states: a second agent that wants a token, then goes away.
TPORT=$((PORT + 1))
{
	echo "ui-token-$(od -An -N12 -tx1 /dev/urandom | tr -d " \n") operator"
	echo "ui-tenant-$(od -An -N12 -tx1 /dev/urandom | tr -d " \n") tenant ui"
} >"$TMPD/tokens"
chmod 600 "$TMPD/tokens"
"$KVMSCOPE" agent --listen 127.0.0.1:$TPORT --state-dir none --token-file "$TMPD/tokens" \
	--web-dir "$ROOT/web" >"$ART/web-agent-token.log" 2>&1 &
tpid=$!
cleanup_pids+=($tpid)
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$TPORT/" && break
	sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TPORT/ca")
expect_eq "the token agent refuses /ca without a token" "$code" 401
udd=$(mktemp -d "$TMPD/chromium.XXXXXX")
out=$(cd "$ROOT/tests/web" && timeout 90 node ui_states.mjs "http://127.0.0.1:$TPORT" \
	"$(sed -n 2p "$TMPD/tokens" | cut -d' ' -f1)" ui "$tpid" "$ART" "$udd" 2>&1)
rc=$?
relay_checks "$out"
expect_eq "the states session ran to its end" "$rc" 0
if [ "$n" -lt 12 ]; then not_ok "only $n state checks reported, want 12"; fi

for f in web-overview web-vm web-latency-zoom web-token web-unreachable; do
	check "screenshot $f.png kept" test -s "$ART/$f.png"
done
for f in web-overview web-vm web-latency-zoom; do
	check "README screenshot $f.png from this run" test "$SHOTS/$f.png" -nt "$TMPD/started"
done
tap_done
