#!/usr/bin/env bash
# The OCI 1.1 Referrers API through layerd (issue 18): GET
# /v2/<name>/referrers/<digest>, what cosign, notation and oras ask to find the
# signatures and SBOMs of an image. Two origins, private to this test:
#  - the fixture (tests/fixtures/upstream.py --referrers), which implements the
#    API: an image, a signature and an SBOM that name it as their subject,
#    behind a central cache (a fixture without the API or content, whose 404
#    moves the chain on); the index cold (one upstream request), warm from
#    the cache while younger than tag_ttl (3s; records count whole seconds, so
#    at least 2s), artifactType filtered by layerd (OCI-Filters-Applied),
#    asked again after tag_ttl (a referrer added meanwhile appears), the last
#    index served with the origin failing (stale-if-error); an origin answer
#    that is no index is refused; a paginated one is served and not stored;
#    the referrers' manifests and blobs come through the usual routes and are
#    served from the cache with the origin stopped;
#  - a private repository of the fixture (Basic auth for "team/"): challenged
#    without credentials, served to accepted credentials, never from the cache
#    to wrong ones;
#  - prefetch.referrers: `layerd prefetch --once` fetches the referrers and
#    their manifests and blobs with the image;
#  - Debian's docker-registry, which has no Referrers API: the 404 is passed on
#    with a distribution error body and never cached as an empty index (asked
#    again next time); the tag schema's `sha256-<hex>` tag that clients then
#    use, pushed with plain curl, works through the manifests route, warm with
#    the registry stopped too.
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_tools curl docker-registry /usr/bin/python3

PA=$(free_port) PR=$(free_port)
OCI_INDEX=application/vnd.oci.image.index.v1+json
SIG_TYPE=application/vnd.dev.cosign.artifact.sig.v1+json
SBOM_TYPE=application/spdx+json
enc() { printf '%s' "${1//+/%2B}"; }  # a media type in a query: "+" is a space there
DIAG_FILES=("$T/layerd.log" "$T/fx.log" "$T/fxm.log" "$T/reg.log")
LOG=$T/layerd.log
checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else not_ok "$d"; diag_tail "${DIAG_FILES[@]}"; fi
}

fixture_start fx --referrers || { not_ok "fixture starts"; finish; exit 1; }
PF=$FIXTURE_PORT FX=http://127.0.0.1:$FIXTURE_PORT FX_PID=$FIXTURE_PID
REG=127.0.0.1:$PF
# A central cache in front of the origin that has neither the API nor the content: its 404s move
# the chain on to the origin.
fixture_start fxm || { not_ok "mirror fixture starts"; finish; exit 1; }
PM=$FIXTURE_PORT FXM=http://127.0.0.1:$FIXTURE_PORT

# artifact DIR NAME TYPE SUBJECT_DIGEST SUBJECT_SIZE: an OCI artifact manifest
# in DIR/NAME (artifactType TYPE, the empty config, one layer of random bytes
# in DIR/NAME.layer) whose subject is the given manifest; prints its digest,
# then its layer's.
artifact() {
  /usr/bin/python3 - "$@" <<'PY'
import hashlib, json, os, sys
d, name, typ, subject, size = sys.argv[1:6]
layer = os.urandom(512)
open(os.path.join(d, name + ".layer"), "wb").write(layer)
ld = "sha256:" + hashlib.sha256(layer).hexdigest()
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": typ,
     "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
     "layers": [{"mediaType": "application/octet-stream", "size": len(layer), "digest": ld}],
     "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": int(size)},
     "annotations": {"org.example.name": name}}
