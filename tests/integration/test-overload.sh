#!/usr/bin/env bash
# Issue 16: `layerd serve` under overload, slow clients and hostile upstreams.
# This file and three more are its proof; each case fails on main as it was
# before the issue (except the guards said to be such):
#  - test-overload-admission.sh (item 1): a crowd of idle and slowloris
#    connections, deadlines, shedding and 503 at capacity;
#  - test-overload-memory.sh (item 3): the memory budget of in-flight bodies;
#  - test-overload-bounds.sh (item 4): caps on downloads, upstream waits and
#    abandoned downloads, tmp/ counted against cache_max_size, out of descriptors;
#  - this file, one section per concern:
#
#  1. Breakers (item 2): one slow download never turns a registry into 503s.
#     The default-like spec: one registry whose only endpoint is its origin.
#     The origin fails once (a 500), so its circuit breaker opens; once the
#     backoff (1 s at most by default) is over, the next request carries the
#     probe itself (there is no other endpoint to serve meanwhile), and here
#     that is a blob the fixture trickles (one byte every 20 ms). Before issue
#     16 that request held the probe until its whole body had arrived and every
#     other request to the registry was answered 503 "every endpoint is
#     unavailable (circuit open)". Now the probe's verdict is its response
#     head: during the trickle a manifest GET and HEAD and another blob GET
#     answer 200 within 2 s each.
#  2. Integrity corners (item 5): layerd never gives a complete answer of
#     bytes nothing verified (its cases numbered as in its checks):
#      1) a Range that ends before the blob's end (bytes=0-99, a lazy-pulling
#         client's read), asked while the blob downloads, is answered only once
#         the whole blob verified: the 206 comes after the blob is in the cache;
#      2) ... and when the upstream's bytes are wrong, it is a 503, not the
#         wrong bytes (nothing cached);
#      3) containerd's resume (bytes=N-, to the end) still streams while the
#         blob downloads, whole and right (a guard: it passes before the change too);
#      4) a tag's manifest sent with neither Docker-Content-Digest nor
#         Content-Length and cut short is an upstream failure (503), not the
#         tag: once the upstream is well again the right manifest comes, not a
#         cut one remembered for tag_ttl.
#     The wait of case 1 is bounded by the upstream wait (20 s, then 503): the
#     unit test test-core's test_http_range_wait_bounded shows that bound.
#  3. Memory and descriptors (item 3): clients that ask for the largest
#     allowed manifest and never read must not make layerd hold a copy each. A
#     cached manifest is sent from the cache's file (sendfile), so 200 such
#     clients, by digest and by tag, keep layerd's peak resident set (VmHWM)
#     under 48 MiB. Before, each held a 4 MiB heap copy until read: 200 of
#     them took it to 400-850 MiB. Also: layerd raises its open-file soft limit
#     to the hard one at start (every connection, download and blob being sent
#     takes a descriptor).
#  4. Where layerd goes (item 6):
#      - the pull API refuses (400) a request whose Host is neither a loopback
#        name or address nor the address the connection arrived on: a page in
#        a browser on the node that rebinds its own name to 127.0.0.1 sends its
#        own name; what containerd, skopeo and podman send (127.0.0.1:PORT,
#        localhost:PORT), and HTTP/1.0 without Host, are answered;
#      - redirects and token realms between loopback addresses (the endpoint is
#        on loopback itself: the same class) still work, by address and by a
#        name that resolves there. A public endpoint redirected to loopback
#        cannot be had on loopback: that decision is unit tested
#        (tests/unit/fallback/test-addr.c).
#
# Peers, all on free loopback ports: each section has its own fault-injecting
# fixture (tests/fixtures/upstream.py; its rules are one list per fixture) and
# its own layerd with the spec it needs, stopped when the section ends, so a
# breaker one section opens cannot change another's answers, and the memory
# section's peak RSS is its own layerd's. Within the integrity section each
# case has a registry of its own ("iN.test:PORT") for the same reason. Every
# wait is bounded.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl cmp sha256sum "$PY"

# ---- helpers -----------------------------------------------------------------------------
# section NAME: a section's layerd logs to $LOG, a failing checkd shows it and its fixture's.
section() { LOG=$T/$1-layerd.log; DIAG_FILES=("$LOG" "$T/$1-fx.log"); }
# ns NAME: the ns= parameter for registry NAME.test on the section's fixture's port.
ns() { echo "ns=$1.test:$PF"; }

