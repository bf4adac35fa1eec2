#!/bin/bash
# The fleet's credentials against real nats-servers that demand them: a
# token, and a user with a password, from --nats-auth-file (mode 0600);
# a wrong one makes the agent refuse to start, or serve without the bus
# saying why (whichever the NATS library chooses); TLS to a server of a
# private CA, with and without a client certificate. Ports 21270-21277.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
require_kvm "fleet credentials"
command -v nats-server >/dev/null || { skip "nats-server is not installed (make deps installs it)"; tap_done; }

SECRET=tok-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
PW=pw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
nats-server -p 21270 -a 127.0.0.1 -js -sd "$TMPD/js1" --auth "$SECRET" > "$TMPD/nats1.log" 2>&1 &
cleanup_pids+=($!)
nats-server -p 21271 -a 127.0.0.1 -js -sd "$TMPD/js2" --user kvms --pass "$PW" > "$TMPD/nats2.log" 2>&1 &
cleanup_pids+=($!)
sleep 1
auth_file() { printf "$2" > "$TMPD/$1"; chmod 600 "$TMPD/$1"; }
auth_file good-token "token $SECRET\n"
auth_file bad-token "token nope-$SECRET\n"
auth_file good-user "# the fleet's bus\nuser kvms\npassword $PW\n"
auth_file bad-file "user kvms\n"
bound() {	# LOG URL AUTHFILE: prints the bucket state after up to 5 s
	agent_start "$TMPD/$1.log" --state-dir none --hostname auth-$1 --nats "$2" --fleet auth$$ \
		--aggregate --nats-auth-file "$TMPD/$3" || { echo "agent did not start"; return; }
	for _ in $(seq 25); do
		[ "$(curl -s "$BASE/ca/peers" | jq -r .bus.bucket_state)" = ready ] && break
		sleep 0.2
	done
	curl -s "$BASE/ca/peers" > "$TMPD/$1.peers.json"
	jq -r .bus.bucket_state "$TMPD/$1.peers.json"
	agent_stop
}
expect_eq "a token from the auth file: the bucket is bound" "$(bound tok nats://127.0.0.1:21270 good-token)" ready
expect_eq "a user and password from the auth file: the bucket is bound" "$(bound usr nats://127.0.0.1:21271 good-user)" ready
"$KVMSCOPE" agent --listen 127.0.0.1:21275 --state-dir none --hostname auth-bad --nats nats://127.0.0.1:21270 \
	--fleet auth$$ --nats-auth-file "$TMPD/bad-token" > "$TMPD/badtok.log" 2>&1 &
BAD=$!
cleanup_pids+=($BAD)
for _ in $(seq 50); do kill -0 $BAD 2>/dev/null || break; sleep 0.1; done
# the library either gives up at once (the agent refuses to start) or goes
# on retrying in the background (the agent serves, and says why it has no bus)
if kill -0 $BAD 2>/dev/null; then
	curl -s http://127.0.0.1:21275/ca/peers > "$TMPD/badtok.peers.json"
	check "a wrong token: the agent serves without the bus ($(jq -r .bus.status "$TMPD/badtok.peers.json"))" \
		jqe '.bus.status != "connected" and .bus.bucket_state != "ready"' "$TMPD/badtok.peers.json"
	check "... and says why in GET /ca/peers ($(jq -r .bus.connection_error "$TMPD/badtok.peers.json"))" \
		jqe '(.bus.connection_error // "") | length > 0' "$TMPD/badtok.peers.json"
	kill -TERM $BAD
	wait $BAD
else
	wait $BAD; rc=$?
	expect_eq "a wrong token: the agent refuses to start (exit 1)" "$rc" 1
	check "... saying the servers refused it" grep -q "the servers refused this agent (credentials, TLS?)" "$TMPD/badtok.log"
