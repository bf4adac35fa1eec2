#!/bin/bash
# kvmscope agent end to end: real vmload guests, instrumentations over HTTP,
# raw values against vmload's truth, a subsecond heatmap decoded pixel by
# pixel, details/average/percentile, restart with persistence, tokens.
# Interrupts here come from the irqchip tracepoints (the fallback path: PVM
# fires no kvm_inj_virq); exits from kvm_pio (no kvm_exit here).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "agent e2e"
command -v python3 >/dev/null || { skip "agent e2e: python3 absent (decodes the PNG)"; tap_done; }

STATE=$TMPD/state LOG=$TMPD/agent.log
if ! agent_start "$LOG" --state-dir "$STATE"; then
	not_ok "agent starts"; cat "$LOG" | sed 's/^/# /'; tap_done
fi
ok "agent answers on $BASE"

VM=e2e-a-$$
post() { curl -s -X POST "$BASE/ca/instrumentations" -H 'Content-Type: application/json' -d "$1"; }
I_SUB=$(post '{"module":"vm","stat":"irqs","decomposition":["subsecond"],"predicate":{"eq":["vm","'$VM'"]},"persist-data":true}' | jq -r .id)
I_CNT=$(post '{"module":"vm","stat":"irqs","decomposition":["vm"],"predicate":{"eq":["vm","'$VM'"]}}' | jq -r .id)
# a CA form post, as the original clients sent it
I_PIO=$(curl -s -X POST "$BASE/ca/instrumentations" --data-urlencode module=vm --data-urlencode stat=exits \
	--data-urlencode decomposition=class --data-urlencode "predicate={\"eq\":[\"vm\",\"$VM\"]}" | jq -r .id)
check "three instrumentations created (ids $I_SUB $I_CNT $I_PIO)" test "$I_SUB" -ge 1 -a "$I_CNT" -ge 1 -a "$I_PIO" -ge 1
sleep 1.5

T0=$(date +%s)
NIRQ=4 NPIO=300
"$VMLOAD" -name guest=$VM --pio vcpu=0,count=$NPIO \
	--irq vcpu=0,vector=0x30,via=ioapic,period_ms=1000,phase_ms=250,count=$NIRQ \
	--truth "$TMPD/truth.json" --duration 20 >/dev/null 2>"$TMPD/vmload.err"
T1=$(date +%s)
sleep 2.5
check "vmload completed" test "$(jq -r .completed "$TMPD/truth.json")" = true
TRUTH_IRQ=$(jq '[.irqs[].count] | add' "$TMPD/truth.json")
TRUTH_PIO=$(jq '[.vcpus[].pio] | add' "$TMPD/truth.json")
DUR=$((T1 - T0 + 2))
raw() { curl -s "$BASE/ca/instrumentations/$1/value/raw?start_time=$T0&duration=1&ndatapoints=$DUR"; }
GOT_IRQ=$(raw "$I_CNT" | jq "[.[].value[\"$VM\"] // 0] | add")
expect_eq "vm.irqs by vm equals vmload's count" "$GOT_IRQ" "$TRUTH_IRQ"
GOT_PIO=$(raw "$I_PIO" | jq '[.[].value.iox // 0] | add')
expect_eq "vm.exits class iox equals vmload's port writes" "$GOT_PIO" "$TRUTH_PIO"
raw "$I_SUB" > "$TMPD/sub.json"
GOT_SUB=$(jq '[.[].value[][1]] | add' "$TMPD/sub.json")
expect_eq "subsecond distribution holds every interrupt" "$GOT_SUB" "$TRUTH_IRQ"
WANT_B=$(jq '[.irqs[].subsecond_ms[] | (. / 10 | floor) * 10] | unique' -c "$TMPD/truth.json")
GOT_B=$(jq '[.[].value[][0][0]] | unique' -c "$TMPD/sub.json")
expect_eq "subsecond buckets match the truth's delivery offsets" "$GOT_B" "$WANT_B"
expect_eq "subsecond buckets are written as CA's inclusive [lo, lo + 9]" \
	"$(jq -c '[.[].value[][0] | .[1] - .[0]] | unique' "$TMPD/sub.json")" "[9]"

