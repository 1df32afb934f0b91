#!/usr/bin/env bash
# End to end (issue 6): containerd pulls through `layerd serve`, which pulls
# through its endpoint chain [central cache, origin] and keeps what it pulled.
#
# The peers are real and private to this test, on free loopback ports:
#  - the origin, a docker-registry (distribution v2) without auth (auth is
#    test-fallback's); skopeo pushes generated images to it: layers of random
#    bytes (256 KiB to 8 MiB) and a two-platform OCI index;
#  - the central cache, a second docker-registry in proxy mode (remoteurl = the origin);
#  - layerd serve, the registry "127.0.0.1:$PO" in its spec with the chain
#    [central cache, origin], tag_ttl 0s (every tag request revalidates, so an
#    outage shows the stale-if-error path), and writing the hosts files;
#  - a containerd with its own root and socket, a content store per namespace;
#    `ctr content fetch --hosts-dir` pulls and verifies content;
#  - skopeo as a client without ?ns= (agent.default_registry);
#  - later, in the central cache's place, a listener that never accepts.
# The cases run in the order that needs the fewest restarts: 1, 7, 6, 5, 2, 8, 4, 3.
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "containerd needs root"
require_tools containerd ctr docker-registry skopeo setpriv curl /usr/bin/python3

PO=$(free_port)  # the origin
PP=$(free_port)  # the central cache, later the hung listener
PA=$(free_port)  # layerd
ORIGIN=http://127.0.0.1:$PO
CCACHE=http://127.0.0.1:$PP
LAYERD_URL=http://127.0.0.1:$PA
R=127.0.0.1:$PO/test/app
NS=ns=127.0.0.1:$PO
HOSTS=$T/hosts
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json

