#!/bin/bash
# kvmscope agent under bad input: each malformed request gets the right
# status and a JSON error whose message names the offender; the agent keeps
# serving afterwards. Needs no guest; BPF collectors start for the valid
# instrumentations, hence root.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "agent errors"

LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir "$TMPD/state" --max-instrumentations 5; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
J=(-H 'Content-Type: application/json')
curl -s -X POST "$BASE/ca/instrumentations" "${J[@]}" -d '{"module":"vm","stat":"exits"}' >/dev/null       # id 1: scalar
curl -s -X POST "$BASE/ca/instrumentations" "${J[@]}" -d '{"module":"vm","stat":"irqs","decomposition":["subsecond"]}' >/dev/null # id 2
HM=/ca/instrumentations/2/value/heatmap

head -c 70000 /dev/zero | tr '\0' 'a' > "$TMPD/big"
printf '{"module":"vm","stat":"\xff\xfe"}' > "$TMPD/badutf8"

# expect STATUS WORD_IN_MESSAGE METHOD PATH [curl args...]
expect() {
	local want=$1 word=$2 m=$3 p=$4; shift 4
	local got; got=$(code "$m" "$p" "$@")
	local msg; msg=$(jq -r '.message // empty' "$TMPD/body" 2>/dev/null)
	local c; c=$(jq -r '.code // empty' "$TMPD/body" 2>/dev/null)
	# CA's envelope carries the same message and an ECA_* code
	local ca; ca=$(jq -r 'if .error.message == .message then .error.code else "" end' "$TMPD/body" 2>/dev/null)
	if [ "$got" = "$want" ] && [ -n "$c" ] && [[ "$ca" == ECA_* ]] && grep -qiF -- "$word" <<<"$msg"; then
		ok "$m $p -> $want ($c: $msg)"
	else
		not_ok "$m $p: want $want naming '$word', got $got: $(head -c 300 "$TMPD/body")"
	fi
}
P=/ca/instrumentations
# broken JSON and wrong types
expect 400 "not valid JSON"   POST $P "${J[@]}" -d '{"module": "vm",'
expect 400 "not valid JSON"   POST $P "${J[@]}" -d '{module: vm}'
expect 400 "JSON object"      POST $P "${J[@]}" -d '[1,2]'
expect 400 "JSON object"      POST $P "${J[@]}" -d '"vm.exits"'
expect 400 "module"           POST $P "${J[@]}" -d '{"module": 3, "stat": "exits"}'
expect 400 "stat"             POST $P "${J[@]}" -d '{"module": "vm"}'
expect 400 "granularity"      POST $P "${J[@]}" -d '{"metric":"vm.exits","granularity":"often"}'
expect 400 "granularity"      POST $P "${J[@]}" -d '{"metric":"vm.exits","granularity":0}'
expect 400 "retention-time"   POST $P "${J[@]}" -d '{"metric":"vm.exits","retention-time":-5}'
expect 400 "retention-time"   POST $P "${J[@]}" -d '{"metric":"vm.exits","granularity":10,"retention-time":605}'
expect 400 "idle-max"         POST $P "${J[@]}" -d '{"metric":"vm.exits","idle-max":-1}'
# CA's limits
expect 400 "must be divisible by 5" POST $P "${J[@]}" -d '{"metric":"vm.exits","granularity":7}'
expect 400 "minimum is 10"    POST $P "${J[@]}" -d '{"metric":"vm.exits","retention-time":5}'
expect 400 "idle-max"         POST $P "${J[@]}" -d '{"metric":"vm.exits","idle-max":604801}'
expect 400 "unsupported value" POST $P "${J[@]}" -d '{"metric":"vm.exits","enabled":false}'
expect 400 "persist-data"     POST $P "${J[@]}" -d '{"metric":"vm.exits","persist-data":"maybe"}'
expect 400 "decomposition"    POST $P "${J[@]}" -d '{"metric":"vm.exits","decomposition":[1]}'
expect 400 "color"            POST $P "${J[@]}" -d '{"metric":"vm.exits","color":"red"}'
expect 400 "predicate"        POST $P "${J[@]}" -d '{"metric":"vm.exits","predicate":{"eq":["vm"]}}'
expect 400 "predicate"        POST $P "${J[@]}" -d '{"metric":"vm.exits","predicate":"{not json"}'
expect 400 "xor"              POST $P "${J[@]}" -d '{"metric":"vm.exits","predicate":{"xor":[]}}'
expect 400 "no instrumentation" POST $P
expect 400 "bad %-escape"     POST $P -H 'Content-Type: application/x-www-form-urlencoded' -d 'module=vm&stat=%zz'
# semantically invalid
expect 422 "nosuch"           POST $P "${J[@]}" -d '{"module":"vm","stat":"nosuch"}'
expect 422 "vm.bogus"         POST $P "${J[@]}" -d '{"metric":"vm.bogus"}'
expect 422 "colour"           POST $P "${J[@]}" -d '{"metric":"vm.exits","decomposition":["colour"]}'
expect 422 "vm"               POST $P "${J[@]}" -d '{"metric":"vm.exits","predicate":{"lt":["vm",3]}}'
expect 422 "shoesize"         POST $P "${J[@]}" -d '{"metric":"vm.exits","predicate":{"eq":["shoesize",3]}}'
expect 422 "numeric"          POST $P "${J[@]}" -d '{"metric":"vm.disk_ops","decomposition":["latency","size"]}'
expect 422 "cells"            POST $P "${J[@]}" -d '{"metric":"vm.disk_ops","decomposition":["vm","disk","latency"],"retention-time":86400}'
expect 422 "unknown field"    POST $P -d 'module=vm&stat=irqs&decomposition=nosuchfield'
# oversized, invalid UTF-8
expect 413 "65536"            POST $P "${J[@]}" --data-binary @"$TMPD/big"
expect 400 "not valid JSON"   POST $P "${J[@]}" --data-binary @"$TMPD/badutf8"
# unknown ids, paths, path tricks
expect 404 "999"              GET $P/999
expect 404 "abc"              GET $P/abc
expect 404 "-1"               DELETE $P/-1
expect 404 "/ca/nothing"      GET /ca/nothing
expect 404 "/nonexistent"     GET /nonexistent.html
expect 400 ".."               GET /ca/instrumentations/../../etc/passwd
expect 400 ".."               GET /ca/instrumentations/%2e%2e/%2e%2e/etc/passwd
expect 400 ".."               GET /../../../etc/passwd
expect 400 "non-ASCII"        GET /ca/instrumentations/%ff
# wrong methods (Allow checked below)
expect 405 "PATCH"            PATCH $P/1
expect 405 "DELETE"           DELETE /ca
expect 405 "PUT"              PUT $P
expect 405 "POST"             POST $P/1/value/raw
# values: negative durations, absurd sizes
expect 400 "duration"         GET "$P/1/value/raw?duration=-5"
expect 400 "ndatapoints"      GET "$P/1/value/raw?ndatapoints=100000"
expect 400 "start_time"       GET "$P/1/value/raw?start_time=yesterday"
expect 400 "width"            GET "$HM/image?width=100000"
expect 400 "height"           GET "$HM/image?height=0"
expect 400 "nbuckets"         GET "$HM/image?nbuckets=5000"
expect 400 "ymax"             GET "$HM/image?ymin=500&ymax=100"
expect 400 "coloring"         GET "$HM/image?coloring=rainbow"
expect 400 "hues"             GET "$HM/image?hues=21,999"
expect 400 "isolate"          GET "$HM/image?isolate=perhaps"
expect 400 "duration"         GET "$HM/image?duration=-60"
expect 400 "percentile"       GET "$HM/percentile?percentile=1.5"
expect 400 "percentile"       GET "$HM/percentile"
expect 400 "x"                GET "$HM/details?width=10&height=10&x=50&y=1"
expect 400 "x"                GET "$HM/details"
expect 404 "numeric decomposition" GET /ca/instrumentations/1/value/heatmap/image
expect 409 "predicate"        PUT $P/2 "${J[@]}" -d '{"predicate":{"eq":["vm","x"]}}'
expect 404 "77"               POST $P/77/clone
# the per-owner limit (5 here; 2 exist)
for _ in 1 2 3; do curl -s -X POST "$BASE$P" "${J[@]}" -d '{"metric":"vm.exits"}' >/dev/null; done
expect 429 "5 instrumentations" POST $P "${J[@]}" -d '{"metric":"vm.exits"}'

ALLOW=$(curl -s -o /dev/null -D - -X PATCH "$BASE$P/1" | tr -d '\r' | sed -n 's/^Allow: //Ip')
expect_eq "405 carries an Allow header" "$ALLOW" "GET, HEAD, PUT, DELETE"
RET=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$BASE$P/2" "${J[@]}" -d '{"retention-time":120}')
expect_eq "PUT of a mutable property works" "$RET" 200
expect_eq "PUT changed retention-time" "$(curl -s "$BASE$P/2" | jq '."retention-time"')" 120
# still serving
expect_eq "GET /ca still works" "$(code GET /ca)" 200
check "agent process still alive" kill -0 "$AGENT_PID"
check "no crash reported in the log" test -z "$(grep -iE 'sanitizer|segfault|abort' "$LOG")"
agent_stop
RC=$?
expect_eq "agent exits 0 on SIGTERM" "$RC" 0
tap_done
