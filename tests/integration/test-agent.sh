#!/usr/bin/env bash
# `layerd serve` against a fault-injecting upstream (tests/fixtures/upstream.py):
# a full cache disk, wrong bytes mid-stream, stale tags, bounded answers,
# clients that leave, single-flight, manifest headers and Accept, SIGTERM
# during a stalled download, SIGHUP with a bad spec, malformed requests.
#
# The peers are private to this test, on free loopback ports:
#  - one upstream.py; each case PUTs its own content and rules (matched by
#    the case's repository path) and reads the fixture's request log;
#  - layerd A, its cache on a 2 MiB tmpfs (case 1, root only);
#  - layerd B, its cache under $T, for every other case.
# Each case has a registry of its own in layerd B's spec ("cN.test:PORT"),
# every one with the fixture as its only endpoint: a circuit breaker opened
# by one case's faults cannot change another case's answers.
# Case 8 (SIGTERM) stops layerd B, so it runs last.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_tools curl cmp sha256sum "$PY"

# ---- cleanup: stop everything, then unmount the tmpfs, then lib.sh's cleanup ------------
MOUNTED=
agent_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait_exit "$p" 3 || { kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; }; done
  if [[ -n $MOUNTED ]]; then
    umount "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED"
  fi
  cleanup
}
trap agent_cleanup EXIT

# ---- helpers -------------------------------------------------------------------------
LOG=$T/layerd.log  # layerd B's log
LOG_A=$T/layerd-a.log
DIAG_FILES=("$LOG" "$T/fixture.log")  # what a failing checkd shows: the running case's layerd's log
# timed CASE: runs the function CASE and reports its wall time.
timed() { local t0; t0=$(now_ms); "$1"; echo "# $1: $(($(now_ms) - t0)) ms"; }
# bytes_at_least FILE N: FILE exists and holds at least N bytes.
bytes_at_least() { [[ -f $1 && $(size_of "$1") -ge $2 ]]; }

# put_manifest NAME REF MEDIA_TYPE FILE: the fixture serves FILE as NAME:REF with
# Content-Type MEDIA_TYPE; prints its digest.
put_manifest() {
  fixture_call PUT "$FX/_fixture/manifest/$1/$2?type=${3//+/%2B}" "$4" &&
    $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["digest"])' "$T/fx"
}
# upstream_count METHOD PATH [STATUS]: how many METHOD requests the fixture logged
# for PATH (a regex, anchored; "" for any path), answered STATUS when given.
upstream_count() {
  fixture_requests "$FX" "${2:+^$2(\?|\$)}" | grep -F "\"method\": \"$1\"" |
    grep -cF "\"status\": ${3:-}"
}

# hdr FILE NAME: the value of header NAME in FILE.headers.
hdr() { tr -d '\r' <"$1.headers" | sed -n "s/^$2: *//Ip" | tail -n 1; }

# requests_since LOGFILE MARK: layerd's request lines since MARK.
requests_since() { since "$1" "$2" | grep '^<6>request ' || true; }
# outcome_of LOGFILE MARK METHOD REF STATUS: the cache= values of those requests, one a line.
outcome_of() {
  requests_since "$1" "$2" | grep -F " method=$3 " | grep -F " ref=$4 status=$5 " |
    sed -n 's/.* cache=\([a-z-]*\) .*/\1/p'
}
# logged LOGFILE MARK FIXED_STRING: layerd logged FIXED_STRING since MARK.
logged() { since "$1" "$2" | grep -qF -- "$3"; }
# logged_re LOGFILE MARK REGEX: layerd logged a line matching REGEX since MARK.
logged_re() { since "$1" "$2" | grep -qE -- "$3"; }
# metric URL NAME: the value of the un-labelled metric NAME at URL/metrics.
metric() { curl -s --max-time 5 "$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
at_least() { [[ -n $1 && $1 -ge $2 ]]; }
# alive PID URL: the process runs and answers GET /v2/ with 200.
alive() { kill -0 "$1" 2>/dev/null && test "$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$2/v2/")" = 200; }
# exact FILE WANT: the last get was a complete 200 and FILE holds exactly the bytes of WANT.
exact() { [[ $code == 200 && $crc == 0 ]] && cmp -s "$1" "$2"; }
# complete_but_wrong FILE WANT: FILE is as long as WANT but holds other bytes.
complete_but_wrong() { [[ $(size_of "$1") == "$(size_of "$2")" ]] && ! cmp -s "$1" "$2"; }
# one_of VALUE CHOICE...: VALUE is one of the CHOICEs.
one_of() { local v=$1 c; shift; for c in "$@"; do [[ $v == "$c" ]] && return 0; done; return 1; }

# OCI/Docker manifests with the given media type (content need not exist: layerd
# verifies a manifest's digest, not what it refers to).
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
# manifest_file FILE MEDIA_TYPE SALT: an image manifest (or an index) in FILE.
manifest_file() {
  $PY - "$@" <<'PY'
import json, sys
out, mt, salt = sys.argv[1], sys.argv[2], sys.argv[3]
d = lambda c: "sha256:" + (c * 64)[:64]
if mt.endswith("index.v1+json") or mt.endswith("list.v2+json"):
    body = {"schemaVersion": 2, "mediaType": mt, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d("a"), "size": 500,
         "platform": {"architecture": "amd64", "os": "linux"}}], "annotations": {"salt": salt}}
