#!/usr/bin/env bash
# Issue 16, item 3 (the rest): one memory budget for what in-flight requests
# hold (agent.max_inflight_memory), with a fast 503 past it. Each case failed
# before (a443f0c), where nothing bounded these bytes:
#
#  a) Upstream manifest bodies. 16 clients at once ask (by digest) for a
#     3.5 MiB manifest that is not cached, from an upstream that sends it slowly
#     (256 KiB every 150 ms, about 2 s); the budget is 8 MiB. Two fetches fit
#     (each takes the announced Content-Length first); the others are answered
#     503 within a second, saying why, and logged once each with ns, repo and
#     digest. Every 200 is the whole manifest. The peak resident set (VmHWM)
#     stays under 40 MiB, and once all is over /metrics shows nothing held and
#     the refusals counted. Before: all 16 fetched at once, each growing its own
#     4 MiB buffer (peak ~80 MiB), no 503, no metric.
#  b) The issue's target: 200 connections that ask for the largest allowed
#     manifest (4 MiB) and never read, with the default budget (24 MiB), peak
#     RSS under 48 MiB: first while it is not cached and the upstream trickles
#     it (every request an upstream fetch in flight), then, in a fresh layerd,
#     once it is cached (sent from the file). Before: 200 fetches of 4 MiB at
#     once (~490 MiB); the cached half already held before (item 3's first
#     part, sendfile: a guard).
#  c) Tag list pages: 40 non-reading clients of a 3.5 MiB tags/list page
#     (too big to be remembered, so each is an upstream fetch whose body the
#     response holds until its client reads), budget 8 MiB: two are answered,
#     the rest 503 at once, peak RSS under 40 MiB, and the budget is back at 0
#     once the clients are gone. Before: 40 copies of 3.5 MiB (~150 MiB).
#
# Peers on free loopback ports: one fault-injecting fixture
# (tests/fixtures/upstream.py: trickle_bytes/trickle_ms make it slow, pad makes
# the tag page big) and, per case, a layerd of its own so that each VmHWM is
# that case's. Every wait is bounded.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl cmp sha256sum "$PY"

checkd "the fixture upstream starts" fixture_start memory-fx
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
NS=127.0.0.1:$PF
DIAG_FILES=("$T/memory-fx.log")

# manifest FILE SIZE: an OCI manifest of about SIZE bytes (padded in an annotation).
manifest() {
  "$PY" - "$1" "$2" <<'PY'
import json, sys
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 1},
     "layers": [], "annotations": {"pad": "x" * (int(sys.argv[2]) - 1000)}}
open(sys.argv[1], "w").write(json.dumps(m))
PY
}

# serve NAME [BUDGET]: a layerd of its own for a case (agent.max_inflight_memory
# BUDGET, else the default); its port in $PL, its log in $LOG.
serve() {
  LOG=$T/$1-layerd.log
  DIAG_FILES=("$LOG" "$T/memory-fx.log")
  PL=$(free_port)
  {
    printf 'version: 1\nagent:\n  listen: 127.0.0.1:%s\n  cache_dir: %s\n' "$PL" "$T/$1-cache"
    [[ -n ${2:-} ]] && printf '  max_inflight_memory: %s\n' "$2"
    printf 'registries:\n  "%s":\n    origin: %s\n' "$NS" "$FX"
  } >"$T/$1.yaml"
  layerd_serve "$LOG" "$T/$1.yaml"
  wait_port "$PL" 10
}
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$LAYERD_PID/status"; }
# metric NAME: its value on /metrics ("" when there is no such line).
metric() { curl -s --max-time 5 "http://127.0.0.1:$PL/metrics" | sed -n "s/^$1 //p"; }
held_zero() { [[ $(metric layerd_inflight_memory_bytes) == 0 ]]; }

# clients MODE N PATH: N connections at once send GET PATH (on $PL) and wait
# for their answers' heads, bounded (25 s). MODE read: each reads its whole
# answer; hold: each reads nothing past the head (4 KiB receive buffer) and the
# connections stay open 2 s after the last head. One line per client:
# STATUS MS_TO_HEAD SHA256_OF_BODY (read) or "-", then the first bytes of a
# non-200 body.
cat >"$T/clients.py" <<'PY'
import hashlib, select, socket, sys, time
port, mode, n, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n"
       "Connection: close\r\n\r\n" % (path, port)).encode()