# ==== 1. breakers: one slow download never turns a registry into 503s =====================
breakers() {
  section breaker
  checkd "the fixture upstream starts" fixture_start breaker-fx
  PF=$FIXTURE_PORT
  FX=http://127.0.0.1:$PF
  local NS=127.0.0.1:$PF

  # Content: a 64 KiB blob to trickle (about 22 minutes at one byte per 20 ms),
  # a small one, and a manifest tagged v1.
  local D_SLOW D_SMALL
  D_SLOW=$(random_file "$T/slow" 65536)
  D_SMALL=$(random_file "$T/small" 4096)
  cat >"$T/manifest.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "$D_SMALL", "size": 4096},
 "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "$D_SLOW", "size": 65536}]}
JSON
  put_content() {
    put_blob "$T/slow" >/dev/null && put_blob "$T/small" >/dev/null &&
      fixture_manifest "$FX" test/app v1 "$T/manifest.json" >/dev/null
  }
  checkd "the fixture takes two blobs and a manifest" put_content

  # The first manifest request fails (500, once); every GET of the slow blob trickles.
  checkd "the fixture takes its rules" rules \
    "[{\"path\": \"/manifests/\", \"status\": 500, \"times\": 1},
      {\"path\": \"/blobs/$D_SLOW\", \"method\": \"GET\", \"trickle_ms\": 20}]"

  local PL L LPID
  PL=$(free_port)
  L=http://127.0.0.1:$PL
  write_spec "$T/breaker.yaml" "$PL" "$T/breaker-cache" <<YAML
registries:
  "$NS":
    origin: $FX
YAML
  layerd_serve "$LOG" "$T/breaker.yaml"
  LPID=$LAYERD_PID
  checkd "layerd serve listens" wait_port "$PL" 10

  # ---- the origin fails once: its breaker opens ------------------------------------------
  # Every get here is bounded to 5 s; prompt_200: the last was a 200 within 2 s.
  prompt_200() { [[ $code == 200 && $ms -lt 2000 ]]; }
  get "$L/v2/test/app/manifests/v1?ns=$NS" "$T/m0" --max-time 5
  checkd "the first manifest GET fails (the origin's 500; got $code)" test "$code" != 200
  checkd "layerd logged the breaker opening" wait_for 5 grep -q "circuit open" "$LOG"
  sleep 1.2  # past the backoff: at most breaker_backoff_min (1 s)

  # ---- a trickling blob carries the probe ------------------------------------------------
  local SLOW
  curl -s -N --max-time 30 -o "$T/slow.got" "$L/v2/test/app/blobs/$D_SLOW?ns=$NS" &
  SLOW=$!
  PIDS+=("$SLOW")
  trickling() {
    fixture_requests "$FX" "/blobs/$D_SLOW" | grep -qF '"method": "GET"' && sleep 0.5
  }
  checkd "the slow blob's GET reached the origin" wait_for 10 trickling

  get "$L/v2/test/app/manifests/v1?ns=$NS" "$T/m1" --max-time 5 -H "Accept: application/vnd.oci.image.manifest.v1+json"
  checkd "during the trickle, a manifest GET answers 200 promptly (code=$code, $ms ms)" prompt_200
  checkd "... with the manifest's bytes" cmp -s "$T/m1" "$T/manifest.json"
  get "$L/v2/test/app/manifests/v1?ns=$NS" "$T/m2" --max-time 5 -I
  checkd "during the trickle, a manifest HEAD answers 200 promptly (code=$code, $ms ms)" prompt_200
  get "$L/v2/test/app/blobs/$D_SMALL?ns=$NS" "$T/small.got" --max-time 5
  checkd "during the trickle, another blob GET answers 200 promptly (code=$code, $ms ms)" prompt_200
  checkd "... with the blob's bytes" cmp -s "$T/small.got" "$T/small"
  checkd "the slow blob is still trickling ($(size_of "$T/slow.got" 2>/dev/null || echo 0) of 65536 bytes)" \
    bash -c 'kill -0 "$1" && (($(stat -c %s "$2" 2>/dev/null || echo 0) < 65536))' _ "$SLOW" "$T/slow.got"

  # ---- stop ------------------------------------------------------------------------------
  kill "$SLOW" 2>/dev/null
  wait "$SLOW" 2>/dev/null
  stop "$LPID"
  checkd "layerd serve stops cleanly (status $status)" test "$status" = 0
  stop "$FIXTURE_PID"
}

# ==== 2. integrity corners: never a complete answer of unverified bytes ===================
integrity() {
  section integrity
  local SIZE=$((600 * 1024))   # the blob: more than two of a download's 256 KiB batches
  local STALL=$((300 * 1024))  # where a stalled body stops (the endpoint's idle timeout, 1 s, resumes it)
  local CACHE=$T/integrity-cache
  # Every get here is bounded to 30 s (case 1's wait is at most 20 s).
  # range_is FILE FROM LENGTH WANT: the last get was a complete 206 and FILE holds
  # LENGTH bytes of WANT from byte FROM.
  range_is() {
    [[ $code == 206 && $crc == 0 && $(size_of "$1") == "$3" ]] &&
      cmp -s "$1" <(tail -c "+$(($2 + 1))" "$4" | head -c "$3")
  }

  # ---- the fixture and layerd ------------------------------------------------------------
  checkd "the fixture upstream starts" fixture_start integrity-fx
  PF=$FIXTURE_PORT
  FX=http://127.0.0.1:$PF
  local P L
  P=$(free_port)
  L=http://127.0.0.1:$P
  write_spec "$T/integrity.yaml" "$P" "$CACHE" <<YAML
registries:
  "i1.test:$PF":
    origin: $FX
    endpoints: [{url: $FX, timeouts: {idle: 1s}}]
  "i2.test:$PF":
    origin: $FX
    endpoints: [{url: $FX, timeouts: {idle: 1s}}]
  "i3.test:$PF":
    origin: $FX
    endpoints: [{url: $FX, timeouts: {idle: 1s}}]
  "i4.test:$PF":
    origin: $FX
    tag_ttl: 1h
YAML
  layerd_serve "$LOG" "$T/integrity.yaml"
  checkd "layerd listens" wait_port "$P" 10

  # ---- 1) a range that ends early waits for the blob to verify ---------------------------
  local D1 D2 D3 M4 committed head_code
  D1=$(random_file "$T/blob1" "$SIZE")
  put_blob "$T/blob1" >/dev/null
  rules "[{\"path\": \"^/v2/i1/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL}]"
  get "$L/v2/i1/app/blobs/$D1?$(ns i1)" "$T/r1" --max-time 30 -H "Range: bytes=0-99"
  # Right after the answer: the blob is verified and committed (it was answered from it).
  committed=no
  in_cache "$CACHE" "$D1" && committed=yes
  check "1: bytes=0-99 of a downloading blob is a 206 of the right bytes" range_is "$T/r1" 0 100 "$T/blob1"
  check "1: ... sent only once the blob verified (in the cache when the answer ended)" test "$committed" = yes
  check "1: Content-Range says so" grep -qi "^Content-Range: bytes 0-99/$SIZE" "$T/r1.headers"

  # ---- 2) ... and wrong bytes upstream: 503, never the bytes -----------------------------
  D2=$(random_file "$T/blob2" "$SIZE")
  put_blob "$T/blob2" >/dev/null
  rules "[{\"path\": \"^/v2/i2/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL, \"corrupt\": true}]"
  get "$L/v2/i2/app/blobs/$D2?$(ns i2)" "$T/r2" --max-time 30 -H "Range: bytes=0-99"
  checkd "2: bytes=0-99 of a blob with wrong bytes upstream is a 503 (got $code)" test "$code" = 503
  check "2: ... with the error body, no blob bytes" grep -q '"code":"UNAVAILABLE"' "$T/r2"
  check "2: ... and nothing cached" not in_cache "$CACHE" "$D2"

  # ---- 3) containerd's resume still streams while the blob downloads ---------------------
  D3=$(random_file "$T/blob3" "$SIZE")
  put_blob "$T/blob3" >/dev/null
  rules "[{\"path\": \"^/v2/i3/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL}]"
  get "$L/v2/i3/app/blobs/$D3?$(ns i3)" "$T/r3" --max-time 30 -H "Range: bytes=1000-"
  checkd "3: bytes=1000- of a downloading blob is a 206 of the rest, right" range_is "$T/r3" 1000 $((SIZE - 1000)) "$T/blob3"

  # ---- 4) a tag's manifest cut short without digest or length is not the tag -------------
  $PY - "$T/m4.json" <<'PY'
import json, sys
d = lambda c: "sha256:" + (c * 64)[:64]
body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("b"), "size": 100},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d("c"), "size": 1000}]}
with open(sys.argv[1], "w") as f:
    json.dump(body, f, indent=2)