else:
    layer = "application/vnd.oci.image.layer.v1.tar+gzip" if "oci" in mt else \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    config = "application/vnd.oci.image.config.v1+json" if "oci" in mt else \
        "application/vnd.docker.container.image.v1+json"
    body = {"schemaVersion": 2, "mediaType": mt, "config": {"mediaType": config, "digest": d("b"), "size": 100},
            "layers": [{"mediaType": layer, "digest": d("c"), "size": 1000}], "annotations": {"salt": salt}}
with open(out, "w") as f:
    json.dump(body, f, indent=2)
PY
}

# ---- the fixture ---------------------------------------------------------------------
checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF

# ---- layerd B ------------------------------------------------------------------------
PB=$(free_port)
B=http://127.0.0.1:$PB
# spec_registry NAME [YAML_LINE]: registry NAME.test:$PF of layerd B's spec, its origin (and,
# unless YAML_LINE lists endpoints, its only endpoint) the fixture.
spec_registry() {
  cat <<YAML
  "$1.test:$PF":
    origin: $FX
    ${2:-}
YAML
}
# spec_b FILE [MORE_REGISTRIES_YAML]: layerd B's spec.
spec_b() {
  {
    cat <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PB
  cache_dir: $T/cache
registries:
YAML
    spec_registry c2
    spec_registry c3 "tag_ttl: 0s"
    spec_registry c4h "endpoints: [{url: $FX, timeouts: {response: 1s}}]"
    spec_registry c4r
    spec_registry c4n
    spec_registry c5
    spec_registry c6
    spec_registry c7 "tag_ttl: 1h"
    spec_registry c8  # the default timeouts: idle 30s
    spec_registry c10
    spec_registry c11 "endpoints: [{url: $FX, timeouts: {response: 4s}}]"
    spec_registry c12
    printf '%s' "${2:-}"
  } >"$1"
}
spec_b "$T/spec.yaml"
checkd "layerd B's spec is valid" valid_spec "$T/spec.yaml"
layerd_serve "$LOG" "$T/spec.yaml"
LB=$LAYERD_PID
checkd "layerd B listens" wait_port "$PB" 10
ns() { echo "ns=$1.test:$PF"; }

