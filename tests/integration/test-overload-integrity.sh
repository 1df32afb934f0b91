#!/usr/bin/env bash
# Issue 16, integrity corners: `layerd serve` never gives a complete answer
# of bytes nothing verified.
#  1. a Range that ends before the blob's end (bytes=0-99, a lazy-pulling
#     client's read), asked while the blob downloads, is answered only once
#     the whole blob verified: the 206 comes after the blob is in the cache;
#  2. ... and when the upstream's bytes are wrong, it is a 503, not the
#     wrong bytes (nothing cached);
#  3. containerd's resume (bytes=N-, to the end) still streams while the blob
#     downloads, whole and right (a guard: it passes before the change too);
#  4. a tag's manifest sent with neither Docker-Content-Digest nor
#     Content-Length and cut short is an upstream failure (503), not the tag:
#     once the upstream is well again the right manifest comes, not a cut one
#     remembered for tag_ttl.
# The wait of case 1 is bounded by the upstream wait (20 s, then 503): the
# unit test test-core's test_http_range_wait_bounded shows that bound.
#
# Peers: one upstream.py (tests/fixtures/upstream.py) and one layerd, on free
# loopback ports; each case has a registry of its own in layerd's spec
# ("iN.test:PORT"), the fixture its only endpoint, so a breaker one case opens
# cannot change another's answers. Every wait is bounded.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl cmp sha256sum "$PY"

LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fixture.log")
SIZE=$((600 * 1024))   # the blob: more than two of a download's 256 KiB batches
STALL=$((300 * 1024))  # where a stalled body stops (the endpoint's idle timeout, 1 s, resumes it)

size_of() { stat -c %s "$1"; }
# get URL FILE [CURL_OPTIONS...]: GET URL into FILE, bounded (30 s); the status in $code,
# curl's exit status in $crc.
code='' crc=''
get() {
  local url=$1 out=$2; shift 2
  code=$(curl -s --max-time 30 -o "$out" -D "$out.headers" -w '%{http_code}' "$@" "$url")
  crc=$?
}
rules() { fixture_json PUT "$FX/_fixture/rules" "$1"; }
# put_blob FILE: the fixture serves FILE as a blob; prints its digest.
put_blob() {
  local d; d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  fixture_call PUT "$FX/_fixture/blob/$d" "$1" && echo "$d"
}
# range_is FILE FROM LENGTH WANT: the last get was a complete 206 and FILE holds
# LENGTH bytes of WANT from byte FROM.
range_is() {
  [[ $code == 206 && $crc == 0 && $(size_of "$1") == "$3" ]] &&
    cmp -s "$1" <(tail -c "+$(($2 + 1))" "$4" | head -c "$3")
}
not() { ! "$@"; }

# ---- the fixture and layerd --------------------------------------------------------------
checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
P=$(free_port)
L=http://127.0.0.1:$P
cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$P
  cache_dir: $T/cache
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
layerd_serve "$LOG" "$T/spec.yaml"
checkd "layerd listens" wait_port "$P" 10
ns() { echo "ns=$1.test:$PF"; }

# ---- 1. a range that ends early waits for the blob to verify -----------------------------
head -c "$SIZE" /dev/urandom >"$T/blob1"
D1=$(put_blob "$T/blob1")
rules "[{\"path\": \"^/v2/i1/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL}]"
get "$L/v2/i1/app/blobs/$D1?$(ns i1)" "$T/r1" -H "Range: bytes=0-99"
# Right after the answer: the blob is verified and committed (it was answered from it).
committed=no
in_cache "$T/cache" "$D1" && committed=yes
check "1: bytes=0-99 of a downloading blob is a 206 of the right bytes" range_is "$T/r1" 0 100 "$T/blob1"
check "1: ... sent only once the blob verified (in the cache when the answer ended)" test "$committed" = yes
check "1: Content-Range says so" grep -qi "^Content-Range: bytes 0-99/$SIZE" "$T/r1.headers"

# ---- 2. ... and wrong bytes upstream: 503, never the bytes --------------------------------
head -c "$SIZE" /dev/urandom >"$T/blob2"
D2=$(put_blob "$T/blob2")
rules "[{\"path\": \"^/v2/i2/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL, \"corrupt\": true}]"
get "$L/v2/i2/app/blobs/$D2?$(ns i2)" "$T/r2" -H "Range: bytes=0-99"
checkd "2: bytes=0-99 of a blob with wrong bytes upstream is a 503 (got $code)" test "$code" = 503
check "2: ... with the error body, no blob bytes" grep -q '"code":"UNAVAILABLE"' "$T/r2"
check "2: ... and nothing cached" not in_cache "$T/cache" "$D2"

# ---- 3. containerd's resume still streams while the blob downloads -----------------------
head -c "$SIZE" /dev/urandom >"$T/blob3"
D3=$(put_blob "$T/blob3")
rules "[{\"path\": \"^/v2/i3/\", \"method\": \"GET\", \"times\": 1, \"stall_after\": $STALL}]"
get "$L/v2/i3/app/blobs/$D3?$(ns i3)" "$T/r3" -H "Range: bytes=1000-"
checkd "3: bytes=1000- of a downloading blob is a 206 of the rest, right" range_is "$T/r3" 1000 $((SIZE - 1000)) "$T/blob3"

# ---- 4. a tag's manifest cut short without digest or length is not the tag ---------------
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
get "$L/v2/i4/app/manifests/v1?$(ns i4)" "$T/r4"
checkd "4: ... and so is its GET (got $code, $(size_of "$T/r4") bytes)" test "$code" = 503
rules '[]'
# The failures opened the endpoint's breaker (backoff under 1 s): 503 until it closes.
answered() { get "$L/v2/i4/app/manifests/v1?$(ns i4)" "$T/r4b"; [[ $code != 503 ]]; }
wait_for 10 answered
check "4: once the upstream is well, the whole manifest (no cut one kept for tag_ttl)" \
  eval '[[ $code == 200 ]] && cmp -s "$T/r4b" "$T/m4.json"'
check "4: ... with its digest" grep -qi "^Docker-Content-Digest: $M4" "$T/r4b.headers"

stop "$LAYERD_PID"
check "layerd stops on SIGTERM" test "$status" = 0
finish
