#!/usr/bin/env bash
# Issue 16, item 2: one slow download never turns a registry into 503s.
#
# The default-like spec: one registry whose only endpoint is its origin, the
# fault-injecting fixture (tests/fixtures/upstream.py). The origin fails once
# (a 500), so its circuit breaker opens; once the backoff (1 s at most by
# default) is over, the next request carries the probe itself (there is no
# other endpoint to serve meanwhile), and here that is a blob the fixture
# trickles (one byte every 20 ms). Before issue 16 that request held the probe
# until its whole body had arrived and every other request to the registry was
# answered 503 "every endpoint is unavailable (circuit open)". Now the probe's
# verdict is its response head: during the trickle a manifest GET and HEAD and
# another blob GET answer 200 within 2 s each.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl cmp sha256sum "$PY"

LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fixture.log")
now_ms() { echo $(($(date +%s%N) / 1000000)); }
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
# timed_get URL FILE [CURL_OPTIONS...]: bounded (5 s); the status in $code, the wall time in $ms.
code='' ms=''
timed_get() {
  local url=$1 out=$2 t0; shift 2
  t0=$(now_ms)
  code=$(curl -s --max-time 5 -o "$out" -w '%{http_code}' "$@" "$url")
  ms=$(($(now_ms) - t0))
}
prompt_200() { [[ $code == 200 && $ms -lt 2000 ]]; }

checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
NS=127.0.0.1:$PF

# Content: a 64 KiB blob to trickle (about 22 minutes at one byte per 20 ms),
# a small one, and a manifest tagged v1.
head -c 65536 /dev/urandom >"$T/slow"
head -c 4096 /dev/urandom >"$T/small"
D_SLOW="sha256:$(sha256sum "$T/slow" | cut -d' ' -f1)"
D_SMALL="sha256:$(sha256sum "$T/small" | cut -d' ' -f1)"
cat >"$T/manifest.json" <<JSON
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "$D_SMALL", "size": 4096},
 "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "$D_SLOW", "size": 65536}]}
JSON
put_content() {
  fixture_call PUT "$FX/_fixture/blob/$D_SLOW" "$T/slow" &&
    fixture_call PUT "$FX/_fixture/blob/$D_SMALL" "$T/small" &&
    fixture_call PUT "$FX/_fixture/manifest/test/app/v1?type=application/vnd.oci.image.manifest.v1%2Bjson" \
      "$T/manifest.json"
}
checkd "the fixture takes two blobs and a manifest" put_content

# The first manifest request fails (500, once); every GET of the slow blob trickles.
checkd "the fixture takes its rules" fixture_json PUT "$FX/_fixture/rules" \
  "[{\"path\": \"/manifests/\", \"status\": 500, \"times\": 1},
    {\"path\": \"/blobs/$D_SLOW\", \"method\": \"GET\", \"trickle_ms\": 20}]"

PL=$(free_port)
L=http://127.0.0.1:$PL
cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PL
  cache_dir: $T/cache
registries:
  "$NS":
    origin: $FX
YAML
layerd_serve "$LOG" "$T/spec.yaml"
LPID=$LAYERD_PID
checkd "layerd serve listens" wait_port "$PL" 10

# ---- the origin fails once: its breaker opens -------------------------------------------
timed_get "$L/v2/test/app/manifests/v1?ns=$NS" "$T/m0"
checkd "the first manifest GET fails (the origin's 500; got $code)" test "$code" != 200
checkd "layerd logged the breaker opening" wait_for 5 grep -q "circuit open" "$LOG"
sleep 1.2  # past the backoff: at most breaker_backoff_min (1 s)

# ---- a trickling blob carries the probe -------------------------------------------------
curl -s -N --max-time 30 -o "$T/slow.got" "$L/v2/test/app/blobs/$D_SLOW?ns=$NS" &
SLOW=$!
PIDS+=("$SLOW")
trickling() {
  fixture_requests "$FX" "/blobs/$D_SLOW" | grep -qF '"method": "GET"' && sleep 0.5
}
checkd "the slow blob's GET reached the origin" wait_for 10 trickling

timed_get "$L/v2/test/app/manifests/v1?ns=$NS" "$T/m1" -H "Accept: application/vnd.oci.image.manifest.v1+json"
checkd "during the trickle, a manifest GET answers 200 promptly (code=$code, $ms ms)" prompt_200
checkd "... with the manifest's bytes" cmp -s "$T/m1" "$T/manifest.json"
timed_get "$L/v2/test/app/manifests/v1?ns=$NS" /dev/null -I
checkd "during the trickle, a manifest HEAD answers 200 promptly (code=$code, $ms ms)" prompt_200
timed_get "$L/v2/test/app/blobs/$D_SMALL?ns=$NS" "$T/small.got"
checkd "during the trickle, another blob GET answers 200 promptly (code=$code, $ms ms)" prompt_200
checkd "... with the blob's bytes" cmp -s "$T/small.got" "$T/small"
checkd "the slow blob is still trickling ($(size_of "$T/slow.got") of 65536 bytes)" \
  bash -c 'kill -0 "$1" && (($(stat -c %s "$2" 2>/dev/null || echo 0) < 65536))' _ "$SLOW" "$T/slow.got"

# ---- stop -------------------------------------------------------------------------------
kill "$SLOW" 2>/dev/null
wait "$SLOW" 2>/dev/null
kill -TERM "$LPID"
wait_exit "$LPID" 10
checkd "layerd serve stops cleanly (status $status)" test "$status" = 0
finish
