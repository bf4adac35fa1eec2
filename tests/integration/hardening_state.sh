#!/bin/bash
# The agent's state directory under attack and under careless operators:
# links and special files planted where the agent writes, a state dir or
# token file that others can write, limits lowered across a restart, a
# damaged state.json, the state dir removed while running, two agents on one
# dir, SIGKILL right after an answer, duplicate ids, a huge state.json.
# Nothing here needs a guest: the state is the subject.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"

post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
alive() { kill -0 "$AGENT_PID" 2>/dev/null && [ "$(code GET /ca)" = 200 ]; }
SPEC='{"module":"vm","stat":"exits","decomposition":["vm"]}'
ids() { jq -c '[.instrumentations[].id] | sort' "$1/state.json"; }
# saved STATE N: waits until state.json lists N instrumentations
saved() {
	for _ in $(seq 50); do
		[ "$(jq '.instrumentations | length' "$1/state.json" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# ---- 1. a link planted at a temporary file name is never followed
S=$TMPD/s1 LOG=$TMPD/a1.log
mkdir -m 0700 -p "$S/data"
echo untouched > "$TMPD/victim"
ln -s "$TMPD/victim" "$S/state.json.tmp"
ln -s "$TMPD/victim2" "$S/data/1.json.tmp"
ln -s "$TMPD/victim3" "$S/data/1.log.tmp"
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done; }
I=$(post '{"module":"vm","stat":"exits","decomposition":["vm"],"persist-data":true}' | jq -r .id)
check "an instrumentation is created (id $I)" test "$I" = 1
sleep 2
expect_eq "the file behind state.json.tmp is not overwritten" "$(cat "$TMPD/victim")" untouched
check "no file is created behind data/1.json.tmp or data/1.log.tmp" test ! -e "$TMPD/victim2" -a ! -e "$TMPD/victim3"
check "state.json is saved anyway, a regular file" test -f "$S/state.json" -a ! -L "$S/state.json"
agent_stop

# ---- 2. a state dir or token file that others can write is refused
S=$TMPD/s2
mkdir -p "$S"; chmod 0777 "$S"
out=$("$KVMSCOPE" agent --listen 127.0.0.1:$(free_port) --state-dir "$S" 2>&1 </dev/null & p=$!; sleep 3; kill $p 2>/dev/null; wait $p; echo "rc=$?")
check "a world-writable state dir is refused with a clear message" \
	sh -c "printf '%s' \"\$1\" | grep -qi 'state-dir.*writ'" _ "$out"
chmod 0700 "$S"
echo "tok-$$-0123456789abcdef operator" > "$TMPD/tokens"; chmod 0622 "$TMPD/tokens"
out=$(timeout 5 "$KVMSCOPE" agent --listen 127.0.0.1:$(free_port) --state-dir none --token-file "$TMPD/tokens" 2>&1 </dev/null)
check "a token file that others can write is refused" sh -c "printf '%s' \"\$1\" | grep -qi 'token-file.*writ'" _ "$out"
chmod 0644 "$TMPD/tokens"
LOG=$TMPD/a2.log
agent_start "$LOG" --state-dir none --token-file "$TMPD/tokens" || not_ok "agent starts with a world-readable token file"
check "a world-readable token file is accepted with a warning" grep -qi 'token.*readable' "$LOG"
agent_stop

# ---- 3. restarting with a lower limit loses nothing
S=$TMPD/s3 LOG=$TMPD/a3.log
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; tap_done; }
for _ in 1 2 3 4 5; do post "$SPEC" >/dev/null; done
saved "$S" 5
agent_stop
agent_start "$LOG" --state-dir "$S" --max-instrumentations 2 || { not_ok "agent restarts with a lower limit"; tap_done; }
n=$(curl -s "$BASE/ca/instrumentations" | jq length)
expect_eq "two of five restored under the lower limit" "$n" 2
check "the log says what was not restored" grep -qi 'not restored' "$LOG"
curl -s -X DELETE "$BASE/ca/instrumentations/1" >/dev/null
sleep 2
agent_stop
agent_start "$LOG" --state-dir "$S" || { not_ok "agent restarts with the default limit"; tap_done; }
expect_eq "the three not restored are back at the next restart, the deleted one is not" \
	"$(curl -s "$BASE/ca/instrumentations" | jq -c '[.[].id | tonumber] | sort')" "[2,3,4,5]"
agent_stop