# ---- helpers -------------------------------------------------------------------------
LOG=$T/layerd.log  # the running layerd's log
# checkd DESCRIPTION COMMAND...: check, with the peers' logs on stderr when it fails.
checkd() {
  local d=$1 f; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail "$LOG" ${LAST:+"$LAST.err"}
    for f in origin cache; do
      echo "# --- last access-log lines of $f"
      requests "$T/$f.log" 0 | tail -n 8 | cut -c1-300 | sed 's/^/#   /'
    done >&2
  fi
}
# pull NS REF [FETCH_OPTIONS...]: ctr_fetch through our hosts files; the time in $ms.
ms=
pull() {
  local t0; t0=$(now_ms)
  ctr_fetch "$1" "$HOSTS" "$2" "${@:3}"
  ms=$(($(now_ms) - t0))
}
# no_next_host: the last pull went to layerd alone; containerd never moved on.
no_next_host() {
  ctr_no_next_host "$LAST.err" && test "$(ctr_resolve_order "$LAST.err")" = "127.0.0.1:$PA"
}
# pull_ok LABEL NAMESPACE REF DIGEST BLOB...: pulls REF into NAMESPACE through
# layerd ($PULL_OPTS: more fetch options) and checks that it succeeded, went to
# layerd alone, named DIGEST and stored every BLOB; reports the time.
pull_ok() {
  local label=$1 ns=$2 ref=$3 digest=$4; shift 4
  pull "$ns" "$ref" ${PULL_OPTS:+"$PULL_OPTS"}
  checkd "$label: pull of ${ref##*/} succeeds" test "$rc" = 0
  echo "# $label: pull of ${ref##*/} took $ms ms"
  checkd "$label: containerd resolved at layerd and never needed its next host" no_next_host
  checkd "$label: the image record names the origin's digest" test "$(ctr_image_digest "$ns" "$ref")" = "$digest"
  checkd "$label: every blob is in containerd's content store" ctr_has "$ns" "$@"
}
# requests_since MARK: layerd's request lines since MARK.
requests_since() { since "$LOG" "$1" | grep '^<6>request ' || true; }
# outcomes MARK METHOD REF: the cache= values of layerd's requests for REF, sorted, on one line.
outcomes() {
  requests_since "$1" | grep -F " method=$2 " | grep -F " ref=$3 " | sed -n 's/.* cache=\([a-z-]*\) .*/\1/p' |
    sort | paste -sd' '
}
# blobs_were MARK OUTCOME DIGEST...: layerd answered each DIGEST's GET 200 with cache=OUTCOME.
blobs_were() {
  local m=$1 o=$2 d; shift 2
  for d in "$@"; do
    requests_since "$m" | grep -qE " method=GET ns=127\.0\.0\.1:$PO repo=[^ ]+ ref=$d status=200 .* cache=$o " ||
      return 1
  done
}
# downloaded_from MARK ENDPOINT DIGEST...: layerd logged each DIGEST downloaded from ENDPOINT.
downloaded_from() {
  local m=$1 e=$2 d; shift 2
  for d in "$@"; do
    since "$LOG" "$m" | grep -qE "^<6>downloaded ns=127\.0\.0\.1:$PO repo=[^ ]+ digest=$d .* endpoint=$e\$" || return 1
  done
}
# miss_lines_name MARK ENDPOINT DIGEST...: layerd's cache=miss request line for each DIGEST says endpoint=ENDPOINT.
miss_lines_name() {
  local m=$1 e=$2 d; shift 2
  for d in "$@"; do
    requests_since "$m" | grep -F " ref=$d " | grep -qE " cache=miss endpoint=$e\$" || return 1
  done
}
# head_digest REPO TAG ACCEPT: the origin's Docker-Content-Digest for REPO:TAG.
head_digest() {
  curl -s --max-time 5 -I -H "Accept: $3" "$ORIGIN/v2/$1/manifests/$2" | tr -d '\r' |
    sed -n 's/^docker-content-digest: *//Ip'
}
# push LAYOUT REPO:TAG [SKOPEO_OPTIONS...]: the layout's tag v1 (or multi with --all) to the origin.
push() {
  local src=v1
  [[ ${3:-} == --all ]] && src=multi
  skopeo_copy --dest-tls-verify=false --preserve-digests "${@:3}" "oci:$1:$src" "docker://127.0.0.1:$PO/$2"
}
# spec FILE [CACHE_TIMEOUTS]: the layerd spec.
spec() {
  cat >"$1" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PA
  cache_dir: $T/cache
  default_registry: "127.0.0.1:$PO"
registries:
  "127.0.0.1:$PO":
    origin: $ORIGIN
    tag_ttl: 0s
    endpoints:
      - url: $CCACHE
        ${2:+timeouts: $2}
      - $ORIGIN
YAML
}
start_origin() { registry origin "$PO"; ORIGIN_PID=$REGISTRY_PID; wait_port "$PO" 10; }
start_cache() { registry cache "$PP" "proxy:
  remoteurl: $ORIGIN"; CACHE_PID=$REGISTRY_PID; wait_port "$PP" 10; }

# ---- peers and images ------------------------------------------------------------------
checkd "the origin listens" start_origin
checkd "the central cache (proxy mode) listens" start_cache
containerd_start "$T/ctrd"
checkd "containerd answers on its own socket" wait_for 20 ctrd_up

# A: v1 (three layers, 256 KiB, 1 MiB, 2 MiB) and multi (an index of v1 and an arm64 image);
# B: test/app:v3, for the pull without layerd; C: test/conc:v1, for the concurrent pulls.
oci_layout "$T/A" --index --layers 262144,1048576,2097152 >"$T/A.digests" &&
  oci_layout "$T/B" --layers 262144,524288 >"$T/B.digests" &&
  oci_layout "$T/C" --layers 1048576,4194304,8388608 >"$T/C.digests"
checkd "the OCI layouts are built" test $? -eq 0
mapfile -t A <"$T/A.digests"
mapfile -t B <"$T/B.digests"
mapfile -t C <"$T/C.digests"
AV1=("${A[@]:0:5}")           # v1: manifest, config, 3 layers
AMULTI=("${A[@]}")            # multi: all of v1's, index, arm64 manifest, config, layer
MDIGEST=${A[0]} IDIGEST=${A[5]}
chmod -R a+rX "$T/A" "$T/B" "$T/C"
t0=$(now_ms)
push "$T/A" test/app:v1 && push "$T/A" test/app:multi --all && push "$T/B" test/app:v3 && push "$T/C" test/conc:v1
checkd "skopeo pushes v1, multi, v3 and conc:v1 to the origin" test $? -eq 0
echo "# pushes took $(($(now_ms) - t0)) ms"
checkd "the origin serves v1 under the pushed manifest digest" test "$(head_digest test/app v1 $OCI_MANIFEST)" = "$MDIGEST"
checkd "the origin serves multi under the pushed index digest" test "$(head_digest test/app multi $OCI_INDEX)" = "$IDIGEST"

spec "$T/spec.yaml"
layerd_serve "$LOG" "$T/spec.yaml" --write-hosts "$HOSTS"
L1=$LAYERD_PID
checkd "layerd serve listens" wait_port "$PA" 10
checkd "serve --write-hosts writes the hosts file" wait_for 10 test -f "$HOSTS/127.0.0.1:$PO/hosts.toml"

# ---- 1. cold pull through layerd ---------------------------------------------------------
l=$(mark "$LOG"); mc=$(mark "$T/cache.log"); mo=$(mark "$T/origin.log")
pull_ok "1. cold" c1 "$R:v1" "$MDIGEST" "${AV1[@]}"
checkd "1. manifest, config and the 3 layers are in layerd's cache" in_cache "$T/cache" "${AV1[@]}"
checkd "1. layerd answered every blob (config, layers) 200 cache=miss" blobs_were "$l" miss "${AV1[@]:1}"
checkd "1. layerd downloaded every blob from the central cache, its first endpoint" \
  downloaded_from "$l" "$CCACHE" "${AV1[@]:1}"
checkd "1. layerd's request line of each blob miss names that endpoint" miss_lines_name "$l" "$CCACHE" "${AV1[@]:1}"
checkd "1. the central cache logged layerd's GET of each layer" \
  test "$(from_layerd "$T/cache.log" "$mc" | grep -cE "\"GET /v2/test/app/blobs/(${A[2]}|${A[3]}|${A[4]})")" = 3