body = json.dumps(m).encode()
open(os.path.join(d, name), "wb").write(body)
print("sha256:" + hashlib.sha256(body).hexdigest())
print(ld)
PY
}
# push_image BASE REPO DIR: DIR's OCI layout (oci_layout) as REPO:v1 at the fixture BASE.
push_image() {
  local d
  for d in $(tail -n +2 "$3.digests"); do
    fixture_call PUT "$1/_fixture/blob/$d" "$3/blobs/sha256/${d#sha256:}" || return 1
  done
  d=$(head -n 1 "$3.digests")
  [[ $(fixture_manifest "$1" "$2" v1 "$3/blobs/sha256/${d#sha256:}") == "$d" ]]
}
# push_artifact BASE REPO NAME: the artifact made by artifact() in $T/art, with its layer.
push_artifact() {
  local ld
  ld=$(sed -n 2p "$T/art/$3.digests")
  fixture_call PUT "$1/_fixture/blob/$ld" "$T/art/$3.layer" &&
    printf '{}' >"$T/art/empty" && fixture_call PUT "$1/_fixture/blob/$EMPTY" "$T/art/empty" &&
    [[ $(fixture_manifest "$1" "$2" "$(head -n 1 "$T/art/$3.digests")" "$T/art/$3") == $(head -n 1 "$T/art/$3.digests") ]]
}
EMPTY=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
mkdir -p "$T/art"
oci_layout "$T/img" >"$T/img.digests"
M=$(head -n 1 "$T/img.digests") MSIZE=$(size_of "$T/img/blobs/sha256/${M#sha256:}")
artifact "$T/art" sig "$SIG_TYPE" "$M" "$MSIZE" >"$T/art/sig.digests"
artifact "$T/art" sbom "$SBOM_TYPE" "$M" "$MSIZE" >"$T/art/sbom.digests"
artifact "$T/art" late "$SIG_TYPE" "$M" "$MSIZE" >"$T/art/late.digests"
SIG=$(head -n 1 "$T/art/sig.digests") SIG_LAYER=$(sed -n 2p "$T/art/sig.digests")
SBOM=$(head -n 1 "$T/art/sbom.digests") SBOM_LAYER=$(sed -n 2p "$T/art/sbom.digests")
LATE=$(head -n 1 "$T/art/late.digests")
check "the fixture holds an image, its signature and its SBOM" \
  eval 'push_image "$FX" test/app "$T/img" && push_artifact "$FX" test/app sig && push_artifact "$FX" test/app sbom'

write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
registries:
  "$REG":
    origin: http://127.0.0.1:$PF
    endpoints: [http://127.0.0.1:$PM, http://127.0.0.1:$PF]
    tag_ttl: 3s
  "127.0.0.1:$PR":
    origin: http://127.0.0.1:$PR
    endpoints: [http://127.0.0.1:$PR]
    tag_ttl: 3s
YAML
layerd_serve "$LOG" "$T/spec.yaml"
check "layerd starts" wait_port "$PA"

url() { echo "http://127.0.0.1:$PA/v2/$1?ns=${2:-$REG}${3:+&$3}"; }
# digests FILE: the digests of a referrers index's manifests, sorted, on one line.
digests() {
  /usr/bin/python3 -c '
import json, sys
i = json.load(open(sys.argv[1]))
assert i["mediaType"] == "application/vnd.oci.image.index.v1+json" and i["schemaVersion"] == 2
print(" ".join(sorted(m["digest"] for m in i["manifests"])))' "$1" 2>/dev/null
}
sorted() { printf '%s\n' "$@" | sort | paste -sd' '; }
# cache_of MARK: the cache= of layerd's referrers request lines since MARK, on one line.
cache_of() { since "$LOG" "$1" | grep '^<6>request ' | grep -F " ref=$M " | sed -n 's/.* cache=\([a-z-]*\) .*/\1/p' | paste -sd' '; }
asked() { fixture_requests "$FX" "/referrers/" | wc -l; }
# errcode FILE: the code of a distribution error body.
errcode() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["errors"][0]["code"])' "$1" 2>/dev/null; }
errmsg() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["errors"][0]["message"])' "$1" 2>/dev/null; }

# ---- cold, filtered, warm -----------------------------------------------------------------
fixture_call POST "$FX/_fixture/reset" >/dev/null
push_image "$FX" test/app "$T/img" && push_artifact "$FX" test/app sig && push_artifact "$FX" test/app sbom
m0=$(mark "$LOG")
get "$(url test/app/referrers/"$M")" "$T/r1"
checkd "cold: 200 with an OCI image index" eval '[[ $code == 200 ]] && grep -qi "^Content-Type: $OCI_INDEX" "$T/r1.headers"'
checkd "cold: the index lists the signature and the SBOM" test "$(digests "$T/r1")" = "$(sorted "$SIG" "$SBOM")"
checkd "cold: one referrers request went to the origin" test "$(asked)" = 1
checkd "cold: through the chain, the central cache asked first (with ns=)" \
  eval 'fixture_requests "$FXM" "/referrers/$M" | grep -F "?ns=127.0.0.1%3A$PF\"" | grep -qF "\"status\": 404"'
