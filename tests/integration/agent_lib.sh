# Helpers for the agent tests: start/stop an agent on a free loopback port.
: "${KVMSCOPE:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin/kvmscope}"
: "${VMLOAD:=$(dirname "$KVMSCOPE")/vmload}"
# Source after lib.sh.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# agent_start LOG ARGS... : sets AGENT_PID and BASE; waits until it answers.
agent_start() {
	local log=$1; shift
	PORT=$(free_port)
	BASE=http://127.0.0.1:$PORT
	"$KVMSCOPE" agent --listen 127.0.0.1:$PORT "$@" >>"$log" 2>&1 &
	AGENT_PID=$!
	cleanup_pids+=("$AGENT_PID")
	for _ in $(seq 50); do
		curl -s -o /dev/null "$BASE/" && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

agent_stop() {
	kill -TERM "$AGENT_PID" 2>/dev/null
	wait "$AGENT_PID"
}

# code METHOD PATH [curl args...]: prints the HTTP status; body in $TMPD/body
code() {
	local m=$1 p=$2; shift 2
	curl -s --path-as-is -o "$TMPD/body" -w '%{http_code}' -X "$m" "$BASE$p" "$@"
}

# jqe FILTER [FILE]: jq -e without its output
jqe() { jq -e "$@" >/dev/null; }