checkd "1. layerd sent nothing to the origin itself" test -z "$(from_layerd "$T/origin.log" "$mo")"

l=$(mark "$LOG")
PULL_OPTS=--all-platforms pull_ok "1. cold, all platforms" c1 "$R:multi" "$IDIGEST" "${AMULTI[@]}"
checkd "1. index: all of them are in layerd's cache" in_cache "$T/cache" "${AMULTI[@]}"
checkd "1. index: layerd answered the index, the arm64 manifest, config and layer 200 cache=miss" \
  blobs_were "$l" miss "${A[@]:5}"

# ---- 7. bad requests, HEAD and Range ------------------------------------------------------
code=$(httpx "$LAYERD_URL/v2/../../etc/passwd/manifests/x" --path-as-is)
checkd "7. /v2/../../etc/passwd/manifests/x: 4xx ($code)" test "${code:0:1}" = 4
code=$(httpx "$LAYERD_URL/v2/a/..%2f../blobs/${A[2]}?$NS" --path-as-is)
checkd "7. /v2/a/..%2f../blobs/<digest>: 4xx ($code)" test "${code:0:1}" = 4
code=$(httpx "$LAYERD_URL/v2/test/app/blobs/sha256:0123xyz?$NS")
checkd "7. a bad digest: 400 ($code)" test "$code" = 400
mo=$(mark "$T/origin.log")
code=$(httpx "$LAYERD_URL/v2/test/app/manifests/v1?ns=localhost:$PO")
checkd "7. an unknown ns: 404 NAME_UNKNOWN ($code)" \
  bash -c "test '$code' = 404 && grep -q NAME_UNKNOWN '$T/body'"
checkd "7. ... and the origin saw no request" test -z "$(requests "$T/origin.log" "$mo")"
big=$(head -c 102400 /dev/zero | tr '\0' a)
code=$(httpx "$LAYERD_URL/v2/test/app/manifests/v1?$NS" -H "X-Big: $big")
checkd "7. a 100 KiB header: 4xx ($code)" test "${code:0:1}" = 4
code=$(httpx "$LAYERD_URL/v2/")
checkd "7. layerd still answers GET /v2/ with 200 afterwards ($code)" test "$code" = 200
checkd "7. layerd is still running" kill -0 "$L1"
for m in PUT POST DELETE; do
  code=$(httpx "$LAYERD_URL/v2/test/app/manifests/v1?$NS" -X "$m" --data-binary x)
  checkd "7. $m: 405 with UNSUPPORTED in the body ($code)" \
    bash -c "test '$code' = 405 && grep -q UNSUPPORTED '$T/body'"
done
msize=$(stat -c %s "$T/A/blobs/sha256/${MDIGEST#sha256:}")
code=$(httpx "$LAYERD_URL/v2/test/app/manifests/v1?$NS" -I -H "Accept: $OCI_MANIFEST")
checkd "7. HEAD manifest: 200 with Docker-Content-Digest and Content-Length" \
  test "$code $(header Docker-Content-Digest) $(header Content-Length)" = "200 $MDIGEST $msize"