checkd "cold: the origin answered" eval 'since "$LOG" "$m0" | grep -F " ref=$M " | grep -q "endpoint=http://127.0.0.1:$PF$"' 
checkd "cold: the request line says cache=miss" test "$(cache_of "$m0")" = miss
get "$(url test/app/referrers/"$M" "$REG" "artifactType=$(enc "$SBOM_TYPE")")" "$T/r2"
checkd "filtered by artifactType: the SBOM alone" test "$(digests "$T/r2")" = "$SBOM"
checkd "filtered: OCI-Filters-Applied: artifactType" grep -qi '^OCI-Filters-Applied: artifactType' "$T/r2.headers"
get "$(url test/app/referrers/"$M")" "$T/r3"
checkd "warm: the same index, from the cache" test "$(digests "$T/r3")" = "$(sorted "$SIG" "$SBOM")"
checkd "warm: no header says a filter was applied without one" absent -i '^OCI-Filters-Applied' "$T/r3.headers"
checkd "warm and filtered: no further request to the origin" test "$(asked)" = 1
checkd "warm: cache=hit for both" test "$(cache_of "$m0")" = "miss hit hit"
code=$(httpx "$(url test/app/referrers/"$M")" -I)
checkd "HEAD answers 200 with the index's type" eval '[[ $code == 200 ]] && [[ $(header Content-Type) == "$OCI_INDEX" ]]'

# ---- the referrers' manifests and blobs: the usual routes ----------------------------------
get "$(url test/app/manifests/"$SIG")" "$T/sig"
checkd "the signature's manifest through layerd" eval '[[ $code == 200 ]] && cmp -s "$T/sig" "$T/art/sig"'
get "$(url test/app/blobs/"$SIG_LAYER")" "$T/sigl"
checkd "the signature's layer through layerd" eval '[[ $code == 200 ]] && cmp -s "$T/sigl" "$T/art/sig.layer"'
checkd "both are in layerd's cache" in_cache "$T/cache" "$SIG" "$SIG_LAYER"

# ---- after tag_ttl: asked again; then stale-if-error ------------------------------------------
push_artifact "$FX" test/app late
a0=$(asked)
sleep 3.1
m1=$(mark "$LOG")
get "$(url test/app/referrers/"$M")" "$T/r4"
checkd "after tag_ttl the origin is asked again" test "$(asked)" = $((a0 + 1))
checkd "after tag_ttl: the referrer added meanwhile is listed" test "$(digests "$T/r4")" = "$(sorted "$SIG" "$SBOM" "$LATE")"
rules '[{"path": "/referrers/", "status": 503}]'
sleep 3.1
m2=$(mark "$LOG")
get "$(url test/app/referrers/"$M")" "$T/r5"
checkd "origin failing after tag_ttl: the last index is served (stale-if-error)" \
  eval '[[ $code == 200 ]] && [[ $(digests "$T/r5") == "$(sorted "$SIG" "$SBOM" "$LATE")" ]]'
checkd "stale: cache=stale and a warning line" \
  eval '[[ $(cache_of "$m2") == stale ]] && since "$LOG" "$m2" | grep -q "serving a stale referrers index"'
get "$(url test/app/referrers/"$M" "$REG" "artifactType=$(enc "$SIG_TYPE")")" "$T/r6"
checkd "stale and filtered: the two signatures" test "$(digests "$T/r6")" = "$(sorted "$SIG" "$LATE")"

# ---- an unknown subject; what is no index is refused -----------------------------------------
# The 503s above opened the endpoint's circuit breaker (for about a second): until
# it closes again layerd answers 503 without asking.
OTHER=sha256:$(printf other | sha256sum | cut -d' ' -f1) BAD=sha256:$(printf bad | sha256sum | cut -d' ' -f1)
rules '[]'
empty_index() { get "$(url test/app/referrers/"$OTHER")" "$T/empty"; [[ $code == 200 ]]; }
checkd "a subject nothing refers to: an empty index" \
  eval 'wait_for 10 empty_index && [[ -z $(digests "$T/empty") ]] && grep -q manifests "$T/empty"'
rules '[{"path": "/referrers/", "status": 200}]'
get "$(url test/app/referrers/"$BAD")" "$T/bad"
checkd "an origin answer that is no referrers index: 503, nothing recorded" \
  eval '[[ $code == 503 ]] && [[ $(errcode "$T/bad") == UNAVAILABLE ]] && ! find "$T/cache/tags" -path "*_referrers/sha256-${BAD#sha256:}" | grep -q .'
checkd "... which the origin did send (status 200)" \
  eval 'fixture_requests "$FX" "/referrers/${BAD}" | grep -q "\"status\": 200"'