# heatmap: one column per second, 100 rows of 10 ms each over [0, 1000)
HQ="start_time=$T0&duration=$DUR&width=$DUR&height=100&nbuckets=100&ymax=1000"
curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/image?$HQ" > "$TMPD/hm.json"
expect_eq "heatmap reports its geometry" "$(jq -c '[.width,.height,.nbuckets,.ymin,.ymax]' "$TMPD/hm.json")" "[$DUR,100,100,0,1000]"
jq -r .image "$TMPD/hm.json" | base64 -d > "$TMPD/hm.png"
cat > "$TMPD/png.py" <<'PY'
import sys, zlib, struct, json
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat, w = 8, b'', 0
while pos < len(d):
    n, t = struct.unpack('>I4s', d[pos:pos+8]); body = d[pos+8:pos+8+n]; pos += 12 + n
    if t == b'IHDR':
        w, h, depth, ctype = struct.unpack('>IIBB', body[:10]); assert depth == 8 and ctype == 2
    elif t == b'IDAT': idat += body
raw = zlib.decompress(idat); bpp = 3; stride = w * bpp; prev = bytearray(stride); rows = []; i = 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i+1:i+1+stride]); i += 1 + stride
    for x in range(stride):
        a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
lit = sorted({(x, y) for y in range(h) for x in range(w) if rows[y][3*x:3*x+3] != b'\xff\xff\xff'})
print(json.dumps({"w": w, "h": h, "rows": sorted({y for _, y in lit}), "cols": sorted({x for x, _ in lit})}))
PY
PIX=$(python3 "$TMPD/png.py" "$TMPD/hm.png")
B0=$(echo "$WANT_B" | jq '.[0]')
WANT_ROW=$(( (1000 - B0) / 10 - 1 ))
expect_eq "PNG is width x height" "$(echo "$PIX" | jq -c '[.w,.h]')" "[$DUR,100]"
expect_eq "coloured pixels sit in the row of ${B0} ms (row $WANT_ROW from the top)" \
	"$(echo "$PIX" | jq -c .rows)" "$(jq -c '[.irqs[].subsecond_ms[] | (1000 - ((. / 10 | floor) * 10)) / 10 - 1] | unique' "$TMPD/truth.json")"
NCOLS=$(echo "$PIX" | jq '.cols | length')
expect_eq "one coloured column per second with an interrupt" "$NCOLS" "$TRUTH_IRQ"
X=$(echo "$PIX" | jq '.cols[0]')
DET=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/details?$HQ&x=$X&y=$WANT_ROW")
expect_eq "details at the pixel: count 1" "$(echo "$DET" | jq .total)" 1
expect_eq "details at the pixel: bucket [$B0, $((B0 + 10)))" "$(echo "$DET" | jq -c '[.bucket_min,.bucket_max]')" "[$B0,$((B0 + 10))]"
DETE=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/details?$HQ&x=$X&y=10")
expect_eq "details of an empty pixel: count 0" "$(echo "$DETE" | jq .total)" 0
P50=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/percentile?$HQ&percentile=0.5&series=true")
check "median of each second with data lies in [$B0, $((B0 + 10))]" \
	jqe "[.[] | select(.[1] != null) | .[1]] | length == $TRUTH_IRQ and all(. >= $B0 and . <= $((B0 + 10)))" <<<"$P50"
AVG=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/average?$HQ&series=true")
check "average of each second with data is the bucket midpoint $((B0 + 5))" \
	jqe "[.[] | select(.[1] != null) | .[1]] | length == $TRUTH_IRQ and all(. == $((B0 + 5)))" <<<"$AVG"