# ---- 1. the cache disk is full: stream through ----------------------------------------
c1() {
  local why='' d m
  if [[ $(id -u) -ne 0 ]]; then
    why="not root: cannot mount a tmpfs"
  else
    mkdir -p "$T/tmpfs"
    if mount -t tmpfs -o size=2m tmpfs "$T/tmpfs" 2>"$T/mount.err"; then
      MOUNTED=$T/tmpfs
    else
      why="unsupported: mount -t tmpfs failed here (no CAP_SYS_ADMIN?): $(head -c 200 "$T/mount.err")"
    fi
  fi
  if [[ -n $why ]]; then
    skip "1. disk full: a 6 MiB blob streams through a 2 MiB cache" "$why"
    return
  fi
  local pa; pa=$(free_port)
  local a=http://127.0.0.1:$pa
  cat >"$T/spec-a.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$pa
  cache_dir: $T/tmpfs/cache
registries:
  "127.0.0.1:$PF":
    origin: $FX
YAML
  layerd_serve "$LOG_A" "$T/spec-a.yaml"
  local la=$LAYERD_PID
  DIAG_FILES=("$LOG_A" "$T/fixture.log")
  checkd "1. layerd A (cache on a 2 MiB tmpfs) listens" wait_port "$pa" 10
  d=$(random_file "$T/blob1" $((6 << 20)))
  checkd "1. the fixture takes the 6 MiB blob" test "$(put_blob "$T/blob1")" = "$d"
  m=$(mark "$LOG_A")
  get "$a/v2/c1/app/blobs/$d?ns=127.0.0.1:$PF" "$T/got1"
  checkd "1. GET through a full cache: 200 and the exact 6 MiB (code=$code curl=$crc bytes=$got)" exact "$T/got1" "$T/blob1"
  echo "# 1. stream-through GET: $ms ms"
  checkd "1. layerd logged that it streams through" \
    grep -qE "streaming through: ns=127\.0\.0\.1:$PF repo=c1/app digest=$d" "$LOG_A"
  checkd "1. layerd_stream_throughs_total >= 1" at_least "$(metric "$a" layerd_stream_throughs_total)" 1
  get "$a/v2/c1/app/blobs/$d?ns=127.0.0.1:$PF" "$T/got1a" &
  local g1=$!
  get "$a/v2/c1/app/blobs/$d?ns=127.0.0.1:$PF" "$T/got1b" &
  wait "$g1" "$!"
  checkd "1. two concurrent GETs through the full cache: the first exact" cmp -s "$T/got1a" "$T/blob1"
  checkd "1. ... and the second exact" cmp -s "$T/got1b" "$T/blob1"
  checkd "1. the blob is not in the full cache" not in_cache "$T/tmpfs/cache" "$d"
  checkd "1. the aborted downloads left no partial files (tmpfs use < 512 KiB)" \
    test "$(du -sk "$T/tmpfs" | cut -f1)" -lt 512
  echo "# 1. requests: $(requests_since "$LOG_A" "$m" | sed -n 's/.* cache=\([a-z]*\) .*/\1/p' | paste -sd' ')"
  # Nothing is in flight: SIGTERM must not wait out the 10 s grace period.
  local t0; t0=$(now_ms)
  stop "$la" 5
  checkd "1. layerd A stops on SIGTERM within 5 s, exit 0 (status=$status, $(($(now_ms) - t0)) ms)" test "$status" = 0
  if [[ $status == timeout ]]; then kill -KILL "$la" 2>/dev/null; wait "$la" 2>/dev/null; fi
  umount "$MOUNTED" && MOUNTED=
  DIAG_FILES=("$LOG" "$T/fixture.log")
}
timed c1

# ---- 2. wrong bytes mid-stream: the client's connection is cut, nothing is cached ------
c2() {
  local d m size
  d=$(random_file "$T/blob2" $((4 << 20)))
  size=$(size_of "$T/blob2")
  put_blob "$T/blob2" >/dev/null
  checkd "2. rule: corrupt the blob's bytes" rules "[{\"path\": \"^/v2/c2/app/blobs/$d\$\", \"corrupt\": true}]"
  m=$(mark "$LOG")
  get "$B/v2/c2/app/blobs/$d?$(ns c2)" "$T/got2"
  echo "# 2. corrupt GET: code=$code curl=$crc bytes=$got of $size, $ms ms"
  checkd "2. the client does not get the whole body: curl cut (18/56) or fewer bytes (curl=$crc bytes=$got)" \
    test "$crc" = 18 -o "$crc" = 56 -o "$got" -lt "$size"
  checkd "2. never a complete body with wrong bytes" not complete_but_wrong "$T/got2" "$T/blob2"
  checkd "2. layerd logged \"upstream sent wrong bytes\"" \
    wait_for 5 logged "$LOG" "$m" "upstream sent wrong bytes, not cached: ns=c2.test:$PF repo=c2/app digest=$d"
  checkd "2. the blob is not in the cache" not in_cache "$T/cache" "$d"
  rules '[]'
  # The endpoint's breaker opened on the wrong bytes: retry through its backoff.
  local i t0; t0=$(now_ms)
  for ((i = 0; i < 40; i++)); do
    m=$(mark "$LOG")
    get "$B/v2/c2/app/blobs/$d?$(ns c2)" "$T/got2"
    [[ $code == 200 ]] && break
    sleep 0.25
  done
  echo "# 2. the clean GET came after $i refusals, $(($(now_ms) - t0)) ms"
  checkd "2. without the rule: 200 and the exact bytes (code=$code curl=$crc)" exact "$T/got2" "$T/blob2"
  checkd "2. ... and that request was a cache miss, not a hit" \
    wait_for 5 test "$(outcome_of "$LOG" "$m" GET "$d" 200)" = miss
}
timed c2