PAGED=sha256:$(printf paged | sha256sum | cut -d' ' -f1)
rules "[{\"path\": \"/referrers/\", \"headers\": {\"Link\": \"</v2/test/app/referrers/$PAGED?next=2>; rel=\\\"next\\\"\"}}]"
m3=$(mark "$LOG") p0=$(asked)
get "$(url test/app/referrers/"$PAGED")" "$T/paged"
get "$(url test/app/referrers/"$PAGED")" "$T/paged2"
checkd "an index the registry paginates: its first page served, not stored (asked each time)" \
  eval '[[ $code == 200 ]] && [[ $(asked) == $((p0 + 2)) ]] && since "$LOG" "$m3" | grep -F "$PAGED" | grep -q "cache=uncached" &&
        ! find "$T/cache/tags" -path "*_referrers/sha256-${PAGED#sha256:}" | grep -q .'
rules '[]'
get "$(url test/app/referrers/sha256:abc)" "$T/inv"
checkd "a reference that is no digest: 400 DIGEST_INVALID" eval '[[ $code == 400 ]] && [[ $(errcode "$T/inv") == DIGEST_INVALID ]]'

# ---- the origin stopped: everything the verification needs is on the node --------------------
stop "$FX_PID"
sleep 3.1
get "$(url test/app/referrers/"$M")" "$T/r7"
checkd "origin stopped: the referrers index is served" test "$(digests "$T/r7")" = "$(sorted "$SIG" "$SBOM" "$LATE")"
get "$(url test/app/manifests/"$SIG")" "$T/sig2"
checkd "origin stopped: the signature's manifest is served" eval '[[ $code == 200 ]] && cmp -s "$T/sig2" "$T/art/sig"'
get "$(url test/app/blobs/"$SIG_LAYER")" "$T/sigl2"
checkd "origin stopped: the signature's layer is served" eval '[[ $code == 200 ]] && cmp -s "$T/sigl2" "$T/art/sig.layer"'

# ---- a private repository ----------------------------------------------------------------------
fixture_start fx2 --referrers --port "$PF" || { not_ok "fixture restarts"; finish; exit 1; }
FX_PID=$FIXTURE_PID
USER_OK=alice PASS_OK='s3cret-Pa55'
fixture_json PUT "$FX/_fixture/auth" "{\"mode\": \"basic\", \"user\": \"$USER_OK\", \"password\": \"$PASS_OK\", \"private\": [\"team/\"]}"
push_image "$FX" team/app "$T/img" && push_artifact "$FX" team/app sig
# The stopped origin opened the endpoint's breaker: until it closes layerd answers 503.
private_asked() { get "$(url team/app/referrers/"$M")" "$T/p1"; [[ $code != 503 ]]; }
wait_for 10 private_asked
checkd "private, no credentials: 401 with layerd's Basic challenge" challenged "$T/p1"
get "$(url team/app/referrers/"$M")" "$T/p2" -u "$USER_OK:$PASS_OK"
checkd "private, the origin's credentials: the index" eval '[[ $code == 200 ]] && [[ $(digests "$T/p2") == "$SIG" ]]'
get "$(url team/app/referrers/"$M")" "$T/p3" -u "$USER_OK:wrong-pass"
checkd "private, wrong credentials: 401, not the cached index" eval 'challenged "$T/p3" && ! grep -q "$SIG" "$T/p3"'
get "$(url team/app/referrers/"$M")" "$T/p4"
checkd "private, no credentials again: 401, not the cached index" eval 'challenged "$T/p4" && ! grep -q "$SIG" "$T/p4"'
get "$(url team/app/referrers/"$M")" "$T/p5" -u "$USER_OK:$PASS_OK"
checkd "private, accepted credentials again: the index" eval '[[ $code == 200 ]] && [[ $(digests "$T/p5") == "$SIG" ]]'

