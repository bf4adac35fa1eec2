#!/bin/bash
# The web UI's named dashboards on the agent (GET/PUT/DELETE /ca/dashboards):
# saved atomically in the state dir, kept across a restart, scoped per owner
# like instrumentations (a tenant never sees the operator's), and bad input
# (names, bodies, sizes, counts, no state dir) answered precisely with the
# agent still serving.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "dashboards"

OP="dash-op-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
TEN="dash-tn-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s operator\n%s tenant web1\n' "$OP" "$TEN" >"$TMPD/tokens"
chmod 600 "$TMPD/tokens"
LOG=$TMPD/agent.log
agent_start "$LOG" --state-dir "$TMPD/state" --token-file "$TMPD/tokens" || { not_ok "agent start: $(tail -3 "$LOG")"; tap_done; }
AO=(-H "Authorization: Bearer $OP")
AT=(-H "Authorization: Bearer $TEN")
J=(-H 'Content-Type: application/json')

expect_eq "no token: 401" "$(code GET /ca/dashboards)" 401
expect_eq "an empty list at first" "$(code GET /ca/dashboards "${AO[@]}")" 200
check "the list is {\"dashboards\": []}" jqe '.dashboards == [] and .max > 0 and .max_bytes > 0' "$TMPD/body"
DASH='{"title":"on call","route":"vm/web1","window":300,"panels":[{"metric":"vm.exits","decomposition":["reason"]}]}'
expect_eq "PUT a new dashboard: 201" "$(code PUT /ca/dashboards/oncall "${AO[@]}" "${J[@]}" -d "$DASH")" 201
expect_eq "PUT it again: 200 (replaced)" "$(code PUT /ca/dashboards/oncall "${AO[@]}" "${J[@]}" -d "$DASH")" 200
expect_eq "GET it back" "$(code GET /ca/dashboards/oncall "${AO[@]}")" 200
check "what was saved comes back whole" jqe --argjson d "$DASH" '. == $d' "$TMPD/body"
expect_eq "the list names it" "$(code GET /ca/dashboards "${AO[@]}" && jq -c .dashboards "$TMPD/body")" '200["oncall"]'
check "the file is in the state dir, owner's only (0600, no .tmp left)" \
	bash -c "[ \"\$(stat -c %a '$TMPD/state/dashboards/operator/oncall.json')\" = 600 ] && ! ls '$TMPD/state/dashboards/operator/' | grep -q tmp"

# Tenants: their own namespace.
expect_eq "the tenant does not see the operator's dashboard" "$(code GET /ca/dashboards/oncall "${AT[@]}")" 404
expect_eq "the tenant's list is empty" "$(code GET /ca/dashboards "${AT[@]}" && jq -c .dashboards "$TMPD/body")" '200[]'
expect_eq "the tenant saves its own of the same name" "$(code PUT /ca/dashboards/oncall "${AT[@]}" "${J[@]}" -d '{"t":1}')" 201
expect_eq "the operator's is unchanged" "$(code GET /ca/dashboards/oncall "${AO[@]}" && jq -c .title "$TMPD/body")" '200"on call"'
expect_eq "the tenant deletes its own" "$(code DELETE /ca/dashboards/oncall "${AT[@]}")" 204
expect_eq "the operator's is still there" "$(code GET /ca/dashboards/oncall "${AO[@]}")" 200

# Bad input.
for name in .hidden 'a%20b' "$(printf 'x%.0s' $(seq 65))" 'a$b' '%2e%2e'; do
	expect_eq "name '$name' refused (400)" "$(code PUT "/ca/dashboards/$name" "${AO[@]}" "${J[@]}" -d '{}')" 400
done
expect_eq "'..' does not escape (404 or 400)" "$(code GET /ca/dashboards/.. "${AO[@]}" | sed 's/^400$/404/')" 404
expect_eq "an array body: 400" "$(code PUT /ca/dashboards/arr "${AO[@]}" "${J[@]}" -d '[1]')" 400
check "  saying why" grep -q 'must be a JSON object' "$TMPD/body"
expect_eq "broken JSON: 400" "$(code PUT /ca/dashboards/bad "${AO[@]}" "${J[@]}" -d '{"a":')" 400
expect_eq "an empty body: 400" "$(code PUT /ca/dashboards/empty "${AO[@]}" "${J[@]}")" 400
expect_eq "duplicate keys: 400" "$(code PUT /ca/dashboards/dup "${AO[@]}" "${J[@]}" -d '{"a":1,"a":2}')" 400
big=$(python3 -c 'import json; print(json.dumps({"x": "y" * 40000}))')
expect_eq "a body over 32 KiB: 413" "$(code PUT /ca/dashboards/big "${AO[@]}" "${J[@]}" -d "$big")" 413
expect_eq "deleting what is not there: 404" "$(code DELETE /ca/dashboards/nothere "${AO[@]}")" 404
expect_eq "POST is not a method here: 405" "$(code POST /ca/dashboards/oncall "${AO[@]}" "${J[@]}" -d '{}')" 405
for i in $(seq 2 64); do code PUT "/ca/dashboards/d$i" "${AO[@]}" "${J[@]}" -d '{}' >/dev/null; done
expect_eq "the 65th dashboard of an owner: 409" "$(code PUT /ca/dashboards/one-too-many "${AO[@]}" "${J[@]}" -d '{}')" 409
expect_eq "replacing one at the limit still works" "$(code PUT /ca/dashboards/d2 "${AO[@]}" "${J[@]}" -d '{"v":2}')" 200
# A planted symlink is not followed.
ln -s /etc/passwd "$TMPD/state/dashboards/operator/evil.json"
expect_eq "a symlink in the store is not read" "$(code GET /ca/dashboards/evil "${AO[@]}")" 404
expect_eq "the agent still answers" "$(code GET /ca "${AO[@]}")" 200

# Kept across a restart.
agent_stop
agent_start "$LOG" --state-dir "$TMPD/state" --token-file "$TMPD/tokens" || { not_ok "agent restart: $(tail -3 "$LOG")"; tap_done; }
expect_eq "after a restart the dashboard is still there" "$(code GET /ca/dashboards/oncall "${AO[@]}" && jq -c .title "$TMPD/body")" '200"on call"'
agent_stop

# No state dir: a precise 503, not a silent loss.
agent_start "$LOG" --state-dir none || { not_ok "agent start (no state): $(tail -3 "$LOG")"; tap_done; }
expect_eq "without a state dir PUT is 503" "$(code PUT /ca/dashboards/x "${J[@]}" -d '{}')" 503
check "  saying why" grep -q 'state directory' "$TMPD/body"
expect_eq "without a state dir the list is 503 too" "$(code GET /ca/dashboards)" 503
agent_stop
no_logged_errors "$LOG"
tap_done