# ---- 3. stale-if-error: a tag whose upstream fails is served from the last answer -------
c3() {
  local d m
  manifest_file "$T/m3" "$OCI_MANIFEST" c3
  d=$(put_manifest c3/app v1 "$OCI_MANIFEST" "$T/m3")
  get "$B/v2/c3/app/manifests/v1?$(ns c3)" "$T/got3"
  checkd "3. GET by tag: 200, the manifest's digest" test "$code.$(hdr "$T/got3" Docker-Content-Digest)" = "200.$d"
  checkd "3. rule: every upstream request answers 503" rules '[{"status": 503}]'
  m=$(mark "$LOG")
  get "$B/v2/c3/app/manifests/v1?$(ns c3)" "$T/got3"
  checkd "3. GET by tag while upstream fails: 200, the same Docker-Content-Digest" \
    test "$code.$(hdr "$T/got3" Docker-Content-Digest)" = "200.$d"
  checkd "3. ... and the same bytes" cmp -s "$T/got3" "$T/m3"
  checkd "3. the fixture did answer that revalidation 503" \
    test "$(upstream_count HEAD /v2/c3/app/manifests/v1 503)" -ge 1
  checkd "3. layerd logged \"serving a stale tag\"" \
    wait_for 5 logged "$LOG" "$m" "serving a stale tag, every upstream failed: ns=c3.test:$PF repo=c3/app tag=v1 digest=$d"
  checkd "3. layerd_stale_serves_total >= 1" at_least "$(metric "$B" layerd_stale_serves_total)" 1
  get "$B/v2/c3/app/manifests/v1?$(ns c3)" "$T/got3h" -I
  checkd "3. HEAD by tag while upstream fails: 200, the same digest, Content-Length" \
    test "$code.$(hdr "$T/got3h" Docker-Content-Digest).$(hdr "$T/got3h" Content-Length)" = "200.$d.$(size_of "$T/m3")"
  get "$B/v2/c3/app/manifests/never?$(ns c3)" "$T/got3n"
  checkd "3. a tag never seen, upstream failing: 503 in $ms ms (< 8 s)" test "$code" = 503 -a "$ms" -lt 8000
  rules '[]'
}
timed c3

# ---- 4. bounded answers: hung upstream, 429, 404 --------------------------------------
c4() {
  local d
  manifest_file "$T/m4" "$OCI_MANIFEST" c4
  put_manifest c4h/app v1 "$OCI_MANIFEST" "$T/m4" >/dev/null
  put_manifest c4r/app v1 "$OCI_MANIFEST" "$T/m4" >/dev/null
  checkd "4. rules: c4h hangs, c4r answers 429" \
    rules '[{"path": "^/v2/c4h/", "hang": true}, {"path": "^/v2/c4r/", "status": 429, "headers": {"Retry-After": "1"}}]'
  get "$B/v2/c4h/app/manifests/v1?$(ns c4h)" "$T/got4h"
  echo "# 4. hung upstream (response timeout 1s): $code in $ms ms"
  checkd "4. the only endpoint hangs (response: 1s): 503 (got $code)" test "$code" = 503
  checkd "4. ... within 8 s ($ms ms)" test "$ms" -lt 8000
  get "$B/v2/c4r/app/manifests/v1?$(ns c4r)" "$T/got4r"
  checkd "4. upstream 429: layerd answers 503, never 429 (got $code)" test "$code" = 503
  checkd "4. ... after the fixture did answer 429" test "$(upstream_count HEAD /v2/c4r/app/manifests/v1 429)" -ge 1
  d=sha256:$(printf 'no such blob %s' "$RANDOM" | sha256sum | cut -d' ' -f1)
  get "$B/v2/c4n/app/blobs/$d?$(ns c4n)" "$T/got4n"
  checkd "4. upstream 404 for a blob: 404 (got $code) in $ms ms (< 3 s)" test "$code" = 404 -a "$ms" -lt 3000
  checkd "4. ... with BLOB_UNKNOWN in a JSON error body" \
    $PY -c 'import json,sys; e=json.load(open(sys.argv[1]))["errors"]; sys.exit(e[0]["code"] != "BLOB_UNKNOWN")' "$T/got4n"
  rules '[]'
}
timed c4

