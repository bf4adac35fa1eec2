#!/bin/bash
# The agent against hostile or broken clients: oversized headers, slow
# clients (slowloris), path traversal on the static files, invalid UTF-8 in
# paths, queries and bodies; and the privileges it keeps after start-up
# (capabilities, no_new_privs), with an instrumentation still collecting
# from a real vmload guest afterwards (exits from kvm_pio: the fallback path,
# kvm_exit does not fire here).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "agent security"
command -v python3 >/dev/null || { skip "agent security: python3 absent (slow clients)"; tap_done; }

# a web root of our own, with symlinks pointing out of it
WEB=$TMPD/web
mkdir -p "$WEB/sub" "$TMPD/outside"
echo '<html>kvmscope</html>' > "$WEB/index.html"
echo 'secret-outside-web' > "$TMPD/outside/secret.txt"
ln -s /etc/passwd "$WEB/passwd"
ln -s /etc "$WEB/etc"
ln -s "$TMPD/outside" "$WEB/sub/out"
LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir none --web-dir "$WEB"; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
ok "agent answers on $BASE"
alive() { kill -0 "$AGENT_PID" 2>/dev/null && [ "$(code GET /ca)" = 200 ]; }

# ---- oversized headers
big=$(head -c 100000 /dev/zero | tr '\0' a)
c=$(curl -s --max-time 10 -o "$TMPD/body" -w '%{http_code}' -H "X-Big: $big" "$BASE/ca")
case $c in 431|413|400|000) ok "100 KB header refused ($c: 431/413/400 or connection closed)" ;;
*) not_ok "100 KB header: got HTTP $c, want 431, 413, 400 or a closed connection" ;; esac
c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' $(for i in $(seq 2000); do printf -- '-H X-H%d:%s ' $i "vvvvvvvvvvvvvvvv"; done) "$BASE/ca")
case $c in 431|413|400|000) ok "2000 headers refused ($c)" ;; *) not_ok "2000 headers: got HTTP $c" ;; esac
c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$BASE/ca?x=$(head -c 60000 /dev/zero | tr '\0' b)")
case $c in 414|431|413|400|000) ok "60 KB request line refused ($c)" ;; *) not_ok "60 KB request line: got HTTP $c" ;; esac
check "agent alive and answering after oversized requests" alive

# ---- slow clients: 100 from another loopback address, 40 from ours
python3 "$_root/tests/reliability/slowloris.py" 127.0.0.1 "$PORT" 140 12 127.0.0.2 127.0.0.2 127.0.0.3 127.0.0.1 \
	> "$TMPD/slow.json" 2>"$TMPD/slow.err"
if [ ! -s "$TMPD/slow.json" ]; then
	not_ok "slow-client driver ran"; sed 's/^/# /' "$TMPD/slow.err"
else
	read -r nopen nalive nfail nmax n < <(jq -r '[.slow_opened, .slow_alive_at_end, .normal_failed, (.normal | max), (.normal | length)] | @tsv' "$TMPD/slow.json")
	echo "# slow clients: $(cat "$TMPD/slow.json")"
	check "140 slow connections opened ($nopen)" test "$nopen" -ge 100
	expect_eq "none of them outlives the deadline for a whole request" "$nalive" 0
	expect_eq "a normal client is never refused while they trickle" "$nfail" 0
	check "normal client answered $n times, slowest in ${nmax}s (< 1 s)" \
		python3 -c "import sys; sys.exit(not ($n >= 15 and $nmax < 1.0))"
fi
check "agent alive after the slow clients" alive

# ---- path traversal on static files
trav() {	# DESC PATH: must not be 200, must not leak /etc/passwd or our secret
	local c
	c=$(code GET "$2")
	if [ "$c" != 200 ] && ! grep -q -e 'root:' -e 'secret-outside-web' "$TMPD/body"; then
		ok "$1: $2 -> $c"
	else
		not_ok "$1: $2 -> $c, body: $(head -c 100 "$TMPD/body")"
	fi
}
expect_eq "index.html is served" "$(code GET /)" 200
trav "dot-dot" "/../../etc/passwd"
trav "dot-dot inside" "/sub/../../../etc/passwd"
trav "encoded dots" "/%2e%2e/%2e%2e/etc/passwd"
trav "encoded slash" "/..%2f..%2f..%2fetc%2fpasswd"
trav "double-encoded" "/%252e%252e/%252e%252e/etc/passwd"
trav "backslashes" '/..\..\etc\passwd'
trav "symlink to a file outside" "/passwd"
trav "symlink to a directory outside" "/etc/passwd"
trav "symlink deeper" "/sub/out/secret.txt"
trav "absolute path in the request" "//etc/passwd"
trav "NUL byte" "/index.html%00.png"
c=$(printf 'GET ../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | timeout 5 python3 -c '
import socket,sys; s=socket.create_connection(("127.0.0.1",'"$PORT"')); s.sendall(sys.stdin.buffer.read())
d=b""
while True:
    b=s.recv(65536)
    if not b: break
    d+=b
print(d.split(b"\r\n")[0].decode(errors="replace")); sys.exit(b"root:" in d)')
check "request target without a leading slash refused ($c)" test -n "$c" -a "${c#HTTP/1.1 200}" = "$c"

# ---- invalid UTF-8 everywhere: precise 4xx with a JSON body
jbody() { jq -e '.code and .message' "$TMPD/body" >/dev/null; }
post_json() { code POST /ca/instrumentations -H 'Content-Type: application/json' --data-binary "@$1"; }
c=$(code GET "/ca/instrumentations/%ff%fe")
check "invalid UTF-8 in the path -> $c with a JSON error" test "$c" = 400 -o "$c" = 404 -a -n "$(jbody && echo y)"
c=$(code GET "/%c3%28.html")
check "invalid UTF-8 in a static path -> $c" test "$c" = 400 -o "$c" = 404
I=$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["latency"]}' | jq -r .id)
check "an instrumentation to query (id $I)" test "$I" -ge 1
for q in "start_time=%ff" "duration=%c3%28" "%ff=1" "ndatapoints=1%00"; do
	c=$(code GET "/ca/instrumentations/$I/value/raw?$q")
	check "raw value, query '$q' -> 400 with a JSON error" test "$c" = 400 -a -n "$(jbody && echo y)"