t0 = time.monotonic()
cs = []
for _ in range(n):
    s = socket.socket()
    if mode == "hold":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(req)
    s.setblocking(False)
    cs.append({"s": s, "buf": b"", "status": None, "ms": None, "len": None, "done": False})
deadline = t0 + 25
while time.monotonic() < deadline:
    live = [c for c in cs if not c["done"]]
    if not live:
        break
    ready, _, _ = select.select([c["s"] for c in live], [], [], 0.2)
    for c in live:
        if c["s"] not in ready:
            continue
        try:
            data = c["s"].recv(65536 if c["status"] is not None else 4096)
        except OSError:
            data = b""
        c["buf"] += data
        if c["status"] is None and b"\r\n\r\n" in c["buf"]:
            head, _, c["buf"] = c["buf"].partition(b"\r\n\r\n")
            c["status"] = int(head.split()[1])
            c["ms"] = int((time.monotonic() - t0) * 1000)
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    c["len"] = int(v)
        if c["status"] is not None and (mode == "hold" and c["status"] == 200 or
                                        c["len"] is not None and len(c["buf"]) >= c["len"] or not data):
            c["done"] = True
        elif not data:
            c["done"] = True
if mode == "hold":
    time.sleep(2)
for c in cs:
    body = c["buf"]
    digest = hashlib.sha256(body).hexdigest() if mode == "read" and c["status"] == 200 else "-"
    snippet = body[:200].decode("utf-8", "replace").replace("\n", " ") if c["status"] != 200 else ""
    print(c["status"], c["ms"], digest, snippet)
    c["s"].close()
PY
clients() { "$PY" "$T/clients.py" "$PL" "$@"; }
count() { awk -v s="$1" '$1 == s' "$2" | wc -l; }
# slow_refusals FILE MS: the answers in FILE that are neither a 200 nor a 503 whose head
# came within MS. 1 s where the fixture has a few requests at once; 2 s where it has 40
# or 200 (a Python server, each request a 3.5 or 4 MiB body to start: its own pace).
slow_refusals() { awk -v ms="$2" '$1 != 200 && ($1 != 503 || $2 >= ms)' "$1" | wc -l; }

# ==== a) upstream manifest bodies ==========================================================
manifest "$T/a.json" $((3584 * 1024))
DA=$(fixture_manifest "$FX" big/a v1 "$T/a.json")
checkd "the fixture takes a 3.5 MiB manifest" test -n "$DA"
checkd "the fixture trickles manifests (256 KiB every 150 ms)" rules \
  '[{"path": "/manifests/sha256:", "method": "GET", "trickle_ms": 150, "trickle_bytes": 262144}]'
checkd "layerd (budget 8 MiB) listens" serve a 8MiB
clients read 16 "/v2/big/a/manifests/$DA?ns=$NS" >"$T/a.out"
ok200=$(count 200 "$T/a.out") n503=$(count 503 "$T/a.out") peak=$(hwm)
echo "# a) 16 uncached fetches of 3.5 MiB: $ok200 answered 200, $n503 refused 503; VmHWM ${peak} KiB"
check "a) some are refused with 503 ($n503 of 16)" test "$n503" -ge 1
check "a) ... every refusal is a 503 within 1 s ($(slow_refusals "$T/a.out" 1000) are not)" \
  test "$(slow_refusals "$T/a.out" 1000)" = 0