L0=$T/A/blobs/sha256/${A[2]#sha256:}
lsize=$(stat -c %s "$L0")
code=$(httpx "$LAYERD_URL/v2/test/app/blobs/${A[2]}?$NS" -r 1000-1999)
checkd "7. Range GET of a cached blob: 206 with Content-Range" \
  test "$code $(header Content-Range)" = "206 bytes 1000-1999/$lsize"
checkd "7. ... and the right 1000 bytes" cmp -s "$T/body" <(tail -c "+1001" "$L0" | head -c 1000)
code=$(httpx "$LAYERD_URL/v2/test/app/blobs/${A[2]}?$NS" -r "$lsize-")
checkd "7. an unsatisfiable Range: 416 ($code)" test "$code" = 416

# ---- 6. skopeo, a client that sends no ?ns= ------------------------------------------------
mkdir -p "$T/out" && chown 65534:65534 "$T/out"
l=$(mark "$LOG")
skopeo_copy --src-tls-verify=false "docker://127.0.0.1:$PA/test/app:v1" "oci:$T/out:v1"
checkd "6. skopeo copies v1 from layerd" test $? -eq 0
copied=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
  "$T/out/index.json" 2>/dev/null)
checkd "6. the copied manifest digest is the origin's" test "$copied" = "$MDIGEST"
checkd "6. layerd served skopeo under the default registry" \
  grep -qE " ns=127\.0\.0\.1:$PO repo=test/app ref=v1 status=200 " <(requests_since "$l")

# ---- 5. eight concurrent pulls of one cold image ------------------------------------------
l=$(mark "$LOG"); mc=$(mark "$T/cache.log"); mo=$(mark "$T/origin.log")
t0=$(now_ms)
jobs_=()
for i in 1 2 3 4 5 6 7 8; do
  (pull "p$i" "127.0.0.1:$PO/test/conc:v1"; echo "$rc" >"$LAST.rc") &
  jobs_+=("$!")
done
for p in "${jobs_[@]}"; do wait_exit "$p" 35; done
echo "# 5. eight concurrent pulls: $(($(now_ms) - t0)) ms"
all_ok() {
  local i
  for i in 1 2 3 4 5 6 7 8; do
    [[ $(cat "$T/fetch-p$i.rc" 2>/dev/null) == 0 ]] || return 1
    [[ $(ctr_image_digest "p$i" "127.0.0.1:$PO/test/conc:v1") == "${C[0]}" ]] || return 1
    ctr_has "p$i" "${C[@]}" || return 1
  done
}
checkd "5. all 8 pulls succeed, each with the whole image" all_ok
no_fallback() {
  local i
  for i in 1 2 3 4 5 6 7 8; do
    LAST=$T/fetch-p$i no_next_host || return 1
  done
}
checkd "5. none of them needed containerd's next host" no_fallback
# upstream_gets DIGEST: layerd's GETs of the blob at the central cache and the origin.
upstream_gets() {
  { from_layerd "$T/cache.log" "$mc"; from_layerd "$T/origin.log" "$mo"; } |
    grep -cF "\"GET /v2/test/conc/blobs/$1"
}
counts=
for d in "${C[@]:1}"; do counts+="$(upstream_gets "$d") "; done
checkd "5. exactly one upstream GET per blob (config, 3 layers) from layerd: $counts" test "$counts" = "1 1 1 1 "
one_miss() {
  local d
  for d in "${C[@]:1}"; do
    [[ $(outcomes "$l" GET "$d" | tr ' ' '\n' | grep -c '^miss$') == 1 ]] || return 1
    requests_since "$l" | grep -F " ref=$d " | grep -qv ' status=200 ' && return 1
  done
  return 0
}
checkd "5. layerd: one cache=miss per blob, the others join or hit, all 200" one_miss
echo "# 5. layerd's answers to the 8 GETs of the 8 MiB layer: $(outcomes "$l" GET "${C[4]}");" \
  "joins over all blobs: $(requests_since "$l" | grep -c ' cache=join ')"

# ---- 2. warm pull with the origin and the central cache down --------------------------------
stop "$ORIGIN_PID"; stop "$CACHE_PID"
both_down() { refuses "$PO" && refuses "$PP"; }
checkd "2. the origin and the central cache are stopped (ports refuse)" both_down
l=$(mark "$LOG")
pull_ok "2. warm, fresh namespace, both upstreams down" c2 "$R:v1" "$MDIGEST" "${AV1[@]}"
checkd "2. layerd served the manifest and every blob from its cache (cache=hit)" blobs_were "$l" hit "${AV1[@]}"
checkd "2. the tag was served stale (cache=stale)" test "$(outcomes "$l" HEAD v1)" = stale
checkd "2. layerd warned it served a stale tag" \
  grep -qE "serving a stale tag, every upstream failed: ns=127\.0\.0\.1:$PO repo=test/app tag=v1 digest=$MDIGEST" \
  <(since "$LOG" "$l")
no_miss() { ! requests_since "$l" | grep -q ' cache=miss '; }
checkd "2. no cache=miss while both upstreams were down" no_miss
PULL_OPTS=--all-platforms pull_ok "2. warm, all platforms, both upstreams down" c2 "$R:multi" "$IDIGEST" "${AMULTI[@]}"

