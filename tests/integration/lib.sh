# Shared helpers for integration tests: TAP output, free ports, bounded waits.
# Everything runs on 127.0.0.1 in a temp dir removed at exit; every process a
# test starts is stopped by PID.
set -uo pipefail

LAYERD=$(realpath "${LAYERD:-./layerd}")
T=$(mktemp -d /tmp/layerd-test.XXXXXX)
PIDS=()
n=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: one TAP line from a command's exit status.
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
finish() { echo "1..$n"; }

# A port nobody listens on right now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT, bounded.
wait_port() {
  local port=$1 deadline=$((SECONDS + ${2:-10}))
  while ((SECONDS < deadline)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# wait_exit PID [SECONDS]: until PID (a child of this shell) has exited, bounded;
# its exit status lands in $status ("timeout" when it did not exit). Not for
# use in $(...): a subshell cannot wait for its parent's children.
status=
wait_exit() {
  local pid=$1 deadline=$((SECONDS + ${2:-10}))
  status=timeout
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; status=$?; return 0; fi
    sleep 0.05
  done
  return 1
}

# http METHOD URL: prints the status code; headers to $T/headers, body to $T/body.
http() {
  curl -s --max-time 5 -X "$1" -o "$T/body" -D "$T/headers" -w '%{http_code}' "$2"
}
