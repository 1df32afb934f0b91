#!/usr/bin/env bash
# layerd serve under a service manager, without one: a Python stand-in plays
# systemd's part (NOTIFY_SOCKET for READY/STATUS/WATCHDOG/STOPPING, and socket
# activation: LISTEN_FDS with a socket it bound itself). Loopback only.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
port=$(free_port)
mkdir -p "$T/cache"
cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:1
  cache_dir: $T/cache
registries:
  registry.example.invalid: {}
YAML

# The stand-in: binds 127.0.0.1:$port, passes it as fd 3, collects notify
# datagrams into $T/notify until layerd exits (after SIGTERM at 1.5 s).
timeout 20 "$PY" - "$LAYERD" "$T/spec.yaml" "$port" "$T/notify" "$T/layerd.log" <<'PY' &
import os, signal, socket, sys, time
layerd, spec, port, out, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(64)
ns_path = out + ".sock"
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); ns.bind(ns_path); ns.settimeout(0.1)
pid = os.fork()
if pid == 0:
    os.dup2(ls.fileno(), 3)
    os.set_inheritable(3, True)
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), NOTIFY_SOCKET=ns_path,
               WATCHDOG_USEC="400000")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644); os.dup2(fd, 2)
    os.execve(layerd, [layerd, "serve", "--spec", spec], env)
ls.close()
msgs, start, termed = [], time.time(), False
while True:
    try:
        msgs.append(ns.recv(4096).decode())
    except socket.timeout:
        pass
    if not termed and time.time() - start > 1.5:
        os.kill(pid, signal.SIGTERM); termed = True
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
with open(out, "w") as f:
    f.write("\n".join(m.replace("\n", " | ") for m in msgs) + "\nEXIT %d\n" % os.waitstatus_to_exitcode(status))
PY
sa=$!
# The stand-in listens before it forks, so an accepted connection proves
# nothing: only layerd answers GET /v2/ with 200 and its API-version header.
layerd_answers() {
  [[ $(http GET "http://127.0.0.1:$port/v2/") == 200 && $(header Docker-Distribution-API-Version) == registry/2.0 ]]
}
check "socket-activated layerd answers GET /v2/ on the socket it was given (200, Docker-Distribution-API-Version)" \
  wait_for 10 layerd_answers
wait "$sa"; check "the stand-in finished in time" test $? -eq 0
check "layerd said it got its socket from systemd" grep -q "socket=systemd" "$T/layerd.log"
check "READY=1 was sent" grep -q "READY=1" "$T/notify"
check "WATCHDOG=1 was sent (WatchdogSec honoured)" grep -q "WATCHDOG=1" "$T/notify"
check "STATUS= carries live counters" grep -qE "STATUS=serving: [0-9]+ blobs cached, [0-9]+ hits" "$T/notify"
check "STOPPING=1 was sent on SIGTERM" grep -q "STOPPING=1" "$T/notify"
check "SIGTERM ends layerd with status 0" grep -q "^EXIT 0$" "$T/notify"
finish