check "a) ... saying why" grep -q 'memory budget for in-flight bodies exhausted (agent.max_inflight_memory)' "$T/a.out"
check "a) the others get the whole manifest ($ok200)" \
  test "$ok200" -ge 1 -a "$(awk '$1 == 200' "$T/a.out" | grep -cv " ${DA#sha256:} ")" = 0
check "a) peak RSS ${peak} KiB < 40 MiB" test "${peak:-999999}" -lt $((40 * 1024))
check "a) once over, /metrics shows nothing held" wait_for 5 held_zero
check "a) ... the limit (8 MiB)" test "$(metric layerd_inflight_memory_limit_bytes)" = $((8 << 20))
check "a) ... and the refusals counted ($n503)" test "$(metric layerd_inflight_memory_refused_total)" = "$n503"
check "a) each refusal logged once, with ns, repo and digest" \
  test "$(grep -c "refused, memory budget .* ns=$NS repo=big/a ref=$DA " "$LOG")" = "$n503"
stop "$LAYERD_PID"

# ==== b) 200 non-reading clients of the largest manifest, uncached then cached ============
manifest "$T/b.json" $((4096 * 1024))
DB=$(fixture_manifest "$FX" big/b v1 "$T/b.json")
checkd "the fixture takes a 4 MiB manifest" test -n "$DB"
checkd "the fixture trickles manifests (512 KiB every 200 ms)" rules \
  '[{"path": "/manifests/sha256:", "method": "GET", "trickle_ms": 200, "trickle_bytes": 524288}]'
checkd "layerd (default budget) listens" serve b
check "b) the default budget is 24 MiB" test "$(metric layerd_inflight_memory_limit_bytes)" = $((24 << 20))
clients hold 200 "/v2/big/b/manifests/$DB?ns=$NS" >"$T/b1.out"
ok200=$(count 200 "$T/b1.out") n503=$(count 503 "$T/b1.out") peak=$(hwm)
echo "# b) 200 non-reading clients, uncached: $ok200 answered 200, $n503 refused 503; VmHWM ${peak} KiB"
check "b) uncached: every client is answered ($((ok200 + n503)) of 200), the refusals within 2 s" \
  test $((ok200 + n503)) = 200 -a "$(slow_refusals "$T/b1.out" 2000)" = 0
check "b) uncached: peak RSS ${peak} KiB < 48 MiB" test "${peak:-999999}" -lt $((48 * 1024))
check "b) uncached: nothing held once they are gone" wait_for 5 held_zero
checkd "b) the manifest is cached now" in_cache "$T/b-cache" "$DB"
stop "$LAYERD_PID"
checkd "layerd (default budget) listens again, on the same cache" serve b
clients hold 200 "/v2/big/b/manifests/$DB?ns=$NS" >"$T/b2.out"
ok200=$(count 200 "$T/b2.out") peak=$(hwm)
echo "# b) 200 non-reading clients, cached: $ok200 answered 200; VmHWM ${peak} KiB"
check "b) cached: all 200 answered 200 ($ok200)" test "$ok200" = 200
check "b) cached: peak RSS ${peak} KiB < 48 MiB" test "${peak:-999999}" -lt $((48 * 1024))
stop "$LAYERD_PID"

# ==== c) tag list pages =====================================================================
checkd "the fixture pads tag list pages to 3.5 MiB" rules \
  "[{\"path\": \"/tags/list\", \"pad\": $((3584 * 1024))}]"
checkd "layerd (budget 8 MiB) listens" serve c 8MiB
clients hold 40 "/v2/big/a/tags/list?ns=$NS" >"$T/c.out"
ok200=$(count 200 "$T/c.out") n503=$(count 503 "$T/c.out") peak=$(hwm)
echo "# c) 40 non-reading clients of a 3.5 MiB tag page: $ok200 answered 200, $n503 refused 503; VmHWM ${peak} KiB"
check "c) some are answered ($ok200), the rest refused with 503 ($n503)" \
  test "$ok200" -ge 1 -a "$n503" -ge 1 -a $((ok200 + n503)) = 40
check "c) ... every refusal within 2 s" test "$(slow_refusals "$T/c.out" 2000)" = 0
check "c) peak RSS ${peak} KiB < 40 MiB" test "${peak:-999999}" -lt $((40 * 1024))
check "c) once the clients are gone, nothing held" wait_for 5 held_zero
code=$(http GET "http://127.0.0.1:$PL/v2/")
check "c) layerd still answers /v2/ (code=$code)" test "$code" = 200
stop "$LAYERD_PID"
check "layerd stops cleanly (status $status)" test "$status" = 0
stop "$FIXTURE_PID"
finish
