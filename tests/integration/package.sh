#!/bin/bash
# The Debian packages, as an operator installs them: `make deb` builds
# kvmscope and vmload (reusing its build tree), lintian has nothing to say,
# apt-get installs them on this host, the agent runs from its systemd unit
# (through systemd where systemd is PID 1, else the unit's ExecStartPre and
# ExecStart exactly as written, with its EnvironmentFile, capability
# bounding set and no_new_privs applied by setpriv), answers GET /ca,
# counts a vmload guest's port writes exactly (so BPF loads under the
# unit's capabilities), serves the web UI, saves its state on SIGTERM and
# stops; then a purge leaves none of the packages' files, no
# /etc/kvmscope, no /var/lib/kvmscope and no systemd state behind.
# A /var/lib/kvmscope that existed before is put aside and restored.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
cd "$_root"
require_kvm "package"
for c in dpkg-buildpackage dh lintian apt-get setpriv git; do
	command -v $c >/dev/null || { not_ok "package: $c is not installed (make deps)"; tap_done; }
done
# never replace or remove packages someone else installed
for p in kvmscope vmload; do
	if dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q installed; then
		skip "package: a $p package is already installed on this host; not replacing it"; tap_done
	fi
done
if [ -e /etc/kvmscope ] || [ -e /usr/bin/kvmscope ] || [ -e /usr/bin/vmload ]; then
	skip "package: /etc/kvmscope, /usr/bin/kvmscope or /usr/bin/vmload exists outside a package; not overwriting it"; tap_done
fi
# an agent now running with the default state directory owns it
for pid in $(pgrep -x kvmscope); do
	if tr '\0' ' ' < /proc/$pid/cmdline | grep -q ' agent' &&
	   ! tr '\0' ' ' < /proc/$pid/cmdline | grep -q -- '--state-dir'; then
		skip "package: an agent with the default state directory runs (pid $pid); not touching /var/lib/kvmscope"; tap_done
	fi
done

STATE_ASIDE=""
INSTALLED=0
restore() {
	[ -n "${AGENT_PID:-}" ] && kill -TERM "$AGENT_PID" 2>/dev/null
	if [ $INSTALLED = 1 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=120 kvmscope vmload >/dev/null 2>&1
	fi
	if [ -n "$STATE_ASIDE" ]; then
		rm -rf /var/lib/kvmscope
		mv "$STATE_ASIDE" /var/lib/kvmscope
	fi
	cleanup
}
trap restore EXIT

# ---- build -------------------------------------------------------------------
t0=$SECONDS
if ! make deb > "$TMPD/deb.log" 2>&1; then
	not_ok "make deb: $(tail -3 "$TMPD/deb.log" | tr '\n' ' ')"; tap_done
fi
DEBDIR=build/deb
VERSION=$(dpkg-parsechangelog -S Version)
ARCH=$(dpkg --print-architecture)
KDEB=$DEBDIR/kvmscope_${VERSION}_$ARCH.deb VDEB=$DEBDIR/vmload_${VERSION}_$ARCH.deb
check "make deb built kvmscope and vmload $VERSION in $((SECONDS - t0)) s" test -f "$KDEB" -a -f "$VDEB"

lintian -I --pedantic "$DEBDIR/kvmscope_${VERSION}_$ARCH.changes" > "$TMPD/lintian" 2>&1
tags=$(grep -E '^[EWIXP]: ' "$TMPD/lintian" | head -5 | tr '\n' ' ')
expect_eq "lintian: no error, warning, info or pedantic tag (overrides in debian/*.lintian-overrides say why)" \
	"$tags" ""

# ---- install -----------------------------------------------------------------
if [ -e /var/lib/kvmscope ]; then
	STATE_ASIDE=/var/lib/kvmscope.package-test.$$
	mv /var/lib/kvmscope "$STATE_ASIDE"
fi
INSTALLED=1
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	-o DPkg::Lock::Timeout=120 "./$KDEB" "./$VDEB" > "$TMPD/install.log" 2>&1; then
	not_ok "apt-get install: $(tail -3 "$TMPD/install.log" | tr '\n' ' ')"; tap_done
fi
for p in kvmscope vmload; do
	expect_eq "$p is installed" "$(dpkg-query -W -f='${Status}' $p)" "install ok installed"
done
UNIT=/lib/systemd/system/kvmscope-agent.service CONF=/etc/kvmscope/agent.conf
for f in /usr/bin/kvmscope /usr/bin/vmload $UNIT $CONF /usr/share/kvmscope/web/index.html \
	 /usr/share/bash-completion/completions/kvmscope /usr/share/bash-completion/completions/vmload; do
	check "installed: $f" test -s "$f"
done
expect_eq "agent.conf is a conffile" "$(dpkg-query -W -f='${Conffiles}' kvmscope | awk '{print $1}')" "$CONF"
expect_eq "/var/lib/kvmscope: root's alone" "$(stat -c '%U:%G %a' /var/lib/kvmscope 2>&1)" "root:root 700"
for page in kvmscope kvmscope-vms kvmscope-stat kvmscope-watch kvmscope-agent vmload; do
	check "man $page is installed" bash -c "man -w $page > /dev/null"
done
missing=$(ldd /usr/bin/kvmscope /usr/bin/vmload | grep 'not found')
expect_eq "every shared library the binaries need is installed" "$missing" ""
expect_eq "bash completion of the installed kvmscope" \
	"$(bash -c '. /usr/share/bash-completion/completions/kvmscope; COMP_WORDS=(kvmscope wa); COMP_CWORD=1; _kvmscope; echo "${COMPREPLY[*]}"')" watch
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify "$UNIT" > "$TMPD/verify" 2>&1
	expect_eq "systemd-analyze verify of the unit" "$(grep -v -e 'Failed to \(connect\|open\)' -e 'Cannot.*D-Bus' "$TMPD/verify" | head -3 | tr '\n' ';')" ""
fi

# ---- run the agent from its unit ---------------------------------------------
PORT=$(free_port)
BASE=http://127.0.0.1:$PORT
# the operator's way to move it: agent.conf (the default port may be in use)
sed -i "s/^KVMSCOPE_LISTEN=.*/KVMSCOPE_LISTEN=\"127.0.0.1:$PORT\"/" $CONF
if [ "$(cat /proc/1/comm)" = systemd ] && systemctl is-system-running >/dev/null 2>&1 ||
   [ "$(systemctl is-system-running 2>/dev/null)" = degraded ]; then
	VIA=systemd
	systemctl daemon-reload
	systemctl start kvmscope-agent.service
	AGENT_PID=$(systemctl show -P MainPID kvmscope-agent.service)
else
	VIA="the unit's ExecStart (PID 1 is $(cat /proc/1/comm), not systemd)"
	# the unit's command lines with systemd's expansion: ${VAR} is one word,
	# a word that is $VAR alone splits at whitespace; a leading '-' means
	# failure is ignored. Output: NUL-separated words, a line per command.
	python3 - "$UNIT" > "$TMPD/unit.sh" <<'PY'
import re, shlex, sys
env, svc, section = {}, {}, None
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line[0] in "#;": continue
    if line.startswith("["): section = line; continue
    if section == "[Service]" and "=" in line:
        k, v = line.split("=", 1); svc.setdefault(k, []).append(v)
for ef in svc.get("EnvironmentFile", []):
    opt = ef.startswith("-"); ef = ef.lstrip("-")
    try: text = open(ef).read()
    except OSError:
        if opt: continue
        raise
    for l in text.splitlines():
        l = l.strip()
        if not l or l[0] in "#;": continue
        k, v = l.split("=", 1)
        env[k.strip()] = " ".join(shlex.split(v)) if v.strip() else ""
def expand(cmd):
    words = []
    for w in shlex.split(cmd):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m: words += env.get(m.group(1), "").split(); continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), w))
    return words