# ---- prefetch.referrers -----------------------------------------------------------------------
fixture_call POST "$FX/_fixture/reset" >/dev/null
push_image "$FX" test/app "$T/img" && push_artifact "$FX" test/app sig && push_artifact "$FX" test/app sbom
write_spec "$T/prefetch.yaml" "$(free_port)" "$T/cache-pf" <<YAML
registries:
  "$REG":
    origin: http://127.0.0.1:$PF
    endpoints: [http://127.0.0.1:$PF]
prefetch:
  referrers: true
  images: ["$REG/test/app:v1"]
YAML
timeout 60 "$LAYERD" prefetch --once --spec "$T/prefetch.yaml" >"$T/pf.out" 2>"$T/pf.err"
rc=$?
checkd "prefetch with referrers: true succeeds" test "$rc" = 0
checkd "prefetch fetched the image, its referrers and their layers" \
  in_cache "$T/cache-pf" "$M" "$SIG" "$SBOM" "$SIG_LAYER" "$SBOM_LAYER"
sed 's/referrers: true/referrers: false/' "$T/prefetch.yaml" >"$T/prefetch-off.yaml"
sed -i "s|$T/cache-pf|$T/cache-pf-off|" "$T/prefetch-off.yaml"
timeout 60 "$LAYERD" prefetch --once --spec "$T/prefetch-off.yaml" >"$T/pf-off.out" 2>"$T/pf-off.err"
checkd "prefetch without referrers: the image alone" \
  eval 'in_cache "$T/cache-pf-off" "$M" && ! in_cache "$T/cache-pf-off" "$SIG"'

# ---- docker-registry: no Referrers API, the tag schema -----------------------------------------
registry reg "$PR"
RP=$REGISTRY_PID RB=http://127.0.0.1:$PR
check "docker-registry starts" wait_port "$PR"
# reg_blob FILE: a monolithic upload to docker-registry (POST, then PUT ?digest=).
reg_blob() {
  local d loc
  d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  loc=$(curl -s --max-time 5 -X POST -D - -o /dev/null "$RB/v2/test/app/blobs/uploads/" | tr -d '\r' | sed -n 's/^Location: *//Ip')
  [[ $loc == /* ]] && loc=$RB$loc
  [[ $(curl -s --max-time 5 -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
      -o /dev/null -w '%{http_code}' "$loc&digest=$d") == 201 ]]
}
reg_manifest() {
  [[ $(curl -s --max-time 5 -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
      --data-binary "@$2" -o /dev/null -w '%{http_code}' "$RB/v2/test/app/manifests/$1") == 201 ]]
}
pushed() {
  local d
  for d in $(tail -n +2 "$T/img.digests"); do reg_blob "$T/img/blobs/sha256/${d#sha256:}" || return 1; done
  reg_manifest v1 "$T/img/blobs/sha256/${M#sha256:}" &&
    reg_blob "$T/art/empty" && reg_blob "$T/art/sig.layer" &&
    reg_manifest "sha256-${M#sha256:}" "$T/art/sig"
}
check "an image and its signature under the tag schema's sha256-<hex> tag, pushed with curl" pushed
RR=127.0.0.1:$PR
reg_asked() { grep -c "GET /v2/test/app/referrers/" "$T/reg.log"; }
get "$(url test/app/referrers/"$M" "$RR")" "$T/d1"
checkd "no Referrers API upstream: 404 passed on" test "$code" = 404
checkd "... with a distribution error body that says why" \
  eval '[[ $(errcode "$T/d1") == MANIFEST_UNKNOWN ]] && errmsg "$T/d1" | grep -q "does not implement the referrers API"'
checkd "... and no record of an empty index" \
  eval '! find "$T/cache/tags" -path "*$PR*_referrers*" -type f | grep -q .'
get "$(url test/app/referrers/"$M" "$RR")" "$T/d2"
checkd "asked again: 404 again, from the registry (a 404 is not cached)" \
  eval '[[ $code == 404 ]] && [[ $(reg_asked) == 2 ]]'
# What clients accept (a tag is recorded for stale-if-error only from an answer any client could get).
OCI_ACCEPT=(-H "Accept: application/vnd.oci.image.manifest.v1+json, $OCI_INDEX")
OCI_ACCEPT+=(-H "Accept: application/vnd.docker.distribution.manifest.v2+json")
OCI_ACCEPT+=(-H "Accept: application/vnd.docker.distribution.manifest.list.v2+json")
get "$(url "test/app/manifests/sha256-${M#sha256:}" "$RR")" "$T/d3" "${OCI_ACCEPT[@]}"
checkd "the tag schema: the signature by its sha256-<hex> tag through the manifests route" \
  eval '[[ $code == 200 ]] && cmp -s "$T/d3" "$T/art/sig"'
get "$(url test/app/blobs/"$SIG_LAYER" "$RR")" "$T/d4"
checkd "the tag schema: the signature's layer" eval '[[ $code == 200 ]] && cmp -s "$T/d4" "$T/art/sig.layer"'
stop "$RP"
sleep 3.1
get "$(url "test/app/manifests/sha256-${M#sha256:}" "$RR")" "$T/d5" "${OCI_ACCEPT[@]}"
checkd "registry stopped: the sha256-<hex> tag is served from the cache" eval '[[ $code == 200 ]] && cmp -s "$T/d5" "$T/art/sig"'
get "$(url test/app/referrers/"$M" "$RR")" "$T/d6"
checkd "registry stopped, never an index: 503, not an empty index" test "$code" = 503

stop "$LAYERD_PID"
checkd "layerd stops cleanly" test "$status" = 0
finish
