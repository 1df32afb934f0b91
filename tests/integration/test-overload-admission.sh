#!/usr/bin/env bash
# Issue 16, item 1 (admission): a new request is answered promptly whatever
# the other connections do. Every case failed on main before the change
# (a443f0c), as said for each:
#
#  1. A crowd: 2,000 keep-alive clients that each had one GET /v2/ answered
#     and then sit idle, plus 100 slowloris clients that send one byte of a
#     request head per second and never finish it.
#      - every one of the 2,000 is answered (before: 512, MHD's connection
#        limit; the rest waited in the kernel's backlog, unanswered);
#      - then a new GET /v2/ and a GET of a cached blob, each on a new
#        connection, answer 200 in under 1 s each (p50/p99 printed; before:
#        no answer within 5 s once the crowd filled the 512 slots);
#      - each slowloris is cut 10 s after it connected (the head deadline, plus
#        the 250 ms sweep), though it kept sending (before: never; MHD's 60 s
#        timeout counts inactivity, and a byte a second resets it);
#      - each idle keep-alive connection is closed 35 s after its answer (the
#        idle deadline; containerd closes its own after 30 s; before: 60 s).
#  3. A burst of keep-alive clients: bench/hload (the closed-loop client of
#     make bench, built by make check) with 256 connections at once, 2 s, four
#     times, against a layerd of its own: in every run each connection has an
#     answer in the run's last second (hload's stalled=0) and p99 is under
#     250 ms (about 12 ms). Before (MHD's epoll), every other run ended with
#     all 256 stalled: layerd had answered each connection's first request and
#     not read its next one until more connections came (make bench: 30
#     HEAD/s at c=256).
#  2. At capacity: a layerd whose open-file limit is 180 (prlimit; capacity
#     48 after the descriptors kept back for the cache and downloads):
#      - after 250 keep-alive clients (more than its descriptors), a new
#        GET /v2/ answers 200 within 1 s: the oldest idle connection was cut to
#        make room (before: EMFILE, the new client waited in the backlog);
#      - with 250 clients that are all still sending their heads (younger than
#        a second: nothing to cut), a new client gets 503 or 200 within 1 s,
#        never no answer (before: no answer within 5 s).
# Clients: small Python programs (written below into the test's directory)
# that raise their own open-file limit. The whole file takes about 50 s: the
# idle deadline (35 s) is the longest wait; section 2 runs meanwhile.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
HLOAD=${HLOAD:-$(dirname "$0")/../../build/release/bench/hload}
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl prlimit "$PY"

# ---- the clients ---------------------------------------------------------------------------
# crowd.py PORT N_IDLE N_SLOW READY_FILE OUT_FILE HOLD_S: N_IDLE keep-alive
# connections that each get one GET /v2/ answered (at most 5 s for all) and
# then sit idle, then N_SLOW that send one byte of a never-ending head per
# second. READY_FILE gets "answered=N" once they are set up; after HOLD_S more
# seconds OUT_FILE gets one line per connection: "idle ANSWERED CLOSED" or
# "slow CONNECTED CLOSED", seconds since its start, "-" for never. (It reads
# 2,000 answers one after another: ANSWERED may lag layerd's by a few 100 ms.)
cat >"$T/crowd.py" <<'PY'
import os, resource, selectors, socket, sys, time

port, n_idle, n_slow = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ready_file, out_file, hold = sys.argv[4], sys.argv[5], float(sys.argv[6])
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
t0 = time.monotonic()
now = lambda: time.monotonic() - t0
sel = selectors.DefaultSelector()
REQ = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
HEAD = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Slow: " % port

class Conn:
    def __init__(self, kind):
        self.kind, self.buf, self.answered, self.closed, self.sent = kind, b"", None, None, 0
        self.s = socket.socket()
        self.s.setblocking(False)
        try:
            self.s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        self.start = now()
        sel.register(self.s, selectors.EVENT_READ, self)
    def close(self):
        if self.closed is None:
            self.closed = now()
            sel.unregister(self.s)
            self.s.close()
    def send(self, data):
        try:
            return self.s.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            self.close()
            return 0

def pump(timeout):
    for key, _ in sel.select(timeout):
        c = key.data
        try:
            d = c.s.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            d = b""
        if not d:
            c.close()
            continue
        c.buf += d
        if c.kind == "idle" and c.answered is None and c.buf.startswith(b"HTTP/1.1 200") and c.buf.endswith(b"{}"):
            c.answered = now()

idle = []
for i in range(n_idle):
    idle.append(Conn("idle"))
    if i % 100 == 99:
        pump(0)
deadline = now() + 5
pending = idle
while pending and now() < deadline:
    for c in pending:
        if c.closed is None and c.sent == 0:
            c.sent = c.send(REQ)
    pending = [c for c in pending if c.closed is None and c.answered is None]
    pump(0.05)
slow = [Conn("slow") for _ in range(n_slow)]
for c in slow:
    c.sent = c.send(HEAD[:1])
