#!/usr/bin/env bash
# Retention by age (issue 19): agent.cache_max_age evicts what was not served
# for that long, keeps pinned content (the prefetch list's), logs and counts
# the evictions by reason, and keeps the last use across a restart of layerd
# (the blob file's mtime), so a blob served just before the restart stays
# while one that idled past the age goes at start-up.
#
# The peers are private to this test, on free loopback ports: one
# tests/fixtures/upstream.py (the registry "127.0.0.1:PF") with five blobs and
# one image (a manifest, its config and a layer) that the spec's prefetch list
# pins; one layerd with its cache under $T, started twice. The age is 4 s:
# every step below is a whole second or more away from a deadline.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_tools curl sha256sum stat "$PY"

AGE=4
PA=$(free_port)
LOG=$T/layerd.log
CACHE=$T/cache
checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail "$LOG" "$T/fixture.log"
  fi
}

fixture_start fixture || { echo "Bail out! the fixture did not start"; exit 1; }
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
REG=127.0.0.1:$PF

# The pinned image: a config and a layer, and the manifest naming them.
CONFIG=$(printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/config" &&
  put_blob "$T/config")
random_file "$T/layer" 4096 >/dev/null
LAYER=$(put_blob "$T/layer")
cat >"$T/manifest" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CONFIG","size":$(size_of "$T/config")},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$LAYER","size":4096}]}
JSON
MANIFEST=$(fixture_manifest "$FX" test/pinned v1 "$T/manifest")
# An image pulled by tag once and never again (its manifest, under a tag record).
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
  "$CONFIG" "$(size_of "$T/config")" >"$T/idle-manifest"
IDLE=$(fixture_manifest "$FX" test/idle v1 "$T/idle-manifest")
# Blobs served by clients: A and E hot, B idle, D served once before the restart.
for x in A B D E; do
  random_file "$T/$x" 2048 >/dev/null
  declare "$x=$(put_blob "$T/$x")"
done

write_spec "$T/spec.yaml" "$PA" "$CACHE" <<YAML
  cache_max_age: ${AGE}s
  default_registry: "$REG"
registries:
  "$REG":
    origin: $FX
    endpoints: [$FX]
prefetch:
  images: ["$REG/test/pinned:v1"]
YAML