done
for q in "selected=%ff%fe" "hues=%e2%82" "width=%ff" "coloring=%c3%28"; do
	c=$(code GET "/ca/instrumentations/$I/value/heatmap/image?$q")
	check "heatmap, query '$q' -> 400 with a JSON error" test "$c" = 400 -a -n "$(jbody && echo y)"
done
printf '{"module":"vm","stat":"exits","decomposition":["vm"],"predicate":{"eq":["vm","\xff\xfe"]}}' > "$TMPD/bad1.json"
printf '{"module":"vm\xc3\x28","stat":"exits"}' > "$TMPD/bad2.json"
printf '{"\xed\xa0\x80":1}' > "$TMPD/bad3.json"
for f in bad1 bad2 bad3; do
	c=$(post_json "$TMPD/$f.json")
	check "JSON body with invalid UTF-8 ($f) -> 400 with a JSON error" test "$c" = 400 -a -n "$(jbody && echo y)"
done
c=$(code POST /ca/instrumentations -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'module=vm&stat=exits&predicate=%ff')
check "form body with invalid UTF-8 -> 400 ($c)" test "$c" = 400 -a -n "$(jbody && echo y)"
c=$(code POST /ca/instrumentations -H 'Content-Type: application/x-www-form-urlencoded' --data-binary $'module=vm&stat=\xff')
check "form body with a raw invalid byte -> 400 ($c)" test "$c" = 400
check "agent alive after the invalid input" alive

# ---- privileges after start-up
capbit() { python3 -c "import sys; print((int(sys.argv[1],16) >> int(sys.argv[2])) & 1)" "$1" "$2"; }
bad=0 checked=0
for st in /proc/$AGENT_PID/task/*/status; do
	eff=$(awk '/^CapEff/ {print $2}' "$st"); bnd=$(awk '/^CapBnd/ {print $2}' "$st")
	nnp=$(awk '/^NoNewPrivs/ {print $2}' "$st")
	checked=$((checked + 1))
	# net_bind_service 10, sys_module 16, sys_boot 22, mknod 27, setuid 7, setgid 6, sys_rawio 17, net_raw 13
	for c in 10 16 22 27 7 6 17 13; do
		[ "$(capbit "$eff" $c)" = 0 ] && [ "$(capbit "$bnd" $c)" = 0 ] || { bad=1; echo "# $st: capability $c still held (CapEff $eff CapBnd $bnd)"; }
	done
	# bpf 39, perfmon 38, sys_admin 21, sys_ptrace 19: needed for collectors and /proc
	for c in 39 38 21 19; do
		[ "$(capbit "$eff" $c)" = 1 ] || { bad=1; echo "# $st: capability $c needed but dropped"; }
	done
	[ "$nnp" = 1 ] || { bad=1; echo "# $st: NoNewPrivs $nnp"; }
done
check "all $checked agent threads: unneeded capabilities gone (effective and bounding), BPF/PERFMON/SYS_ADMIN/SYS_PTRACE kept, NoNewPrivs 1" test $bad = 0 -a $checked -ge 2
check "the log says what was dropped" grep -q 'privileges dropped' "$LOG"

VM=sec-$$
I2=$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["vm"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
sleep 1.2
T0=$(date +%s)
"$VMLOAD" -name guest=$VM --delay 1000 --pio vcpu=0,count=400,rate=200 --truth "$TMPD/truth.json" --duration 20 >/dev/null 2>&1
T1=$(date +%s)
sleep 2.5
got=$(curl -s "$BASE/ca/instrumentations/$I2/value/raw?start_time=$T0&duration=1&ndatapoints=$((T1 - T0 + 2))" |
	jq "[.[].value[\"$VM\"] // 0] | add")
want=$(jq '[.vcpus[].pio] | add' "$TMPD/truth.json")
check "after the drop, an instrumentation still collects: $got exits for $want port writes" \
	test -n "$got" -a "$got" != null -a "${got:-0}" -ge "${want:-1}"
check "agent alive at the end" alive
check "no sanitizer report or crash in the log" sh -c "! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error|Segmentation' '$LOG'"
agent_stop; rc=$?
expect_eq "agent exits 0 on SIGTERM" "$rc" 0
tap_done