# ---- 4. a damaged state.json is set aside and the data files are kept
S=$TMPD/s4 LOG=$TMPD/a4.log
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; tap_done; }
post '{"module":"vm","stat":"exits","decomposition":["vm"],"persist-data":true}' >/dev/null
sleep 12	# the persister writes data files every API_PERSIST_INTERVAL seconds
agent_stop
check "a data file was written" test -f "$S/data/1.log"
cp "$S/data/1.log" "$TMPD/data1.before"
echo '{"version": 1, "instrumentations": [' > "$S/state.json"
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts over a damaged state.json"; tap_done; }
check "the damaged state.json is set aside" sh -c "ls '$S' | grep -q 'state.json.bad'"
post "$SPEC" >/dev/null
sleep 2
check "the first save after it keeps data/1.log" cmp -s "$S/data/1.log" "$TMPD/data1.before"
I=$(post "$SPEC" | jq -r .id)
check "ids are not reused after a damaged state.json (new id $I > 2)" test "$I" -gt 2
agent_stop

# ---- 5. the state dir removed while running is recreated
S=$TMPD/s5 LOG=$TMPD/a5.log
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; tap_done; }
post "$SPEC" >/dev/null; saved "$S" 1
rm -rf "$S"
post "$SPEC" >/dev/null
saved "$S" 2
check "state.json is back after the dir was removed, with both" test "$(ids "$S")" = "[1,2]" -o "$(ids "$S")" = '["1","2"]'
agent_stop

# ---- 6. two agents on one state dir: the second refuses
S=$TMPD/s6 LOG=$TMPD/a6.log
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; tap_done; }
out=$(timeout 5 "$KVMSCOPE" agent --listen 127.0.0.1:$(free_port) --state-dir "$S" 2>&1 </dev/null; echo "rc=$?")
check "a second agent on the same state dir exits with a clear message" \
	sh -c "printf '%s' \"\$1\" | grep -qi 'in use\|locked' && ! printf '%s' \"\$1\" | grep -q 'rc=124'" _ "$out"
check "the first agent still answers" alive

# ---- 7. SIGKILL right after 201 and 204: the answer was durable
I=$(post "$SPEC" | jq -r .id)
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_start "$LOG" --state-dir "$S" || { not_ok "agent restarts after SIGKILL"; tap_done; }
expect_eq "the instrumentation created just before SIGKILL is back" "$(code GET /ca/instrumentations/$I)" 200
expect_eq "deleted" "$(code DELETE /ca/instrumentations/$I)" 204
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
agent_start "$LOG" --state-dir "$S" || { not_ok "agent restarts after SIGKILL"; tap_done; }
expect_eq "the instrumentation deleted just before SIGKILL stays deleted" "$(code GET /ca/instrumentations/$I)" 404
J=$(post "$SPEC" | jq -r .id)
check "its id is not reused ($J > $I)" test "$J" -gt "$I"
agent_stop

# ---- 8. duplicate ids in state.json: restored once, reported
S=$TMPD/s8 LOG=$TMPD/a8.log
mkdir -m 0700 -p "$S"
cat > "$S/state.json" <<EOF
{"version": 1, "next_id": 8, "instrumentations": [
 {"id": 7, "owner": "operator", "spec": $SPEC},
 {"id": 7, "owner": "operator", "spec": {"module":"vm","stat":"irqs"}}]}
EOF
agent_start "$LOG" --state-dir "$S" || { not_ok "agent starts"; tap_done; }
expect_eq "a duplicate id is restored once" "$(curl -s "$BASE/ca/instrumentations" | jq length)" 1
check "and reported" grep -qi 'duplicate' "$LOG"
agent_stop

# ---- 9. state.json as a FIFO: no hang, a clear message, SIGTERM works
S=$TMPD/s9 LOG=$TMPD/a9.log
mkdir -m 0700 -p "$S"; mkfifo "$S/state.json"
if agent_start "$LOG" --state-dir "$S"; then
	ok "the agent listens with a FIFO at state.json"
	check "it says state.json is not a regular file" grep -qi 'state.json.*regular' "$LOG"
	agent_stop
else
	not_ok "the agent listens with a FIFO at state.json"
	kill -9 "$AGENT_PID" 2>/dev/null
fi

# ---- 10. a huge state.json: refused quickly, with one line of log
S=$TMPD/s10 LOG=$TMPD/a10.log
mkdir -m 0700 -p "$S"
python3 - "$S/state.json" <<'EOF'
import json, sys
spec = {"module": "vm", "stat": "exits", "decomposition": ["vm"], "x": "y" * 1000}
ins = [{"id": i, "owner": "operator", "spec": spec} for i in range(1, 120001)]
json.dump({"version": 1, "next_id": 120001, "instrumentations": ins}, open(sys.argv[1], "w"))
EOF
t0=$(date +%s%N)
agent_start "$LOG" --state-dir "$S" && ok "the agent starts over a 120 MB state.json" || not_ok "the agent starts over a 120 MB state.json"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "within 5 s ($ms ms)" test "$ms" -lt 5000
sz=$(stat -c %s "$LOG")
check "its log stays small ($sz bytes)" test "$sz" -lt 100000
agent_stop
tap_done