with open(ready_file + ".tmp", "w") as f:
    f.write("answered=%d\n" % sum(c.answered is not None for c in idle))
os.rename(ready_file + ".tmp", ready_file)
end = now() + hold
while now() < end:
    pump(0.1)
    for c in slow:
        if c.closed is None and now() - c.start >= c.sent:
            c.sent += c.send(HEAD[c.sent:c.sent + 1] if c.sent < len(HEAD) else b"a")
fmt = lambda t: "-" if t is None else "%.3f" % t
with open(out_file + ".tmp", "w") as f:
    for c in idle:
        f.write("idle %s %s\n" % (fmt(c.answered), fmt(c.closed)))
    for c in slow:
        f.write("slow %s %s\n" % (fmt(c.start), fmt(c.closed)))
os.rename(out_file + ".tmp", out_file)
PY
# probe.py PORT PATH COUNT: COUNT GETs of PATH, each on a new connection and
# bounded to 5 s, all within 10 s; one line each: "STATUS MS" (status 0: no
# answer; MS -1: not tried, the 10 s were over).
cat >"$T/probe.py" <<'PY'
import socket, sys, time
port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
end = time.monotonic() + 10
for _ in range(count):
    if time.monotonic() > end:
        print(0, -1)
        continue
    t = time.monotonic()
    status, data = 0, b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path.encode(), port))
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    except OSError:
        pass
    if data.startswith(b"HTTP/1.1 "):
        status = int(data[9:12])
    print(status, int((time.monotonic() - t) * 1000))
PY