# ---- 5. a client that leaves does not cancel the download ------------------------------
c5() {
  local d m
  d=$(random_file "$T/blob5" $((20 << 20)))
  put_blob "$T/blob5" >/dev/null
  checkd "5. rule: the blob's answer is delayed 500 ms" rules "[{\"path\": \"^/v2/c5/app/blobs/\", \"delay_ms\": 500}]"
  get "$B/v2/c5/app/blobs/$d?$(ns c5)" "$T/got5" --max-time 0.3
  checkd "5. the client gives up after 0.3 s with nothing (curl=$crc code=$code)" test "$crc.$code" = 28.000
  local t0; t0=$(now_ms)
  checkd "5. the blob is then in the cache (bounded: 10 s)" wait_for 10 in_cache "$T/cache" "$d"
  echo "# 5. the blob was committed $(($(now_ms) - t0)) ms after the client left"
  checkd "5. layerd logged the download of it" grep -qE "^<6>downloaded ns=c5\.test:$PF repo=c5/app digest=$d bytes=$((20 << 20)) " "$LOG"
  rules '[]'
  m=$(mark "$LOG")
  get "$B/v2/c5/app/blobs/$d?$(ns c5)" "$T/got5"
  checkd "5. a later GET: 200, the exact 20 MiB" exact "$T/got5" "$T/blob5"
  checkd "5. ... from the cache (cache=hit)" wait_for 5 test "$(outcome_of "$LOG" "$m" GET "$d" 200)" = hit
  checkd "5. upstream saw one GET of the blob" test "$(upstream_count GET "/v2/c5/app/blobs/$d")" = 1
}
timed c5

# ---- 6. single-flight: 8 clients, one upstream GET ------------------------------------
c6() {
  local d m i all=0 pids=()
  d=$(random_file "$T/blob6" $((8 << 20)))
  put_blob "$T/blob6" >/dev/null
  # 300 ms before upstream answers: all eight ask while the download is cold or in flight.
  checkd "6. rule: the blob's answer is delayed 300 ms" rules '[{"path": "^/v2/c6/app/blobs/", "delay_ms": 300}]'
  m=$(mark "$LOG")
  local t0; t0=$(now_ms)
  for i in 1 2 3 4 5 6 7 8; do
    curl -s --max-time 20 -o "$T/got6.$i" "$B/v2/c6/app/blobs/$d?$(ns c6)" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i"; done
  echo "# 6. eight parallel GETs: $(($(now_ms) - t0)) ms"
  for i in 1 2 3 4 5 6 7 8; do cmp -s "$T/got6.$i" "$T/blob6" && all=$((all + 1)); done
  checkd "6. eight parallel GETs of a cold 8 MiB blob: all exact ($all of 8)" test "$all" = 8
  checkd "6. upstream saw exactly one GET of the blob" test "$(upstream_count GET "/v2/c6/app/blobs/$d")" = 1
  wait_for 5 test "$(outcome_of "$LOG" "$m" GET "$d" 200 | wc -l)" = 8
  echo "# 6. outcomes: $(outcome_of "$LOG" "$m" GET "$d" 200 | sort | uniq -c | paste -sd' ')"
  checkd "6. one request was the miss, the others joined it (or hit)" \
    test "$(outcome_of "$LOG" "$m" GET "$d" 200 | grep -c '^miss$')" = 1
  rules '[]'
}
timed c6