PY
  M4=$(fixture_manifest "$FX" i4/app v1 "$T/m4.json")
  rules '[{"path": "^/v2/i4/app/manifests/v1$", "digest_header": null, "content_length": null, "close_after": 120}]'
  head_code=$(curl -s --max-time 30 -o /dev/null -D "$T/h4.headers" -w '%{http_code}' -I "$L/v2/i4/app/manifests/v1?$(ns i4)")
  checkd "4: HEAD of a tag whose manifest came cut short (no digest, no length) is a 503 (got $head_code)" \
    test "$head_code" = 503
  get "$L/v2/i4/app/manifests/v1?$(ns i4)" "$T/r4" --max-time 30
  checkd "4: ... and so is its GET (got $code, $(size_of "$T/r4") bytes)" test "$code" = 503
  rules '[]'
  # The failures opened the endpoint's breaker (backoff under 1 s): 503 until it closes.
  well_again() { get "$L/v2/i4/app/manifests/v1?$(ns i4)" "$T/r4b" --max-time 30; [[ $code != 503 ]]; }
  wait_for 10 well_again
  check "4: once the upstream is well, the whole manifest (no cut one kept for tag_ttl)" \
    eval '[[ $code == 200 ]] && cmp -s "$T/r4b" "$T/m4.json"'
  check "4: ... with its digest" grep -qi "^Docker-Content-Digest: $M4" "$T/r4b.headers"

  stop "$LAYERD_PID"
  check "layerd stops on SIGTERM" test "$status" = 0
  stop "$FIXTURE_PID"
}