# CA's form: one object per data point (ndatapoints of a second each)
CAQ="start_time=$T0&duration=1&ndatapoints=$DUR&nbuckets=100&ymax=1000"
AVGCA=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/average?$CAQ")
check "CA average: $DUR points, those with data at the bucket midpoint $((B0 + 5)), the others null" \
	jqe "length == $DUR and ([.[] | select(.average != null) | .average] | length == $TRUTH_IRQ and all(. == $((B0 + 5)))) and all(.[]; .nbuckets == 100 and .duration == 1 and .end_time == .start_time + 1)" <<<"$AVGCA"
P50CA=$(curl -s "$BASE/ca/instrumentations/$I_SUB/value/heatmap/percentile?$CAQ&percentile=0.5")
check "CA median: the middle of its 10 ms bucket where there is data, ymin (0) where there is none" \
	jqe "length == $DUR and ([.[] | select(.percentile != 0) | .percentile] | length == $TRUTH_IRQ and all(. == $((B0 + 5))))" <<<"$P50CA"

# restart: specs come back, persist-data keeps values
agent_stop
check "state file written" test -s "$STATE/state.json"
# data/<id>.log: a head line, then one line per slot with data
check "persist-data values saved apart, in data/$I_SUB.log" \
	jqe -s "(.[1:] | length) > 0 and .[0].decomposition == [\"subsecond\"] and all(.[1:][]; has(\"start_time\"))" "$STATE/data/$I_SUB.log"
check "no data file for the instrumentation without persist-data" test ! -e "$STATE/data/$I_CNT.log" -a ! -e "$STATE/data/$I_CNT.json"
check "state.json holds specs only" jqe '[.instrumentations[] | has("data")] | any | not' "$STATE/state.json"
agent_start "$LOG" --state-dir "$STATE" || not_ok "agent restarts"
IDS=$(curl -s "$BASE/ca/instrumentations" | jq -c '[.[].id]')
expect_eq "instrumentations are back after a restart" "$IDS" "[\"$I_SUB\",\"$I_CNT\",\"$I_PIO\"]"
GOT_SUB2=$(raw "$I_SUB" | jq '[.[].value[][1]] | add')
expect_eq "persist-data instrumentation kept its values" "$GOT_SUB2" "$TRUTH_IRQ"
GOT_CNT2=$(raw "$I_CNT" | jq "[.[].value[\"$VM\"] // 0] | add")
expect_eq "instrumentation without persist-data restarts empty" "$GOT_CNT2" 0
N_OLD=$(curl -s -X POST "$BASE/ca/instrumentations" -d '{"metric":"vm.irqs"}' | jq -r .id)
check "ids continue after a restart (new id $N_OLD > $I_PIO)" test "$N_OLD" -gt "$I_PIO"

# a state.json with the data inline (as versions before data/ wrote it) loads,
# and the next save moves the data out to data/<id>.log
agent_stop
jq -s '.[0] + {slots: .[1:]}' "$STATE/data/$I_SUB.log" > "$TMPD/data.json"
jq --slurpfile d "$TMPD/data.json" \
	'.instrumentations |= map(if .id == '"$I_SUB"' then . + {data: $d[0]} else . end)' \
	"$STATE/state.json" > "$TMPD/inline.json" && mv "$TMPD/inline.json" "$STATE/state.json"
rm -f "$STATE/data/$I_SUB.log"
agent_start "$LOG" --state-dir "$STATE" || not_ok "agent restarts over an inline-data state file"
expect_eq "inline persist-data values restored" "$(raw "$I_SUB" | jq '[.[].value[][1]] | add')" "$TRUTH_IRQ"
agent_stop
check "the next save moved them to data/$I_SUB.log" \
	jqe '[.instrumentations[] | has("data")] | any | not' "$STATE/state.json"
check "... which holds the values" test -s "$STATE/data/$I_SUB.log"