# ---- 7. manifests: headers; an index is not served to a client that does not accept it --
# c7_upstream: the fixture's GET and HEAD counts for c7/app:multi, as "GETS/HEADS".
c7_upstream() { echo "$(upstream_count GET /v2/c7/app/manifests/multi)/$(upstream_count HEAD /v2/c7/app/manifests/multi)"; }
c7() {
  local d di m before
  manifest_file "$T/m7" "$DOCKER_MANIFEST" c7
  d=$(put_manifest c7/app v1 "$DOCKER_MANIFEST" "$T/m7")
  local how
  for how in "from upstream" "from the cache"; do
    get "$B/v2/c7/app/manifests/$d?$(ns c7)" "$T/got7"
    checkd "7. by digest, $how: 200 and the exact bytes" exact "$T/got7" "$T/m7"
    checkd "7. ... Content-Type is the stored media type ($(hdr "$T/got7" Content-Type))" \
      test "$(hdr "$T/got7" Content-Type)" = "$DOCKER_MANIFEST"
    checkd "7. ... Docker-Content-Digest is the digest" test "$(hdr "$T/got7" Docker-Content-Digest)" = "$d"
    checkd "7. ... ETag is the quoted digest ($(hdr "$T/got7" ETag))" test "$(hdr "$T/got7" ETag)" = "\"$d\""
  done
  get "$B/v2/c7/app/manifests/$d?$(ns c7)" "$T/got7h" -I
  checkd "7. HEAD by digest: 200, Content-Length $(size_of "$T/m7") ($(hdr "$T/got7h" Content-Length))" \
    test "$code.$(hdr "$T/got7h" Content-Length).$(hdr "$T/got7h" Docker-Content-Digest)" = "200.$(size_of "$T/m7").$d"

  manifest_file "$T/i7" "$OCI_INDEX" c7
  di=$(put_manifest c7/app multi "$OCI_INDEX" "$T/i7")
  get "$B/v2/c7/app/manifests/multi?$(ns c7)" "$T/got7i"
  checkd "7. an OCI index by tag: 200, its digest and media type" \
    test "$code.$(hdr "$T/got7i" Docker-Content-Digest).$(hdr "$T/got7i" Content-Type)" = "200.$di.$OCI_INDEX"
  before=$(c7_upstream)
  m=$(mark "$LOG")
  get "$B/v2/c7/app/manifests/multi?$(ns c7)" "$T/got7i" -H "Accept: $OCI_INDEX, $OCI_MANIFEST"
  checkd "7. again, Accept lists the index type (tag_ttl 1h): answered from the cache, no upstream request" \
    test "$code.$(c7_upstream)" = "200.$before"
  get "$B/v2/c7/app/manifests/multi?$(ns c7)" "$T/got7d" -H "Accept: $DOCKER_MANIFEST"
  echo "# 7. Accept: docker v2 only: status $code, Content-Type $(hdr "$T/got7d" Content-Type)"
  checkd "7. Accept: only Docker v2 manifests: the cached index is not served blindly, the request goes upstream" \
    test "$(c7_upstream)" != "$before"
  wait_for 5 test "$(outcome_of "$LOG" "$m" GET multi "$code" | wc -l)" = 2
  checkd "7. ... and layerd's log calls it no hit ($(outcome_of "$LOG" "$m" GET multi "$code" | paste -sd' '))" \
    test "$(outcome_of "$LOG" "$m" GET multi "$code" | tail -n 1)" != hit
}
timed c7