blob_url() { echo "http://127.0.0.1:$PA/v2/test/app/blobs/$1?ns=$REG"; }
# serve NAME: GET blob NAME through layerd; succeeds on 200 with its bytes.
serve() {
  local d=${!1}
  get "$(blob_url "$d")" "$T/got-$1" && [[ $code == 200 ]] && cmp -s "$T/got-$1" "$T/$1"
}
upstream_gets() { fixture_requests "$FX" "/blobs/$1" | grep -cF '"method": "GET"'; }
# metric_reason REASON: layerd_cache_evictions_by_reason_total{reason="REASON"}.
metric_reason() {
  curl -s --max-time 5 "http://127.0.0.1:$PA/metrics" |
    awk -v m="layerd_cache_evictions_by_reason_total{reason=\"$1\"}" '$1 == m { print $2 }'
}
# tag_get: GET test/idle:v1 through layerd; succeeds on 200 with the manifest's digest.
tag_get() {
  get "http://127.0.0.1:$PA/v2/test/idle/manifests/v1?ns=$REG" "$T/got-idle" &&
    [[ $code == 200 ]] && cmp -s "$T/got-idle" "$T/idle-manifest"
}
upstream_manifest_gets() { fixture_requests "$FX" "/test/idle/manifests/" | grep -cF '"method": "GET"'; }
TAG_RECORD=$CACHE/tags/$REG/test/idle/_tags/v1
mtime_of() { local h=${1#sha256:}; stat -c %Y "$CACHE/blobs/sha256/${h:0:2}/$h"; }
evicted_by_age() { grep -Eq 'cache eviction blobs=[0-9]+ bytes=[0-9]+ size=0 free_space=0 age=[1-9]' "$1"; }

# ---- the first layerd ------------------------------------------------------------------
layerd_serve "$LOG" "$T/spec.yaml"
wait_port "$PA" 10 || { echo "Bail out! layerd did not listen"; diag_tail "$LOG"; exit 1; }
checkd "the prefetch round stores the pinned image" wait_for 15 in_cache "$CACHE" "$MANIFEST" "$CONFIG" "$LAYER"
checkd "A, B and E are fetched and stored" eval 'serve A && serve B && serve E && in_cache "$CACHE" "$A" "$B" "$E"'
checkd "test/idle:v1 is pulled by tag: its manifest and tag record stored" \
  eval 'tag_get && in_cache "$CACHE" "$IDLE" && [[ -f $TAG_RECORD ]]'
# A and E are served every second, B never again: past the age B goes, A and E stay.
hits_ok=true
for _ in 1 2 3 4 5 6; do
  sleep 1
  serve A && serve E || hits_ok=false
done
checkd "A and E served from the cache every second" eval '$hits_ok && [[ $(upstream_gets "$A") == 1 && $(upstream_gets "$E") == 1 ]]'
checkd "B, not served for ${AGE}s, is evicted" wait_for 3 not in_cache "$CACHE" "$B"
checkd "A and E, served within the age, are kept" in_cache "$CACHE" "$A" "$E"
checkd "the pinned image, never served, is kept" in_cache "$CACHE" "$MANIFEST" "$CONFIG" "$LAYER"
checkd "the eviction is logged with its reason" evicted_by_age "$LOG"
checkd "and counted in /metrics by reason" eval '(( $(metric_reason age) >= 1 )) && [[ $(metric_reason size) == 0 && $(metric_reason free_space) == 0 ]]'
checkd "B is fetched again when asked after its eviction" eval 'serve B && [[ $(upstream_gets "$B") == 2 ]]'
# A manifest is a blob of the store like any other: its tag record does not keep it.
checkd "test/idle:v1's manifest, not served for ${AGE}s, is evicted; its tag record stays" \
  eval 'not in_cache "$CACHE" "$IDLE" && [[ -f $TAG_RECORD ]]'
n_before=$(upstream_manifest_gets)
checkd "a pull of test/idle:v1 then fetches its manifest again" \
  eval 'tag_get && in_cache "$CACHE" "$IDLE" && (( $(upstream_manifest_gets) > n_before ))'

# D stored now; E served again 3 s later, just before the stop. E was stored
# long before (its commit is past the age at the restart): only its recorded
# last use keeps it.
checkd "D is fetched and stored, E served from the cache" eval 'serve D && serve E && [[ $(upstream_gets "$E") == 1 ]]'
sleep 3
before_e=$(date +%s)
checkd "E is served from the cache just before the restart" eval 'serve E && [[ $(upstream_gets "$E") == 1 ]]'
stop "$LAYERD_PID" 10
checkd "layerd stops cleanly" [ "$status" = 0 ]
checkd "E's last use is on disk (its file's mtime)" eval '(( $(mtime_of "$E") >= before_e ))'
sleep 1.5  # D is now idle for 4.5 s, past the age; E for 1.5 s

# ---- the second layerd, on the same cache ------------------------------------------------
layerd_serve "$LOG.2" "$T/spec.yaml"
LOG=$LOG.2
wait_port "$PA" 10 || { echo "Bail out! layerd did not listen again"; diag_tail "$LOG"; exit 1; }
checkd "after the restart D, idle past the age, is evicted at start-up" wait_for 3 not in_cache "$CACHE" "$D"
checkd "while E, served just before the restart, is kept" in_cache "$CACHE" "$E"
checkd "and served from the cache" eval 'serve E && [[ $(upstream_gets "$E") == 1 ]]'
checkd "the start-up eviction is logged with its reason" evicted_by_age "$LOG"
checkd "and counted" eval '(( $(metric_reason age) >= 1 ))'
checkd "the pinned image is still kept" in_cache "$CACHE" "$MANIFEST" "$CONFIG" "$LAYER"

stop "$LAYERD_PID" 10
finish