# data/<id>.json as earlier versions wrote it is read when there is no .log
jq -s '.[0] + {slots: .[1:]}' "$STATE/data/$I_SUB.log" > "$STATE/data/$I_SUB.json"
rm -f "$STATE/data/$I_SUB.log"
agent_start "$LOG" --state-dir "$STATE" || not_ok "agent restarts over a data/<id>.json"
expect_eq "values restored from data/$I_SUB.json" "$(raw "$I_SUB" | jq '[.[].value[][1]] | add')" "$TRUTH_IRQ"
agent_stop
check "the next save wrote data/$I_SUB.log and removed data/$I_SUB.json" \
	test -s "$STATE/data/$I_SUB.log" -a ! -e "$STATE/data/$I_SUB.json"

# a damaged data file: the instrumentation comes back empty, reported
echo -n '{"metric": "vm.irqs", "slots": [' > "$STATE/data/$I_SUB.log"
agent_start "$LOG" --state-dir "$STATE" || not_ok "agent restarts over a damaged data file"
check "damaged data file reported at level=error" grep -q "level=error sub=state.*data/$I_SUB.log" "$LOG"
expect_eq "its instrumentation is back, empty" "$(raw "$I_SUB" | jq '[.[].value[][1]] | add // 0')" 0
curl -s -o /dev/null -X DELETE "$BASE/ca/instrumentations/$I_SUB"
for _ in $(seq 30); do test -e "$STATE/data/$I_SUB.log" || break; sleep 0.2; done
check "deleting it removes its data file" test ! -e "$STATE/data/$I_SUB.log"

# corrupt state: renamed aside, reported, agent still starts
agent_stop
echo '{"version": 1, "instrumentations": [' > "$STATE/state.json"
agent_start "$LOG" --state-dir "$STATE" || not_ok "agent starts over a broken state file"
check "broken state file renamed aside" test -n "$(compgen -G "$STATE/state.json.bad-*")"
check "broken state file reported at level=error" grep -q 'level=error sub=state.*unusable' "$LOG"
expect_eq "agent starts empty over a broken state file" "$(curl -s "$BASE/ca/instrumentations" | jq length)" 0
agent_stop

# tokens: operator, tenants of VM a and of VM b
OP=op-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TA=ta-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
TB=tb-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
VMB=e2e-b-$$
printf '# test tokens\n%s operator\n%s tenant %s\n%s tenant %s\n' "$OP" "$TA" "$VM" "$TB" "$VMB" > "$TMPD/tokens"
agent_start "$LOG" --state-dir "$TMPD/state2" --token-file "$TMPD/tokens" || not_ok "agent starts with tokens"
expect_eq "no token: 401" "$(code GET /ca)" 401
expect_eq "401 is a JSON error" "$(jq -r .code "$TMPD/body")" Unauthorized
expect_eq "wrong token: 401" "$(code GET /ca -H "Authorization: Bearer ${OP}x")" 401
expect_eq "operator token: 200" "$(code GET /ca -H "Authorization: Bearer $OP")" 200
check "operator catalogue has hostname" jqe '[.metrics[].fields[]] | index("hostname") != null' "$TMPD/body"
expect_eq "tenant token: 200" "$(code GET /ca -H "Authorization: Bearer $TA")" 200
check "tenant catalogue hides hostname" jqe '[.metrics[].fields[]] | index("hostname") == null' "$TMPD/body"
AH=(-H "Authorization: Bearer $TA") BH=(-H "Authorization: Bearer $TB") OH=(-H "Authorization: Bearer $OP")
# the operator's instrumentation first: a tenant's ids are its own (1, 2,
# ...), with no gap where others' are
code POST /ca/instrumentations "${OH[@]}" -d '{"module":"vm","stat":"irqs"}' >/dev/null
OI=$(jq -r .id "$TMPD/body")
curl -s -D "$TMPD/headers" -o "$TMPD/body" "$BASE/ca/instrumentations" "${AH[@]}" \
	-H 'Content-Type: application/json' -d '{"module":"vm","stat":"irqs","decomposition":["vm"]}'