# ---- 9. SIGHUP with a spec naming a missing credentials_file: rejected, old spec kept ----
c9() {
  local m d
  d=$(put_blob "$T/blob5")  # case 5's, in the cache
  cp "$T/spec.yaml" "$T/spec.good"
  spec_b "$T/spec.yaml" "  \"c9.test:$PF\":
    origin: $FX
    endpoints:
      - url: $FX
        credentials_file: $T/no-such-config.json
"
  m=$(mark "$LOG")
  kill -HUP "$LB"
  checkd "9. SIGHUP with a missing credentials_file: \"reload rejected\" at error level" \
    wait_for 5 logged_re "$LOG" "$m" '^<3>.*reload rejected'
  echo "# 9. $(since "$LOG" "$m" | grep -m1 'reload rejected' | cut -c1-300)"
  checkd "9. layerd still runs and answers /v2/" alive "$LB" "$B"
  get "$B/v2/c5/app/blobs/$d?$(ns c5)" "$T/got9"
  checkd "9. a cached blob: still 200 and exact" exact "$T/got9" "$T/blob5"
  get "$B/v2/c9/app/manifests/v1?$(ns c9)" "$T/got9n"
  checkd "9. the rejected spec's new registry is not served (404, got $code)" test "$code" = 404
  checkd "9. no \"reloaded\" line" not logged_re "$LOG" "$m" '^<6>reloaded'
  cp "$T/spec.good" "$T/spec.yaml"
}
timed c9

# ---- 10. malformed requests -------------------------------------------------------------
c10() {
  local big name
  big=$(head -c $((100 << 10)) /dev/zero | tr '\0' a)
  local before; before=$(upstream_count GET "")$(upstream_count HEAD "")
  get "$B/v2/" "$T/got10" -H "X-Big: $big"
  echo "# 10. a 100 KiB header: code=$code curl=$crc"
  checkd "10. a 100 KiB header: refused with 4xx or the connection closed (code=$code)" \
    one_of "$code" 000 400 413 431
  checkd "10. ... layerd still runs and GET /v2/ is 200" alive "$LB" "$B"
  # The documented limit: about 7.5 KiB of request line and headers.
  get "$B/v2/" "$T/got10" -H "X-Pad: $(head -c 6000 /dev/zero | tr '\0' a)"
  checkd "10. 6000 bytes of one header: served (code=$code)" test "$code" = 200
  get "$B/v2/" "$T/got10" -H "X-Pad: $(head -c 10000 /dev/zero | tr '\0' a)"
  checkd "10. 10000 bytes of one header: 431 (code=$code)" test "$code" = 431
  name=$(head -c 4096 /dev/zero | tr '\0' a)
  get "$B/v2/$name/manifests/latest?$(ns c10)" "$T/got10"
  checkd "10. a 4 KiB repository name: 400 or 404 (got $code)" one_of "$code" 400 404
  get "$B/v2/c10/../../etc/manifests/latest?$(ns c10)" "$T/got10" --path-as-is
  checkd "10. \"..\" in the name: 400 (got $code)" test "$code" = 400
  get "$B/v2/c10/%2e%2e/etc/manifests/latest?$(ns c10)" "$T/got10" --path-as-is
  checkd "10. \"%2e%2e\" in the name: 400 (got $code)" test "$code" = 400
  checkd "10. none of those reached upstream" test "$(upstream_count GET "")$(upstream_count HEAD "")" = "$before"
  checkd "10. layerd still runs and GET /v2/ is 200" alive "$LB" "$B"
}
timed c10

# ---- 11. the event loop never waits: requests that wait hold a thread of their own -----
# threads PID: how many threads the process runs now.
threads() { awk '/^Threads:/ { print $2 }' "/proc/$1/status"; }
c11() {
  local i pids=() t0 t_idle hung_codes
  manifest_file "$T/m11" "$OCI_MANIFEST" c11
  put_manifest c11/app v1 "$OCI_MANIFEST" "$T/m11" >/dev/null
  checkd "11. rules: c11 hangs" rules '[{"path": "^/v2/c11/", "hang": true}]'
  # More waiting requests than layerd has event-loop threads (2 to 8).
  for i in $(seq 1 12); do
    curl -s --max-time 20 -o /dev/null -w '%{http_code}\n' "$B/v2/c11/app/manifests/v1?$(ns c11)" >"$T/c11-$i.code" &
    pids+=($!)
  done
  sleep 0.5
  get "$B/v2/" "$T/got11"
  checkd "11. with 12 requests waiting on a hung upstream, GET /v2/ is 200 at once ($code in $ms ms)" \
    test "$code" = 200 -a "$ms" -lt 500
  get "$B/v2/c5/app/blobs/sha256:$(sha256sum "$T/blob5" | cut -d' ' -f1)?$(ns c5)" "$T/got11b"
  checkd "11. ... and a cached blob is served at once ($code in $ms ms)" test "$code" = 200 -a "$ms" -lt 1000
  for i in "${pids[@]}"; do wait "$i"; done
  hung_codes=$(sort -u "$T"/c11-*.code | paste -sd' ')
  checkd "11. the waiting requests end with 503 after the response timeout (got: $hung_codes)" test "$hung_codes" = 503
  rules '[]'
  # 200 idle connections: no thread each (a thread per connection would be 200 more).
  t_idle=$(threads "$LB")
  $PY - "$PB" 200 "/proc/$LB/status" >"$T/c11-idle" <<'PYEOF'
import socket, sys, time
port, n, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    socks.append(s)
for s in socks:  # every one answered, and kept alive
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"{}"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:40]
time.sleep(0.2)
threads = [int(l.split()[1]) for l in open(status) if l.startswith("Threads:")][0]
print(threads)
for s in socks:
    s.close()