# ==== 3. memory and descriptors: non-reading clients cost no copy each ====================
memory() {
  section memory
  local CLIENTS=200
  local LIMIT_KIB=$((48 * 1024))

  fixture_start memory-fx || { not_ok "upstream.py starts"; return; }
  PF=$FIXTURE_PORT FX=http://127.0.0.1:$FIXTURE_PORT
  # A manifest just under FALLBACK_MANIFEST_MAX (4 MiB), padded in an annotation.
  "$PY" - "$T/big.json" <<'PY'
import json, sys
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 1},
     "layers": [], "annotations": {"pad": "x" * (4 * 1024 * 1024 - 1000)}}
open(sys.argv[1], "w").write(json.dumps(m))
PY
  local D PB HARD SOFT limit want NS ACCEPT ALL peak
  D=$(fixture_manifest "$FX" big/app v1 "$T/big.json")
  PB=$(free_port)
  write_spec "$T/memory.yaml" "$PB" "$T/memory-cache" <<YAML
registries:
  "127.0.0.1:$PF":
    origin: $FX
YAML
  # Started with a low soft limit, as a shell's 1024 or a unit's default.
  HARD=$(ulimit -Hn)
  SOFT=256
  [[ $HARD == unlimited || $HARD -gt $SOFT ]] || SOFT=$HARD
  ulimit -Sn "$SOFT"
  layerd_serve "$LOG" "$T/memory.yaml"
  ulimit -Sn "$HARD"
  wait_port "$PB" 10 || { not_ok "layerd listens"; return; }
  limit=$(sed -n 's/^Max open files *\([0-9a-z]*\) .*/\1/p' "/proc/$LAYERD_PID/limits")
  want=$HARD; [[ $want == unlimited ]] && want=unlimited
  check "the open-file soft limit went from $SOFT to the hard limit $HARD (now $limit)" test "$limit" = "$want"
  check "the listening line says it (open_files=)" grep -qE "listening address=.* open_files=[0-9]+ " "$LOG"
  NS="ns=127.0.0.1:$PF"
  ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
  code=$(curl -s -o "$T/got" -w '%{http_code}' --max-time 10 -H "$ACCEPT" "http://127.0.0.1:$PB/v2/big/app/manifests/v1?$NS")
  check "the 4 MiB manifest through layerd: 200, whole (code=$code)" cmp -s "$T/got" "$T/big.json"

  # hold REF ACCEPT: CLIENTS connections ask for REF with a tiny receive buffer and read
  # nothing for 2 s; prints how many got an answer's first bytes (they all must:
  # the head is sent before the body stalls).
  hold() {
    "$PY" - "$PB" "$PF" "$CLIENTS" "$1" "$2" <<'PY'
import socket, sys, time
pb, pf, n, ref, accept = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", pb))
    s.sendall(("GET /v2/big/app/manifests/%s?ns=127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Accept: %s\r\n\r\n" % (ref, pf, pb, accept)).encode())
    socks.append(s)
answered = 0
for s in socks:
    try:
        if s.recv(16).startswith(b"HTTP/1.1 200"):
            answered += 1
    except OSError:
        pass
time.sleep(2)
print(answered)
PY
  }
  hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$LAYERD_PID/status"; }

  got=$(hold "$D" application/vnd.oci.image.manifest.v1+json)
  peak=$(hwm)
  echo "# $CLIENTS non-reading clients by digest: $got answered, VmHWM ${peak} KiB"
  check "$CLIENTS clients by digest all get the answer's head (got $got)" test "$got" -eq "$CLIENTS"
  check "by digest: peak RSS ${peak} KiB < ${LIMIT_KIB} KiB" test "$peak" -lt "$LIMIT_KIB"

  # An Accept that takes every manifest type: the tag's record answers (no upstream request each).
  ALL='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json'
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Accept: $ALL" "http://127.0.0.1:$PB/v2/big/app/manifests/v1?$NS")
  check "by tag with every manifest type accepted: 200 (code=$code), recorded" test "$code" = 200
  got=$(hold v1 "$ALL")
  peak=$(hwm)
  echo "# $CLIENTS non-reading clients by tag: $got answered, VmHWM ${peak} KiB"
  check "$CLIENTS clients by tag all get the answer's head (got $got)" test "$got" -eq "$CLIENTS"
  check "by tag: peak RSS ${peak} KiB < ${LIMIT_KIB} KiB" test "$peak" -lt "$LIMIT_KIB"
  code=$(http GET "http://127.0.0.1:$PB/v2/")
  check "layerd still answers /v2/ (code=$code)" test "$code" = 200
  stop "$LAYERD_PID"
  stop "$FIXTURE_PID"
}