caps = svc.get("CapabilityBoundingSet", [""])[-1].split()
bnd = "-all" + "".join(",+" + c.lower().removeprefix("cap_") for c in caps)
nnp = svc.get("NoNewPrivileges", ["no"])[-1] in ("yes", "true", "1", "on")
setpriv = ["setpriv", "--bounding-set", bnd] + (["--no-new-privs"] if nnp else []) + ["--"]
for pre in svc.get("ExecStartPre", []):
    ign = "1" if pre.startswith("-") else "0"
    print("run_pre " + ign + " " + " ".join(shlex.quote(w) for w in setpriv + expand(pre.lstrip("-@:+!"))))
(start,) = svc["ExecStart"]
print("START=(" + " ".join(shlex.quote(w) for w in setpriv + expand(start)) + ")")
print("BOUNDING=" + shlex.quote(" ".join(caps)))
PY
	# run_pre IGNORE_FAILURE WORD...: one ExecStartPre
	run_pre() {
		local ign=$1; shift
		"$@" > "$TMPD/pre.log" 2>&1 || [ "$ign" = 1 ] || not_ok "ExecStartPre fails: $* ($(tail -1 "$TMPD/pre.log"))"
	}
	. "$TMPD/unit.sh"
	echo "# ExecStart: ${START[*]}"
	"${START[@]}" > "$TMPD/agent.log" 2>&1 &
	AGENT_PID=$!
fi
answered=0
for _ in $(seq 100); do
	curl -s -o /dev/null "$BASE/ca" && { answered=1; break; }
	kill -0 "$AGENT_PID" 2>/dev/null || break
	sleep 0.1
done
if [ $answered = 0 ]; then
	not_ok "the agent started through $VIA answers: $(tail -3 "$TMPD/agent.log" 2>/dev/null | tr '\n' ' ')"; tap_done