# ---- 8. metrics and health ----------------------------------------------------------------
code=$(httpx "$LAYERD_URL/metrics")
checkd "8. /metrics: 200" test "$code" = 200
checkd "8. /metrics has layerd_requests_total lines" grep -qE '^layerd_requests_total\{route="blob",status="200"\} [1-9]' "$T/body"
checkd "8. /metrics has layerd_cache_hits_total, not 0" grep -qE '^layerd_cache_hits_total [1-9]' "$T/body"
checkd "8. /metrics counted the stale serves" grep -qE '^layerd_stale_serves_total [1-9]' "$T/body"
checkd "8. /healthz: 200" test "$(httpx "$LAYERD_URL/healthz")" = 200
checkd "8. /readyz: 200" test "$(httpx "$LAYERD_URL/readyz")" = 200

# ---- 4. layerd stopped: containerd falls back on its own ------------------------------------
checkd "4. the origin is back" start_origin
checkd "4. the central cache is back" start_cache
stop "$L1"
checkd "4. SIGTERM stops layerd with status 0" test "$status" = 0
checkd "4. layerd's port refuses" refuses "$PA"
mc=$(mark "$T/cache.log")
pull c4 "$R:v3"
checkd "4. pull of v3 with layerd stopped succeeds" test "$rc" = 0
echo "# 4. pull of v3 without layerd: $ms ms"
checkd "4. containerd tried layerd, then the central cache (the hosts file's order)" \
  test "$(ctr_resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PP"
checkd "4. layerd's refused connection made containerd try the next host" \
  grep -q "trying next host.*127.0.0.1:$PA.*connection refused" "$LAST.err"
checkd "4. the image record names v3's digest" test "$(ctr_image_digest c4 "$R:v3")" = "${B[0]}"
checkd "4. every blob of v3 is in containerd's content store" ctr_has c4 "${B[@]}"
checkd "4. the central cache served containerd (?$NS)" \
  grep -qF "\"HEAD /v2/test/app/manifests/v3?ns=127.0.0.1%3A$PO HTTP/1.1\" 200" <(requests "$T/cache.log" "$mc")

# ---- 3. a broken central cache, a cold layerd: the origin serves -----------------------------
stop "$CACHE_PID"
checkd "3. the central cache is stopped (its port refuses)" refuses "$PP"
LOG=$T/layerd-refused.log
layerd_serve "$LOG" "$T/spec.yaml" --cache-dir "$T/cache-refused"
checkd "3. layerd (fresh cache) listens" wait_port "$PA" 10
mo=$(mark "$T/origin.log")
pull_ok "3. cold, central cache refusing" c3a "$R:v1" "$MDIGEST" "${AV1[@]}"
checkd "3. refused cache: layerd logged the failover naming the central cache" \
  grep -qE "upstream failed, trying the next endpoint: .*endpoint=$CCACHE reason=" "$LOG"
checkd "3. refused cache: layerd downloaded config and layers from the origin" \
  downloaded_from 0 "$ORIGIN" "${AV1[@]:1}"
checkd "3. refused cache: the origin logged layerd's GETs of the layers" \
  test "$(from_layerd "$T/origin.log" "$mo" | grep -cE "\"GET /v2/test/app/blobs/(${A[2]}|${A[3]}|${A[4]})")" = 3
stop "$LAYERD_PID"

hung_listener "$PP" 60
checkd "3. a listener that never accepts takes the central cache's port" wait_port "$PP" 10
spec "$T/spec-hung.yaml" "{response: 1s}"
LOG=$T/layerd-hung.log
layerd_serve "$LOG" "$T/spec-hung.yaml" --cache-dir "$T/cache-hung"
checkd "3. layerd (fresh cache, cache response timeout 1s) listens" wait_port "$PA" 10
pull_ok "3. cold, central cache hung (response timeout 1s)" c3b "$R:v1" "$MDIGEST" "${AV1[@]}"
checkd "3. hung cache: the pull took less than 10 s ($ms ms)" test "$ms" -lt 10000
checkd "3. hung cache: layerd logged the failover naming the central cache" \
  grep -qE "upstream failed, trying the next endpoint: .*endpoint=$CCACHE reason=" "$LOG"
checkd "3. hung cache: layerd downloaded config and layers from the origin" \
  downloaded_from 0 "$ORIGIN" "${AV1[@]:1}"
checkd "3. hung cache: the blobs are in layerd's cache" in_cache "$T/cache-hung" "${AV1[@]}"
stop "$LAYERD_PID"
checkd "3. layerd stops with status 0" test "$status" = 0

finish