# ==== 4. where layerd goes: Host checked; loopback redirects and realms kept ==============
where_layerd_goes() {
  section ssrf
  DIAG_FILES=("$LOG" "$T/u1.log" "$T/u2.log" "$T/body")
  local P1 U1 P2 U2 PL L c d1 d2 d3
  checkd "fixture U1 (the endpoint) starts" fixture_start u1
  P1=$FIXTURE_PORT
  U1=http://127.0.0.1:$P1
  checkd "fixture U2 (where U1 redirects) starts" fixture_start u2
  P2=$FIXTURE_PORT
  U2=http://127.0.0.1:$P2

  PL=$(free_port)
  L=http://127.0.0.1:$PL
  write_spec "$T/ssrf.yaml" "$PL" "$T/ssrf-cache" <<YAML
registries:
  "r1.test:$P1":
    origin: $U1
  "r2.test:$P1":
    origin: $U1
YAML
  checkd "the spec is valid" valid_spec "$T/ssrf.yaml"
  layerd_serve "$LOG" "$T/ssrf.yaml"
  checkd "layerd listens" wait_port "$PL" 10

  # host_code CURL_OPTIONS... : the status of GET /v2/ with those curl options (a Host header).
  host_code() { curl -s --max-time 5 -o "$T/body" -w '%{http_code}' "$@" "$L/v2/"; }

  # ---- a. Host ---------------------------------------------------------------------------
  c=$(host_code -H "Host: evil.example")
  checkd "Host: evil.example -> 400 (got $c)" test "$c" = 400
  checkd "... with a distribution error body naming Host" grep -q '"code":"DENIED".*Host' "$T/body"
  c=$(host_code -H "Host: evil.example:$PL")
  checkd "Host: evil.example:$PL -> 400 (got $c)" test "$c" = 400
  c=$(host_code -H "Host: 10.1.2.3:$PL")
  checkd "Host: 10.1.2.3:$PL (not the address it arrived on) -> 400 (got $c)" test "$c" = 400
  c=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "Host: evil.example" "$L/v2/r1.test/app/manifests/v1?ns=r1.test:$P1")
  checkd "Host: evil.example on a manifest route -> 400 (got $c)" test "$c" = 400
  c=$(host_code -H "Host: 127.0.0.1:$PL")
  checkd "Host: 127.0.0.1:$PL -> 200 (got $c)" test "$c" = 200
  c=$(host_code -H "Host: localhost:$PL")
  checkd "Host: localhost:$PL -> 200 (got $c)" test "$c" = 200
  c=$(host_code -H "Host: [::1]:$PL")
  checkd "Host: [::1]:$PL -> 200 (got $c)" test "$c" = 200
  c=$(host_code -H "Host: 127.0.0.2")
  checkd "Host: 127.0.0.2 (loopback, no port) -> 200 (got $c)" test "$c" = 200
  c=$(host_code --http1.0 -H "Host:")
  checkd "HTTP/1.0 without Host -> 200 (got $c)" test "$c" = 200
  checkd "the refusal is logged with its reason" \
    wait_for 5 grep -q 'status=400 .*reason="Host is neither' "$LOG"

  # ---- b. redirects and realms on loopback (same class) still work -----------------------
  # A fresh 4 KiB blob each (the cache is content-addressed).
  d1=$(random_file "$T/b1" 4096)
  d2=$(random_file "$T/b2" 4096)
  d3=$(random_file "$T/b3" 4096)
  checkd "U2 holds blobs 1 and 2" eval 'fixture_call PUT "$U2/_fixture/blob/$d1" "$T/b1" && fixture_call PUT "$U2/_fixture/blob/$d2" "$T/b2"'
  # By address, then by a name (localhost) that libcurl resolves: both are loopback.
  checkd "U1 redirects r1's blobs to U2 by address, r2's by name" fixture_json PUT "$U1/_fixture/rules" \
    "[{\"path\": \"^/v2/r1/\", \"redirect\": \"$U2\"}, {\"path\": \"^/v2/r2/\", \"redirect\": \"http://localhost:$P2\"}]"
  # pull NS REPO DIGEST FILE: GET the blob through layerd; 200 and the file's bytes.
  pull() {
    get "$L/v2/$2/blobs/$3?ns=$1" "$T/got" --max-time 10
    [[ $code == 200 ]] && cmp -s "$4" "$T/got"
  }
  checkd "r1: blob through a redirect to $U2: 200, its bytes" pull "r1.test:$P1" r1/app "$d1" "$T/b1"
  checkd "r2: blob through a redirect to http://localhost:$P2: 200, its bytes" pull "r2.test:$P1" r2/app "$d2" "$T/b2"
  checkd "U2 served both redirected GETs" \
    test "$(fixture_requests "$U2" "/blobs/" | grep -c '"GET"')" = 2

  # A token realm on another origin (localhost instead of 127.0.0.1) of the same server.
  checkd "U1 wants a bearer token from realm http://localhost:$P1/token" fixture_json PUT "$U1/_fixture/auth" \
    "{\"mode\": \"bearer\", \"realm\": \"http://localhost:$P1/token\"}"
  checkd "U1 drops its redirect rules and holds blob 3" \
    eval 'fixture_json PUT "$U1/_fixture/rules" "[]" && fixture_call PUT "$U1/_fixture/blob/$d3" "$T/b3"'
  checkd "blob through the token realm on localhost: 200, its bytes" pull "r1.test:$P1" r1/app "$d3" "$T/b3"
  checkd "the realm issued a token" test "$(fixture_requests "$U1" '^/token' | wc -l)" -ge 1

  stop "$LAYERD_PID"
  checkd "no refused redirect or realm was logged" absent -E '(redirect to|token realm) [^ ]+ refused' "$LOG"
}

breakers
integrity
memory
where_layerd_goes
finish