fi
ok "the agent started through $VIA answers on $BASE"
expect_eq "GET /ca: 200 with the metric catalogue" "$(code GET /ca) $(jq -r '[.metrics[] | .module + "." + .stat] | index("vm.exits") != null' "$TMPD/body")" "200 true"
expect_eq "GET / serves the packaged web UI" "$(code GET /) $(md5sum < "$TMPD/body" | cut -d' ' -f1)" "200 $(md5sum < /usr/share/kvmscope/web/index.html | cut -d' ' -f1)"
if [ -z "${BOUNDING:-}" ]; then BOUNDING=$(sed -n 's/^CapabilityBoundingSet=//p' $UNIT); fi
capbits() { python3 -c '
import ctypes, sys
names = {"CAP_DAC_READ_SEARCH": 2, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39,
         "CAP_DAC_OVERRIDE": 1, "CAP_SYS_RESOURCE": 24}
print("%016x" % sum(1 << names[c] for c in sys.argv[1:]))' "$@"; }
bnd=$(awk '/^CapBnd/{print $2}' /proc/$AGENT_PID/status)
eff=$(awk '/^CapEff/{print $2}' /proc/$AGENT_PID/status)
expect_eq "the agent's bounding set is the unit's CapabilityBoundingSet" "$bnd" "$(capbits $BOUNDING)"
check "its effective set is within it ($eff)" test $((0x$eff & ~0x$bnd)) -eq 0
expect_eq "no_new_privs" "$(awk '/^NoNewPrivs/{print $2}' /proc/$AGENT_PID/status)" 1

VM=pkg-$$
ID=$(curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' \
	-d '{"module":"vm","stat":"exits","decomposition":["class"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
check "instrumentation created (id $ID)" test "$ID" -ge 1 2>/dev/null
sleep 1.5
T0=$(date +%s)
# 2 s of port writes: the agent's discovery finds a VM within a second
/usr/bin/vmload -name guest=$VM --pio vcpu=0,count=200,rate=100 --truth "$TMPD/truth.json" --duration 20 >/dev/null 2>"$TMPD/vmload.err"
T1=$(date +%s)
sleep 2.5
check "the packaged vmload completed" test "$(jq -r .completed "$TMPD/truth.json" 2>/dev/null)" = true
got=$(curl -s "$BASE/ca/instrumentations/$ID/value/raw?start_time=$T0&duration=1&ndatapoints=$((T1 - T0 + 2))" | jq '[.[].value.iox // 0] | add')
expect_eq "vm.exits class iox equals vmload's port writes (BPF under the unit's capabilities)" "$got" "$(jq '[.vcpus[].pio] | add' "$TMPD/truth.json")"

# every collector loads under the unit's capabilities
for m in irqs disk_ops samples nic_bytes; do
	expect_eq "vm.$m instrumentation created" "$(code POST /ca/instrumentations -H 'Content-Type: application/json' \
		-d '{"module":"vm","stat":"'$m'","decomposition":["vm"],"predicate":{"eq":["vm","'$VM'"]}}')" 201
done
sleep 2
if [ "${VIA%% *}" != systemd ]; then
	started=$(grep -o 'collector [a-z]* started' "$TMPD/agent.log" | sort -u | awk '{print $2}' | tr '\n' ' ')
	expect_eq "collectors started" "$started" "disk exits irqs nic samples "
	no_logged_errors "$TMPD/agent.log"
fi

if [ "${VIA%% *}" = systemd ]; then
	systemctl stop kvmscope-agent.service; rc=$?
	expect_eq "systemctl stop" "$rc" 0
else
	kill -TERM "$AGENT_PID"   # the unit's KillSignal
	t=$SECONDS; wait "$AGENT_PID"; rc=$?
	expect_eq "SIGTERM stops the agent cleanly within the unit's TimeoutStopSec" "$rc $([ $((SECONDS - t)) -le 15 ] && echo in-time)" "0 in-time"
fi
AGENT_PID=""
expect_eq "its state was saved in /var/lib/kvmscope" "$(jq "[.instrumentations[].id] | index($ID) != null" /var/lib/kvmscope/state.json 2>&1)" true

# ---- purge -------------------------------------------------------------------
files=$( (dpkg-query -L kvmscope; dpkg-query -L vmload) | sort -u)
if DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=120 kvmscope vmload > "$TMPD/purge.log" 2>&1; then
	INSTALLED=0; ok "apt-get purge"
else
	not_ok "apt-get purge: $(tail -3 "$TMPD/purge.log" | tr '\n' ' ')"
fi
for p in kvmscope vmload; do
	expect_eq "$p is gone from dpkg" "$(dpkg-query -W -f='${Status}' $p 2>/dev/null)" ""
done
# what dpkg listed, less the shared directories other packages keep
left=""
for f in $files; do
	[ "$f" = /. ] && continue
	[ -e "$f" ] || continue
	[ -d "$f" ] && dpkg-query -S "$f" >/dev/null 2>&1 && continue
	left="$left $f"
done
expect_eq "no file or directory of the packages is left" "$(echo $left)" ""
check "no /etc/kvmscope" test ! -e /etc/kvmscope
check "no /var/lib/kvmscope" test ! -e /var/lib/kvmscope
expect_eq "no systemd state of the unit" "$(find /etc/systemd /var/lib/systemd -name '*kvmscope*' 2>/dev/null | tr '\n' ' ')" ""

tap_done