TI=$(jq -r .id "$TMPD/body")
cp "$TMPD/body" "$TMPD/ta_created"
expect_eq "tenant a's first instrumentation is its 1 (the operator's is $OI)" "$TI" 1
expect_eq "its uri and Location are in tenant a's numbering" \
	"$(jq -r .uri "$TMPD/body") $(tr -d '\r' < "$TMPD/headers" | sed -n 's/^Location: //Ip')" \
	"/ca/instrumentations/1 /ca/instrumentations/1"
code POST /ca/instrumentations "${BH[@]}" -d '{"module":"vm","stat":"irqs"}' >/dev/null
expect_eq "tenant b's first is its 1 too" "$(jq -r .id "$TMPD/body")" 1
expect_eq "tenant b's 1 is its own (scoped to VM b)" \
	"$(curl -s "$BASE/ca/instrumentations/1" "${BH[@]}" | jq -r '.predicate | tostring | contains("'$VMB'")')" true
curl -s "$BASE/ca/instrumentations" "${OH[@]}" > "$TMPD/olist"
expect_eq "the operator lists all three by host-wide id, with each tenant's number" \
	"$(jq -c '[.[] | [.id, .owner_id]]' "$TMPD/olist")" "[[\"$OI\",null],[\"$((OI + 1))\",1],[\"$((OI + 2))\",1]]"
code DELETE "/ca/instrumentations/$((OI + 2))" "${OH[@]}" >/dev/null
check "tenant's instrumentation carries the forced VM scope" jqe ".predicate | tostring | contains(\"$VM\")" "$TMPD/ta_created"
expect_eq "tenant b cannot read tenant a's instrumentation" "$(code GET /ca/instrumentations/$TI "${BH[@]}")" 404
expect_eq "tenant b cannot read its values" "$(code GET /ca/instrumentations/$TI/value/raw "${BH[@]}")" 404
expect_eq "tenant b cannot delete it" "$(code DELETE /ca/instrumentations/$TI "${BH[@]}")" 404
expect_eq "tenant b's list is empty" "$(curl -s "$BASE/ca/instrumentations" "${BH[@]}" | jq length)" 0
expect_eq "operator sees it as $((OI + 1))" "$(code GET /ca/instrumentations/$((OI + 1)) "${OH[@]}") $(jq -r .owner_id "$TMPD/body")" "200 1"
expect_eq "tenant may not decompose by hostname" \
	"$(code POST /ca/instrumentations "${AH[@]}" -d '{"module":"vm","stat":"irqs","decomposition":["hostname"]}')" 422
sleep 1.5
T0=$(date +%s)
"$VMLOAD" -name guest=$VM --delay 500 --linger 2000 --irq vcpu=0,vector=0x30,via=ioapic,period_ms=500,phase_ms=100,count=3 --duration 10 >"$TMPD/ta.json" 2>/dev/null &
P1=$!
"$VMLOAD" -name guest=$VMB --delay 500 --linger 2000 --irq vcpu=0,vector=0x31,via=ioapic,period_ms=500,phase_ms=300,count=5 --duration 10 >"$TMPD/tb.json" 2>/dev/null &
P2=$!
wait $P1 $P2
sleep 2.5
DUR=$(( $(date +%s) - T0 ))
V=$(curl -s "${AH[@]}" "$BASE/ca/instrumentations/$TI/value/raw?start_time=$T0&duration=1&ndatapoints=$DUR")
expect_eq "tenant a sees only its VM" "$(echo "$V" | jq -c '[.[].value | keys[]] | unique')" "[\"$VM\"]"
expect_eq "tenant a's count equals its VM's truth" "$(echo "$V" | jq "[.[].value[\"$VM\"] // 0] | add")" \
	"$(jq '[.irqs[].count] | add' "$TMPD/ta.json")"
VMS=$(curl -s "${AH[@]}" "$BASE/ca/vms" | jq -c '[.[].name] | map(select(. == "'$VMB'"))')
expect_eq "tenant a's /ca/vms does not list VM b" "$VMS" "[]"
agent_stop
check "agent exited cleanly on SIGTERM" grep -q 'shutting down' "$LOG"
tap_done