PYEOF
  echo "# 11. threads: $t_idle before, $(cat "$T/c11-idle") with 200 idle keep-alive connections"
  checkd "11. 200 idle keep-alive connections add no thread each ($t_idle -> $(cat "$T/c11-idle"))" \
    test "$(cat "$T/c11-idle")" -le $((t_idle + 8))
  checkd "11. layerd still runs and GET /v2/ is 200" alive "$LB" "$B"
}
timed c11

# ---- 12. a Range GET of a blob not yet cached: streamed from its start -----------------
c12() {
  local d size=$((6 << 20)) start=5000000
  d=$(random_file "$T/blob12" "$size")
  put_blob "$T/blob12" >/dev/null
  checkd "12. rule: the blob's answer is delayed 300 ms" rules '[{"path": "^/v2/c12/app/blobs/", "delay_ms": 300}]'
  get "$B/v2/c12/app/blobs/$d?$(ns c12)" "$T/got12" -r "$start-"
  tail -c +$((start + 1)) "$T/blob12" >"$T/want12"
  checkd "12. Range bytes=$start- of an uncached 6 MiB blob: 206 (got $code)" test "$code" = 206
  checkd "12. ... Content-Range bytes $start-$((size - 1))/$size" \
    test "$(hdr "$T/got12" Content-Range)" = "bytes $start-$((size - 1))/$size"
  checkd "12. ... exactly the blob's bytes from $start on" cmp -s "$T/got12" "$T/want12"
  checkd "12. the whole blob is then in the cache" wait_for 10 in_cache "$T/cache" "$d"
  rules '[]'
}
timed c12

# ---- 8. SIGTERM while a download is stalled upstream ----------------------------------
c8() {
  local d cp t0
  # c8's registry has the default timeouts: idle 30s, longer than the 15 s allowed here.
  d=$(random_file "$T/blob8" $((8 << 20)))
  put_blob "$T/blob8" >/dev/null
  checkd "8. rule: the blob stalls after 1 MB" rules '[{"path": "^/v2/c8/app/blobs/", "stall_after": 1000000}]'
  curl -s --max-time 40 -o "$T/got8" "$B/v2/c8/app/blobs/$d?$(ns c8)" &
  cp=$!
  checkd "8. the download is stalled in flight (the client has its first bytes)" \
    wait_for 10 bytes_at_least "$T/got8" 500000
  # wait_exit counts whole seconds: 16 of them are at least 15 s.
  t0=$(now_ms)
  stop "$LB" 16
  t0=$(($(now_ms) - t0))
  echo "# 8. SIGTERM with a stalled download: status=$status after $t0 ms"
  checkd "8. SIGTERM during a stalled download: exit 0 within 15 s (status=$status after $t0 ms)" \
    test "$status" = 0 -a "$t0" -le 15000
  if [[ $status == timeout ]]; then kill -KILL "$LB" 2>/dev/null; wait "$LB" 2>/dev/null; fi
  wait_exit "$cp" 5 || kill "$cp" 2>/dev/null
  checkd "8. the client did not get a complete body" test "$(size_of "$T/got8")" -lt "$(size_of "$T/blob8")"
}
timed c8

finish