# ---- helpers -------------------------------------------------------------------------------
# start_layerd NAME [PRLIMIT_NOFILE]: a layerd for registry a.test on the
# fixture ($FX), on a free port ($P, $L), its log $T/NAME.log, its PID $LPID.
start_layerd() {
  P=$(free_port)
  L=http://127.0.0.1:$P
  printf 'version: 1\nagent:\n  listen: 127.0.0.1:%s\n  cache_dir: %s\nregistries:\n  "a.test:%s":\n    origin: %s\n' \
    "$P" "$T/$1-cache" "$PF" "$FX" >"$T/$1.yaml"
  if [[ -n ${2:-} ]]; then
    prlimit --nofile="$2:$2" "$LAYERD" serve --spec "$T/$1.yaml" >"$T/$1.log" 2>&1 &
  else
    "$LAYERD" serve --spec "$T/$1.yaml" >"$T/$1.log" 2>&1 &
  fi
  LPID=$!
  PIDS+=("$LPID")
  DIAG_FILES=("$T/$1.log")
  wait_port "$P" 10
}
# crowd NAME N_IDLE N_SLOW HOLD_S: crowd.py against $P in the background (PID
# $CROWD), until its ready file is there (at most 20 s); "answered=N" in $answered.
crowd() {
  rm -f "$T/$1.ready" "$T/$1.out"
  "$PY" "$T/crowd.py" "$P" "$2" "$3" "$T/$1.ready" "$T/$1.out" "$4" &
  CROWD=$!
  PIDS+=("$CROWD")
  wait_for 20 test -s "$T/$1.ready" && answered=$(sed -n 's/^answered=//p' "$T/$1.ready")
}
# probe NAME PATH COUNT: probe.py's lines in $T/NAME.probe; $p50, $p99, $worst
# (ms; 99999 when one had no answer) and $statuses (the distinct ones).
probe() {
  "$PY" "$T/probe.py" "$P" "$2" "$3" >"$T/$1.probe"
  read -r p50 p99 worst < <(awk '{ ms = ($1 == 0) ? 99999 : $2; print ms }' "$T/$1.probe" | sort -n |
    awk '{ v[NR] = $1 } END { i99 = int(NR * 0.99 + 0.999); print v[int((NR + 1) / 2)], v[i99], v[NR] }')
  statuses=$(cut -d' ' -f1 "$T/$1.probe" | sort -u | paste -sd,)
}
# statuses_in LIST: every probe's status is one of LIST (comma-separated).
statuses_in() { local s; for s in ${statuses//,/ }; do [[ ,$1, == *,$s,* ]] || return 1; done; }
# closed_between OUT KIND LOW HIGH: every connection of KIND in OUT was closed
# between LOW and HIGH seconds after its reference time (its answer or connect).
closed_between() {
  awk -v k="$2" -v lo="$3" -v hi="$4" '$1 == k { n++; if ($2 == "-" || $3 == "-" || $3 - $2 < lo || $3 - $2 > hi) bad++ }
    END { exit !(n > 0 && bad == 0) }' "$1"
}
# spread OUT KIND: "min-max s" of close minus reference time, or "none closed".
spread() {
  awk -v k="$2" '$1 == k && $2 != "-" && $3 != "-" { d = $3 - $2; if (!n++ || d < lo) lo = d; if (d > hi) hi = d; }
    $1 == k { all++ } END { if (n) printf "%d of %d closed, %.2f-%.2f s", n, all, lo, hi; else printf "none of %d closed", all }' "$1"
}

# ---- the upstream and a cached blob ----------------------------------------------------------
checkd "the fixture upstream starts" fixture_start fx
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
NS=a.test:$PF
D=$(random_file "$T/blob" 65536)
checkd "the fixture takes a blob" fixture_call PUT "$FX/_fixture/blob/$D" "$T/blob"
BLOB=/v2/test/app/blobs/$D?ns=$NS

# ==== 1. a crowd of idle and slowloris clients ================================================
checkd "layerd listens" start_layerd crowd
MAIN=$LPID MAIN_P=$P
get "$L$BLOB" "$T/blob.got"
checkd "the blob is cached (a GET through layerd: $code)" in_cache "$T/crowd-cache" "$D"

HOLD=38
checkd "the crowd is set up (2,000 idle keep-alive, 100 slowloris)" crowd crowd 2000 100 "$HOLD"
CROWD1=$CROWD
checkd "every one of the 2,000 keep-alive clients was answered ($answered)" test "${answered:-0}" = 2000
echo "# layerd with the crowd: $(grep -E 'VmRSS|Threads' /proc/$MAIN/status | tr -s '\t ' ' ' | paste -sd' ')"
probe v2 /v2/ 50
checkd "a new GET /v2/ answers 200 within 1 s each (p50 $p50 ms, p99 $p99 ms, worst $worst ms; status $statuses)" \
  eval 'statuses_in 200 && ((worst < 1000))'
probe blob "$BLOB" 50
checkd "a new GET of a cached blob answers 200 within 1 s each (p50 $p50 ms, p99 $p99 ms, worst $worst ms; status $statuses)" \
  eval 'statuses_in 200 && ((worst < 1000))'

# ==== 3. a burst of keep-alive clients ===========================================================
checkd "bench/hload is built (make check builds it: $HLOAD)" test -x "$HLOAD"
checkd "a layerd of its own listens" start_layerd burst
for i in 1 2 3 4; do
  timeout 20 "$HLOAD" "$P" /v2/ GET 256 2 >"$T/burst$i.out" 2>&1
  echo "# burst $i: $(cat "$T/burst$i.out")"
done
checkd "4 runs of 256 keep-alive clients at once: every connection answered to the end of each (stalled=0), p99 < 250 ms" \
  eval '[[ $(cat "$T"/burst?.out | awk "/^RESULT .* stalled=0\$/ { split(\$5, a, \"=\"); if (a[2] < 250) n++ } END { print n + 0 }") == 4 ]]'
stop "$LPID"
checkd "that layerd stops cleanly (status $status)" test "$status" = 0

# ==== 2. at capacity: a low open-file limit ====================================================
checkd "layerd with 180 open files listens" start_layerd cap 180
echo "# $(grep -o 'open_files=[0-9]* connections=[0-9]*' "$T/cap.log" || echo 'no connections= in the listening line')"
crowd cap-idle 250 0 8
checkd "250 keep-alive clients came (${answered:-none} of them answered)" test -n "$answered"
probe cap-idle /v2/ 10
checkd "after them a new GET /v2/ answers 200 within 1 s each (p50 $p50 ms, worst $worst ms; status $statuses)" \
  eval 'statuses_in 200 && ((worst < 1000))'
wait "$CROWD" 2>/dev/null
checkd "250 clients come, still sending their heads" crowd cap-slow 0 250 8
probe cap-slow /v2/ 10
checkd "a new client meanwhile gets 503 or 200 within 1 s each, never no answer (p50 $p50 ms, worst $worst ms; status $statuses)" \
  eval 'statuses_in 200,503 && ((worst < 1000))'
wait "$CROWD" 2>/dev/null
# /metrics says what admission did: its capacity (the listening line's) and the connections it shed.
get "$L/metrics" "$T/cap.metrics" --max-time 5
cap=$(grep -o 'connections=[0-9]*' "$T/cap.log" | head -1 | cut -d= -f2)
checkd "/metrics shows the capacity ($cap) and the idle connections shed" eval \
  'grep -qx "layerd_connections_capacity ${cap:-none}" "$T/cap.metrics" &&
   grep -Eq "^layerd_connections_closed_total\{reason=\"shed\"\} [1-9]" "$T/cap.metrics"'
stop "$LPID"
checkd "the capacity layerd stops cleanly (status $status)" test "$status" = 0

# ==== 1, continued: the deadlines ================================================================
DIAG_FILES=("$T/crowd.log")
checkd "the crowd's results are in" wait_for $((HOLD + 15)) test -s "$T/crowd.out"
checkd "every slowloris was cut 10 s after it connected, though it kept sending ($(spread "$T/crowd.out" slow))" \
  closed_between "$T/crowd.out" slow 9.9 11.5
checkd "every idle keep-alive connection was closed 35 s after its answer ($(spread "$T/crowd.out" idle))" \
  closed_between "$T/crowd.out" idle 34 37
wait "$CROWD1" 2>/dev/null
stop "$MAIN"
checkd "layerd stops cleanly (status $status)" test "$status" = 0
stop "$FIXTURE_PID"
finish