fi
check "an auth file without a password is refused with the reason" \
	grep -q "neither a token nor a user with a password" <("$KVMSCOPE" agent --listen 127.0.0.1:1 --state-dir none \
	--nats nats://127.0.0.1:21271 --fleet a --nats-auth-file "$TMPD/bad-file" 2>&1)
# ---- TLS: a server with a certificate of a private CA (trusted with
# --nats-tls-ca, refused without it), and one that wants a client
# certificate (--nats-tls-cert/--nats-tls-key). Ports 21276-21277.
if ! command -v openssl >/dev/null; then
	skip "TLS to the bus: openssl is absent (it makes the test's certificates)"
else
	C=$TMPD/tls; mkdir -p "$C"
	mkcert() {	# NAME CN EXT: a key and a certificate signed by the test's CA
		openssl req -newkey rsa:2048 -nodes -keyout "$C/$1.key" -out "$C/$1.csr" -subj "/CN=$2" 2>/dev/null &&
		printf '%s\n' "$3" > "$C/$1.ext" &&
		openssl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
			-out "$C/$1.pem" -days 1 -extfile "$C/$1.ext" 2>/dev/null
	}
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.pem" -days 1 \
		-subj "/CN=kvmscope test CA" 2>/dev/null &&
	mkcert srv 127.0.0.1 "subjectAltName=IP:127.0.0.1" &&
	mkcert cli kvmscope-agent "extendedKeyUsage=clientAuth" ||
		not_ok "openssl makes the test's CA and certificates"
	chmod 600 "$C"/*.key
	nats-server -p 21276 -a 127.0.0.1 -js -sd "$TMPD/js3" --tls --tlscert "$C/srv.pem" --tlskey "$C/srv.key" \
		> "$TMPD/nats3.log" 2>&1 &
	cleanup_pids+=($!)
	nats-server -p 21277 -a 127.0.0.1 -js -sd "$TMPD/js4" --tlsverify --tlscert "$C/srv.pem" --tlskey "$C/srv.key" \
		--tlscacert "$C/ca.pem" > "$TMPD/nats4.log" 2>&1 &
	cleanup_pids+=($!)
	sleep 1
	tls_state() {	# NAME URL ARGS...: the bucket's state after up to 5 s, or how the agent ended
		local name=$1 url=$2; shift 2
		agent_start "$TMPD/$name.log" --state-dir none --hostname tls-$name --nats "$url" --fleet tls$$ \
			--aggregate "$@" || { wait "$AGENT_PID"; echo "exited $?"; return; }
		for _ in $(seq 25); do
			[ "$(curl -s "$BASE/ca/peers" | jq -r .bus.bucket_state)" = ready ] && break
			sleep 0.2
		done
		curl -s "$BASE/ca/peers" > "$TMPD/$name.peers.json"
		if kill -0 "$AGENT_PID" 2>/dev/null; then
			jq -r '.bus.bucket_state // "no bus state"' "$TMPD/$name.peers.json"
			agent_stop
		else
			wait "$AGENT_PID"; echo "exited $?"
		fi
	}
	expect_eq "TLS, the server's CA trusted (--nats-tls-ca): the bucket is bound" \
		"$(tls_state ca tls://127.0.0.1:21276 --nats-tls-ca "$C/ca.pem")" ready
	s=$(tls_state noca tls://127.0.0.1:21276)
	check "TLS, the server's CA not trusted: no bus ($s)" test "$s" != ready
	expect_eq "mutual TLS, with a client certificate: the bucket is bound" \
		"$(tls_state mtls tls://127.0.0.1:21277 --nats-tls-ca "$C/ca.pem" --nats-tls-cert "$C/cli.pem" \
			--nats-tls-key "$C/cli.key")" ready
	s=$(tls_state nocert tls://127.0.0.1:21277 --nats-tls-ca "$C/ca.pem")
	check "mutual TLS, without a client certificate: no bus ($s)" test "$s" != ready
	check "a client certificate without its key is refused" \
		grep -q -- "--nats-tls-cert and --nats-tls-key go together" <("$KVMSCOPE" agent --listen 127.0.0.1:1 \
		--state-dir none --nats tls://127.0.0.1:21277 --fleet a --nats-tls-cert "$C/cli.pem" 2>&1)
fi
[ -n "${KEEP:-}" ] && cp -r "$TMPD" /tmp/auth-kept
tap_done
