#!/bin/bash
# Cloud Analytics conformance over HTTP: the value envelope, CA's interval
# rules and messages, JSON-body parameters, the future check, the value
# listings, instrumentation fields and uris, X-API-Version, the customer
# alias, CA's limits and the legacy resources, against a real agent; the
# values of a real vmload guest (its interrupts at 250 ms into each second)
# in CA's inclusive range notation and CA's average/percentile.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "ca conformance"

LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir none; then
	not_ok "agent starts"; sed 's/^/# /' "$LOG"; tap_done
fi
J=(-H 'Content-Type: application/json')
VM=cac-$$
post() { curl -s -X POST "$BASE/ca/instrumentations" "${J[@]}" -d "$1"; }
I_SC=$(post '{"module":"vm","stat":"irqs","predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
I_DI=$(post '{"module":"vm","stat":"irqs","decomposition":["vm"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
post '{"module":"vm","stat":"irqs","decomposition":["subsecond"],"predicate":{"eq":["vm","'$VM'"]}}' > "$TMPD/num.json"
I_NU=$(jq -r .id "$TMPD/num.json")
I_G5=$(post '{"module":"vm","stat":"irqs","granularity":5,"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
I_DN=$(post '{"module":"vm","stat":"irqs","decomposition":["vm","subsecond"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
I_LAT=$(post '{"module":"vm","stat":"exits","decomposition":["vm","latency"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
P=/ca/instrumentations
V=$P/$I_SC/value/raw

# ---- 7.8: instrumentations, routes, headers
check "numeric instrumentation: enabled, transformations {}, nsources 1" \
	jqe '.enabled == true and .transformations == {} and .nsources == 1' "$TMPD/num.json"
expect_eq "numeric uris in CA's order" "$(jq -c '[.uris[].name]' "$TMPD/num.json")" '["value_heatmap","details_heatmap","value_raw"]'
expect_eq "value_heatmap points at the image" "$(jq -r '.uris[0].uri' "$TMPD/num.json")" "$P/$I_NU/value/heatmap/image"
expect_eq "CA's property order" "$(jq -c 'keys_unsorted' "$TMPD/num.json")" \
	'["module","stat","predicate","decomposition","value-dimension","value-arity","enabled","retention-time","idle-max","transformations","nsources","granularity","persist-data","crtime","value-scope","uri","id","uris"]'
expect_eq "GET .../value on numeric" "$(curl -s "$BASE$P/$I_NU/value" | jq -c '[.[].name]')" '["value_raw","value_heatmap"]'
expect_eq "GET .../value on scalar" "$(curl -s "$BASE$P/$I_SC/value" | jq -c .)" "[{\"name\":\"value_raw\",\"uri\":\"$P/$I_SC/value/raw\"}]"
expect_eq "GET .../value/heatmap on numeric: image, details, average, percentile" \
	"$(curl -s "$BASE$P/$I_NU/value/heatmap" | jq -c '[.[].uri | split("/") | last]')" '["image","details","average","percentile"]'
for i in "$I_SC" "$I_DI"; do
	expect_eq "GET .../value/heatmap on $i (not numeric): 404" "$(code GET "$P/$i/value/heatmap")" 404
	expect_eq "GET .../value/heatmap/image on $i (not numeric): 404" "$(code GET "$P/$i/value/heatmap/image")" 404
done
for h in X-API-Version X-API-version x-api-version; do
	for bad in ca/a foo/0.1.0 2011-04-11 ca/0.1; do
		expect_eq "$h: $bad -> 409" "$(code GET /ca -H "$h: $bad")" 409
	done
	expect_eq "$h: invalid message" "$(jq -r .error.message "$TMPD/body")" "invalid API version string: ca/0.1"
	for good in ca/0.1.0 ca/3.1.5; do
		expect_eq "$h: $good -> 200" "$(code GET /ca -H "$h: $good")" 200
	done
done
expect_eq "no X-API-Version -> 200" "$(code GET /ca)" 200
expect_eq "unknown instrumentation -> 404, ECA_NOENT" "$(code GET $P/99999)/$(jq -r .error.code "$TMPD/body")" "404/ECA_NOENT"
expect_eq "customer alias lists the same instrumentations" \
	"$(curl -s "$BASE/ca/customers/7/instrumentations" | jq -c '[.[].id]')" "$(curl -s "$BASE$P" | jq -c '[.[].id]')"
expect_eq "customer alias reads values" "$(code GET "/ca/customers/7/instrumentations/$I_SC/value/raw")" 200
expect_eq "empty custid: 404" "$(code GET /ca/customers//instrumentations)" 404
expect_eq "/ca/types" "$(curl -s "$BASE/ca/types" | jq -c .)" '{"latency":"numeric","string":"discrete","number":"numeric"}'
expect_eq "/ca/transformations" "$(curl -s "$BASE/ca/transformations" | jq -c .)" '{}'
expect_eq "/ca/metrics: vm.exits latency is a latency, subsecond a number, vm a string" \
	"$(curl -s "$BASE/ca/metrics" | jq -c '.vm.stats.exits | [.type, .fields.latency.type, .fields.subsecond.type, .fields.vm.type]')" \
	'["unused","latency","number","string"]'
lim() { # lim WANT_MESSAGE BODY
	local got; got=$(code POST $P "${J[@]}" -d "$2")
	if [ "$got" = 400 ] && [ "$(jq -r .error.message "$TMPD/body")" = "$1" ] && [ "$(jq -r .error.code "$TMPD/body")" = ECA_INVAL ]; then
		ok "limit: $2 -> $1"
	else
		not_ok "limit: $2: got $got $(head -c 300 "$TMPD/body")"
	fi
}
lim 'value 7 for field "granularity" is invalid: must be divisible by 5' '{"metric":"vm.exits","granularity":7}'
lim 'value 5 for field "retention-time" is invalid: minimum is 10' '{"metric":"vm.exits","retention-time":5}'
lim 'value false for field "enabled" is invalid: unsupported value' '{"metric":"vm.exits","enabled":false}'
lim 'value "false" for field "enabled" is invalid: unsupported value' '{"metric":"vm.exits","enabled":"false"}'
expect_eq "idle-max 604801 refused" "$(code POST $P "${J[@]}" -d '{"metric":"vm.exits","idle-max":604801}')" 400
expect_eq "idle-max 604800 accepted" "$(code POST $P "${J[@]}" -d '{"metric":"vm.exits","idle-max":604800}')" 201
curl -s -X DELETE "$BASE$(jq -r .uri "$TMPD/body")" >/dev/null

# ---- 7.7: the envelope and the interval
NOW=$(date +%s)
curl -s "$BASE$V" > "$TMPD/raw.json"
expect_eq "scalar raw: CA's keys, in order" "$(jq -c 'keys_unsorted | .[0:10]' "$TMPD/raw.json")" \
	'["value","transformations","start_time","duration","end_time","nsources","minreporting","requested_start_time","requested_duration","requested_end_time"]'
# after them only kvmscope's finality (docs/api.md): final_until, and partial
# with delay for a point that may still change
check "scalar raw: then final_until [, partial, delay] ($(jq -c 'keys_unsorted | .[10:]' "$TMPD/raw.json"))" \
	jqe '(keys_unsorted | .[10:]) as $k | $k == ["final_until"] or $k == ["final_until","partial","delay"]' "$TMPD/raw.json"
check "default start: floor(now) - 2 (+-1), duration 1" \
	jqe "(.start_time - ($NOW - 2) | fabs) <= 1 and .duration == 1 and .end_time == .start_time + 1" "$TMPD/raw.json"
expect_eq "ndatapoints=1 is an array of 1" "$(curl -s "$BASE$V?ndatapoints=1" | jq -c 'type, length' | tr '\n' ' ')" '"array" 1 '
T=$(( (NOW - 30) / 5 * 5 ))
expect_eq "granularity 5: start_time=T+1&duration=3 normalized, requested kept" \
	"$(curl -s "$BASE$P/$I_G5/value/raw?start_time=$((T + 1))&duration=3" | jq -c '[.start_time,.duration,.end_time,.requested_start_time,.requested_duration,.requested_end_time]')" \
	"[$T,5,$((T + 5)),$((T + 1)),3,$((T + 4))]"
B0=$((NOW - 20))
expect_eq "JSON body replaces the query: 3 consecutive points" \
	"$(curl -s -X GET "$BASE$V?duration=1" "${J[@]}" -d "{\"start_time\":$B0,\"duration\":5,\"ndatapoints\":3}" | jq -c '[.[].start_time]')" \
	"[$B0,$((B0 + 5)),$((B0 + 10))]"
OLD=$(( $(jq -r .crtime "$TMPD/num.json") / 1000 - 100 ))
expect_eq "a point before the instrumentation existed: minreporting 0, empty value by arity" \
	"$(for i in $I_SC $I_DI $I_NU; do curl -s "$BASE$P/$i/value/raw?start_time=$OLD" | jq -c '[.minreporting, .value]'; done | tr '\n' ' ')" '[0,0] [0,{}] [0,[]] '
E=$((NOW - 5))
expect_eq "end_time=E&duration=10 -> start E-10" "$(curl -s "$BASE$V?end_time=$E&duration=10" | jq .start_time)" $((E - 10))
expect_eq "start_time and end_time -> duration" "$(curl -s "$BASE$V?start_time=$((E - 7))&end_time=$E" | jq .duration)" 7
fut=$(code GET "$V?start_time=$((NOW + 10))")
expect_eq "10 s in the future: 409, CA's message" "$fut/$(jq -r .error.code "$TMPD/body")/$(jq -r .error.message "$TMPD/body")" \
	"409/ECA_INVAL/requested data point is too far in the future"
bad() { # bad QUERY [WANT_MESSAGE]
	local got; got=$(code GET "$V?$1")
	if [ "$got" = 400 ] && [ "$(jq -r .error.code "$TMPD/body")" = ECA_INVAL ] &&
	   { [ -z "${2:-}" ] || [ "$(jq -r .error.message "$TMPD/body")" = "${2:-}" ]; }; then
		ok "invalid: $1 -> 400 ECA_INVAL $(jq -c .error.message "$TMPD/body")"
	else
		not_ok "invalid: $1: got $got $(head -c 300 "$TMPD/body")"
	fi
}
bad start_time=foo 'value "foo" for param "start_time" not valid: not a number'
bad duration=foo 'value "foo" for param "duration" not valid: not a number'
bad end_time=foo
bad end_time=-1 'value "-1" for param "end_time" not valid: value too small (min: 0)'
bad "start_time=12340&end_time=12350&duration=11" '"start_time" + "duration" must equal "end_time"'
bad "start_time=12340&end_time=12340" '"end_time" must be later than "start_time"'
bad "end_time=10&duration=11" '"duration" cannot exceed "end_time"'
bad transformations=blahblah 'transformation "blahblah" does not exist'
bad ndatapoints=0 'value "0" for param "ndatapoints" not valid: value too small (min: 1)'

# ---- routes and headers: OPTIONS, CORS, 415, admin status
expect_eq "OPTIONS on any path: 200, empty" "$(code OPTIONS /no/such/path)/$(wc -c < "$TMPD/body")" "200/0"
expect_eq "no CORS headers without tokens (every client is an operator)" \
	"$(curl -si "$BASE/ca" | grep -ci '^access-control-')" 0
c=$(code POST $P -H 'Content-Type: multipart/form-data; boundary=x' --data-binary $'--x\r\n')
expect_eq "multipart body: 415, CA's message" "$c/$(jq -r .error.code "$TMPD/body")/$(jq -r .error.message "$TMPD/body")" \
	"415/ECA_INVAL/multipart form data is not supported"
curl -s "$BASE/ca/admin/status" > "$TMPD/status.json"
check "admin status: started, uptime, heap, the instrumenter (this host) and our instrumentations by id" \
	jqe --arg id "$I_NU" ".started > 0 and .started <= $(date +%s)000 and .uptime >= 0 and .heap.rss > 0 and (.cfg_instrumenters | length == 1) and (.cfg_insts[\$id].stat == \"irqs\") and .recurse == false" "$TMPD/status.json"
expect_eq "admin status timeout=0: 400" "$(code GET '/ca/admin/status?timeout=0')" 400
expect_eq "admin status recurse=1: not a boolean" "$(code GET '/ca/admin/status?recurse=1')/$(jq -r .error.message "$TMPD/body")" \
	'400/value "1" for param "recurse" not valid: not a boolean'
TOK=cac-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s operator\n' "$TOK" > "$TMPD/tokens"
chmod 600 "$TMPD/tokens"
BASE0=$BASE PID0=$AGENT_PID
if agent_start "$LOG" --state-dir none --token-file "$TMPD/tokens"; then
	curl -si -X OPTIONS "$BASE/ca/instrumentations/1" > "$TMPD/opt.txt"
	check "with tokens, OPTIONS (no token, as a preflight) is 200 with CA's CORS headers" \
		bash -c "grep -q '^HTTP/1.1 200' '$TMPD/opt.txt' && grep -qi '^access-control-allow-origin: \*' '$TMPD/opt.txt' && grep -qi '^access-control-allow-methods: POST, GET, DELETE, PUT' '$TMPD/opt.txt' && grep -qi '^access-control-allow-headers: Content-type, Authorization' '$TMPD/opt.txt'"
	expect_eq "with tokens, every answer carries them" \
		"$(curl -si -H "Authorization: Bearer $TOK" "$BASE/ca" | grep -ci '^access-control-')" 3
	agent_stop
else
	not_ok "agent starts with a token file"
fi
BASE=$BASE0 AGENT_PID=$PID0

# ---- real data: the guest's interrupts at 250 ms into each second
T0=$(date +%s)
"$VMLOAD" -name guest=$VM --pio vcpu=0,count=200 \
	--irq vcpu=0,vector=0x30,via=ioapic,period_ms=1000,phase_ms=250,count=4 \
	--truth "$TMPD/truth.json" --duration 20 >/dev/null 2>"$TMPD/vmload.err"
T1=$(date +%s)
sleep 2.5
check "vmload completed" test "$(jq -r .completed "$TMPD/truth.json")" = true
TRUTH=$(jq '[.irqs[].count] | add' "$TMPD/truth.json")
N=$((T1 - T0 + 2))
curl -s "$BASE$P/$I_NU/value/raw?start_time=$T0&duration=1&ndatapoints=$N" > "$TMPD/sub.json"
expect_eq "every interrupt counted" "$(jq '[.[].value[][1]] | add' "$TMPD/sub.json")" "$TRUTH"
expect_eq "buckets in CA's inclusive notation: [lo, lo + 9] of the truth's 10 ms" \
	"$(jq -c '[.[].value[][0]] | unique' "$TMPD/sub.json")" \
	"$(jq -c '[.irqs[].subsecond_ms[] | (. / 10 | floor) * 10 | [., . + 9]] | unique' "$TMPD/truth.json")"
LO=$(jq '[.irqs[].subsecond_ms[] | (. / 10 | floor) * 10] | min' "$TMPD/truth.json")
Q="start_time=$T0&duration=1&ndatapoints=$N&nbuckets=100&ymax=1000"
curl -s "$BASE$P/$I_NU/value/heatmap/average?$Q" > "$TMPD/avg.json"
check "CA average: one object per point, the 10 ms bucket's midpoint ($((LO + 5))) where there is data, null elsewhere" \
	jqe "length == $N and ([.[] | select(.average != null)] | length == $TRUTH) and all(.[]; .average == null or .average == $((LO + 5))) and all(.[]; .nbuckets == 100 and .width == 600 and .height == 300)" "$TMPD/avg.json"
curl -s "$BASE$P/$I_NU/value/heatmap/percentile?$Q&percentile=1" > "$TMPD/p1.json"
check "CA percentile 1: the bucket's upper edge ($((LO + 10))) with data, ymin (0) without" \
	jqe "([.[] | select(.percentile == $((LO + 10)))] | length == $TRUTH) and ([.[] | select(.percentile == 0)] | length == $N - $TRUTH)" "$TMPD/p1.json"
expect_eq "CA percentile of an empty second is ymin" \
	"$(curl -s "$BASE$P/$I_NU/value/heatmap/percentile?start_time=$((T0 - 5))&percentile=0.5&ymin=7&ymax=1000" | jq .percentile)" 7
expect_eq "percentile missing: 400" "$(code GET "$P/$I_NU/value/heatmap/percentile")/$(jq -r .error.message "$TMPD/body")" \
	'400/param "percentile" must be specified'
curl -s "$BASE$P/$I_NU/value/heatmap/image?start_time=$T0&duration=$N&width=$N&height=100&nbuckets=100" > "$TMPD/img.json"
check "image: CA's fields then the envelope" \
	jqe '(keys_unsorted | .[0:8]) == ["nbuckets","width","height","ymin","ymax","present","transformations","image"] and .transformations == {} and .end_time == .start_time + .duration and .nsources == 1' "$TMPD/img.json"
expect_eq "image default duration 60" "$(curl -s "$BASE$P/$I_NU/value/heatmap/image" | jq .duration)" 60
X=$(jq -r --argjson t0 $T0 '[.[] | select(.value != []) | .start_time - $t0] | first' "$TMPD/sub.json")
curl -s "$BASE$P/$I_NU/value/heatmap/details?start_time=$T0&duration=$N&width=$N&height=100&nbuckets=100&ymax=1000&x=$X&y=$(( (1000 - LO) / 10 - 1 ))" > "$TMPD/det.json"
check "details: bucket_time, bucket_ymin/ymax [$LO, $((LO + 10))), total 1" \
	jqe ".bucket_time == $T0 + $X and .bucket_ymin == $LO and .bucket_ymax == $((LO + 10)) and .total == 1 and .nbuckets == 100 and .requested_duration == $N" "$TMPD/det.json"
expect_eq "details: CA's fields first, in CA's order" "$(jq -c 'keys_unsorted | .[0:8]' "$TMPD/det.json")" \
	'["nbuckets","width","height","bucket_time","bucket_ymin","bucket_ymax","present","total"]'
check "details: start_time/duration are the request's (CA), the cell's own in bucket_duration and cell_total" \
	jqe ".start_time == $T0 and .duration == $N and .end_time == $T0 + $N and .bucket_duration == 1 and .cell_total == 1" "$TMPD/det.json"
DQ="width=$N&height=100&nbuckets=100&ymax=1000&x=$X&y=$(( (1000 - LO) / 10 - 1 ))"
curl -s "$BASE$P/$I_DN/value/heatmap/details?start_time=$T0&duration=$N&$DQ&selected=zzz&isolate=true" > "$TMPD/detk.json"
check "details by vm: CA's present counts every key ({$VM: 1}), the selection applies to the cell only" \
	jqe --arg vm "$VM" '.present == {($vm): 1} and .total == 1 and .cell_present == {} and .cell_total == 0' "$TMPD/detk.json"
# several data points: an array, each what its own request answers
DP=3
curl -s "$BASE$P/$I_NU/value/heatmap/image?start_time=$T0&duration=2&ndatapoints=$DP&width=20&height=100" > "$TMPD/imgs.json"
for i in 0 1 2; do
	curl -s "$BASE$P/$I_NU/value/heatmap/image?start_time=$((T0 + 2 * i))&duration=2&width=20&height=100" > "$TMPD/img$i.json"
done
expect_eq "image ndatapoints=$DP: $DP points of 2 s" "$(jq -c '[.[].start_time - '$T0']' "$TMPD/imgs.json")" "[0,2,4]"
expect_eq "image ndatapoints=$DP: each image is its own request's" \
	"$(jq -r '.[].image' "$TMPD/imgs.json" | md5sum)" "$(for i in 0 1 2; do jq -r .image "$TMPD/img$i.json"; done | md5sum)"
curl -s "$BASE$P/$I_NU/value/heatmap/details?start_time=$((T0 + X))&duration=1&ndatapoints=2&width=10&height=100&nbuckets=100&ymax=1000&x=0&y=$(( (1000 - LO) / 10 - 1 ))" > "$TMPD/dets.json"
check "details ndatapoints=2: the pixel of each point's image (two seconds with an interrupt)" \
	jqe "length == 2 and .[0].bucket_time == $T0 + $X and .[1].bucket_time == $T0 + $X + 1 and .[0].total == 1 and .[1].total == 1 and .[1].start_time == $T0 + $X + 1" "$TMPD/dets.json"
expect_eq "ndatapoints x duration beyond the retention: 400" \
	"$(code GET "$P/$I_NU/value/heatmap/image?start_time=$((T0 - 700))&duration=60&ndatapoints=11")" 400
# decompose_all counts its present keys (the rest and $VM) for "need N hues"
expect_eq "decompose_all&hues=0 with one key present: need 2 hues" \
	"$(code GET "$P/$I_DN/value/heatmap/image?start_time=$T0&duration=$N&decompose_all=true&hues=0")/$(jq -r .error.message "$TMPD/body")" \
	"400/heatmap: need 2 hues"
expect_eq "decompose_all&hues=0,240: 200" "$(code GET "$P/$I_DN/value/heatmap/image?start_time=$T0&duration=$N&decompose_all=true&hues=0,240")" 200
# colours read back from the PNG
cat > "$TMPD/colours.py" <<'PY'
import json, struct, sys, zlib
d = json.load(open(sys.argv[1]))
d = d[0] if isinstance(d, list) else d
import base64
png = base64.b64decode(d["image"]); pos, idat = 8, b""
while pos < len(png):
    n, t = struct.unpack(">I4s", png[pos:pos+8]); body = png[pos+8:pos+8+n]; pos += 12 + n
    if t == b"IHDR": w, h = struct.unpack(">II", body[:8])
    elif t == b"IDAT": idat += body
raw = zlib.decompress(idat); stride = w * 3; prev = bytearray(stride); seen = set(); i = 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i+1:i+1+stride]); i += 1 + stride
    for x in range(stride):
        a = line[x-3] if x >= 3 else 0; b = prev[x]; c = prev[x-3] if x >= 3 else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    seen |= {bytes(line[3*x:3*x+3]).hex() for x in range(w)}
    prev = line
print(" ".join(sorted(seen - {"ffffff"})) or "white")
PY
curl -s "$BASE$P/$I_DN/value/heatmap/image?start_time=$T0&duration=$N&width=$N&height=100&selected=$VM&isolate=true&hues=120" > "$TMPD/iso.json"
expect_eq "isolate: the selected key takes hues[0] (120 at level 1: 18f218)" "$(python3 "$TMPD/colours.py" "$TMPD/iso.json")" 18f218
curl -s "$BASE$P/$I_DN/value/heatmap/image?start_time=$T0&duration=$N&width=$N&height=100&selected=$VM&isolate=true" > "$TMPD/iso.json"
expect_eq "isolate without hues: the default sequence skips the rest's 21 (112: 35f218)" "$(python3 "$TMPD/colours.py" "$TMPD/iso.json")" 35f218
# auto ymax: CA scales every key, whatever is drawn; an empty window is 0
LQ="start_time=$T0&duration=$N&width=$N&height=100"
YALL=$(curl -s "$BASE$P/$I_LAT/value/heatmap/image?$LQ" | jq .ymax)
YNONE=$(curl -s "$BASE$P/$I_LAT/value/heatmap/image?$LQ&selected=zzz&isolate=true" | jq .ymax)
HI=$(curl -s "$BASE$P/$I_LAT/value/raw?start_time=$T0&duration=1&ndatapoints=$N" | jq '[.[].value[][][0][1]] | max')
check "auto ymax over every key: isolating an absent key keeps $YALL (the data reach $HI)" \
	test "$YALL" = "$YNONE" -a "${HI:-0}" -gt 0 -a "$YALL" -gt "${HI:-0}"
curl -s "$BASE$P/$I_LAT/value/heatmap/image?start_time=$OLD&duration=10&width=10&height=10" > "$TMPD/empty.json"
expect_eq "an empty window: ymax 0, a white image" "$(jq .ymax "$TMPD/empty.json") $(python3 "$TMPD/colours.py" "$TMPD/empty.json")" "0 white"
expect_eq "details x outside: 400, CA's message" \
	"$(code GET "$P/$I_NU/value/heatmap/details?width=10&x=10&y=0")/$(jq -r .error.message "$TMPD/body")" '400/"x" must be less than "width"'
hm_bad() { # hm_bad QUERY WANT_MESSAGE
	local got; got=$(code GET "$P/$I_NU/value/heatmap/image?$1")
	if [ "$got" = 400 ] && [ "$(jq -r .error.code "$TMPD/body")" = ECA_INVAL ] &&
	   grep -qF -- "$2" <<<"$(jq -r .error.message "$TMPD/body")"; then
		ok "image: $1 -> 400 $(jq -c .error.message "$TMPD/body")"
	else
		not_ok "image: $1: got $got $(head -c 300 "$TMPD/body")"
	fi
}
hm_bad isolate=1 'value "1" for param "isolate" not valid: not a boolean'
hm_bad exclude= 'value "" for param "exclude" not valid: not a boolean'
hm_bad "selected=a&isolate=true&exclude=true" 'only one of "isolate", "exclude", and "decompose_all" may be specified'
hm_bad "decompose_all=true&isolate=true" 'only one of "isolate", "exclude", and "decompose_all" may be specified'
hm_bad "selected=b&hues=0" "need 2 hues"
hm_bad "selected=a,b&hues=0,240" "need 3 hues"	# one value, two keys
hm_bad hues=360 "invalid hue"
expect_eq "selected=a&selected=b,c is two keys: 3 hues are enough" \
	"$(code GET "$P/$I_NU/value/heatmap/image?selected=a&selected=b,c&hues=0,240,120")" 200
expect_eq "selected=a,b&isolate=true needs only 2 hues" \
	"$(code GET "$P/$I_NU/value/heatmap/image?selected=a,b&isolate=true&hues=0,240")" 200
no_logged_errors "$LOG"
tap_done
