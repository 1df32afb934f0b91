#!/usr/bin/env bash
# Prefetch (issue 9): the spec's prefetch list kept warm by `layerd serve`,
# `layerd prefetch --once` in the foreground, `layerd cache check` offline,
# and GET /v2/<name>/tags/list through the agent.
#
# The peers are real and private to this test, on free loopback ports: the
# origin, a docker-registry (distribution v2), to which skopeo pushes
# generated images and curl adds tags (semver and not) of the same manifest:
#  - test/app: one linux/amd64 image (a 4 MiB layer and a small one) tagged
#    0.9 1.0.0 1.1.0 1.2.0-rc1 2.0.0 v1.3.0 latest edge;
#  - test/multi:1: an OCI index of linux/amd64 and linux/arm64 images;
#  - test/other:1: an image no prefetch list names (for eviction).
# docker-registry 2.8 (Debian 12) ignores tags/list's n and last, so tag list
# pagination runs against tests/fixtures/upstream.py with --tags-page-max 2
# (pages of two tags and a Link, like registries that cap page sizes).
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "skopeo_copy runs skopeo as nobody"
require_tools docker-registry skopeo setpriv curl /usr/bin/python3

PO=$(free_port)  # the origin
PA=$(free_port)  # layerd
ORIGIN=http://127.0.0.1:$PO
LAYERD_URL=http://127.0.0.1:$PA
NS=ns=127.0.0.1:$PO
LOG=$T/layerd.log
RATE=2097152     # prefetch.bandwidth in the serve case: 2 MiB/s
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json

checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail "$LOG" ${LAST:+"$LAST.out" "$LAST.err"}
    echo "# --- last access-log lines of the origin" >&2
    requests "$T/origin.log" 0 | tail -n 8 | cut -c1-300 | sed 's/^/#   /' >&2
  fi
}
start_origin() { registry origin "$PO"; ORIGIN_PID=$REGISTRY_PID; wait_port "$PO" 10; }
push() { skopeo_copy --dest-tls-verify=false --preserve-digests "${@:3}" "oci:$1" "docker://127.0.0.1:$PO/$2"; }
# tag REPO TAG MANIFEST_FILE: another tag for a manifest the origin has.
tag() {
  [[ $(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $OCI_MANIFEST" \
    --data-binary "@$3" "$ORIGIN/v2/$1/manifests/$2") == 201 ]]
}
# spec FILE CACHE_DIR PREFETCH_YAML [AGENT_YAML]: a layerd spec for the origin and the
# fixture with that prefetch section.
spec() {
  cat >"$1" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PA
  cache_dir: $2
  default_registry: "127.0.0.1:$PO"
${4:-}
registries:
  "127.0.0.1:$PO":
    origin: $ORIGIN
    endpoints: [$ORIGIN]
  "127.0.0.1:$PF":
    origin: http://127.0.0.1:$PF
    endpoints: [http://127.0.0.1:$PF]
prefetch:
$3
YAML
}
# prefetch NAME SPEC: `layerd prefetch --once`, bounded; table in $T/NAME.out, progress in .err, status in $rc.
prefetch() {
  LAST=$T/$1
  timeout 60 "$LAYERD" prefetch --once --spec "$2" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
# images_of NAME: the IMAGE column of a prefetch summary table, sorted, on one line.
images_of() { awk 'NR > 1 && $1 ~ /\// { print $1 }' "$T/$1.out" | sed 's|.*/test/app:||' | sort | paste -sd' '; }
# picks NAME PREFETCH_YAML WANT: a round over a repository entry fetches exactly the tags WANT.
picks() {
  spec "$T/$1.yaml" "$T/cache-filters" "$2"
  prefetch "$1" "$T/$1.yaml"
  [[ $rc == 0 && $(images_of "$1") == "$3" ]] || { echo "# got rc=$rc tags: $(images_of "$1")" >&2; return 1; }
}
# check NAME SPEC [ARGS...]: `layerd cache check`; output in $T/NAME.out, status in $rc.
cache_check() {
  LAST=$T/$1
  timeout 60 "$LAYERD" cache check --spec "$2" "${@:3}" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
blob_path() { local h=${2#sha256:}; echo "$1/blobs/sha256/${h:0:2}/$h"; }
# origin_blob_gets MARK: the origin's blob GETs since MARK.
origin_blob_gets() { requests "$T/origin.log" "$1" | grep -c '"GET /v2/[^ ]*/blobs/' || true; }
metric() { curl -s --max-time 5 "$LAYERD_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# ---- peers and images ------------------------------------------------------------------
checkd "the origin listens" start_origin
checkd "the fixture registry listens (tags/list pages of at most 2)" fixture_start fx --tags-page-max 2
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$T/fx-config"
FXC=sha256:$(sha256sum "$T/fx-config" | cut -d' ' -f1)
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}' \
  "$OCI_MANIFEST" "$FXC" "$(stat -c %s "$T/fx-config")" >"$T/fx-manifest"
fx_content() {
  fixture_call PUT "$FX/_fixture/blob/$FXC" "$T/fx-config" || return 1
  for t in 1.0.0 1.1.0 1.2.0 2.0.0 x; do fixture_manifest "$FX" test/paged "$t" "$T/fx-manifest" >/dev/null || return 1; done
}
checkd "the fixture has test/paged tagged 1.0.0 1.1.0 1.2.0 2.0.0 x" fx_content
oci_layout "$T/A" --layers 4194304,65536 >"$T/A.digests" &&
  oci_layout "$T/M" --index --layers 65536 >"$T/M.digests" &&
  oci_layout "$T/O" --layers 307200,307200 >"$T/O.digests"
checkd "the OCI layouts are built" test $? -eq 0
mapfile -t A <"$T/A.digests"  # manifest, config, 4 MiB layer, small layer
mapfile -t M <"$T/M.digests"  # amd64 manifest, config, layer; index; arm64 manifest, config, layer
mapfile -t O <"$T/O.digests"
chmod -R a+rX "$T/A" "$T/M" "$T/O"
push "$T/A:v1" test/app:1.0.0 && push "$T/M:multi" test/multi:1 --all && push "$T/O:v1" test/other:1
checkd "skopeo pushes test/app:1.0.0, test/multi:1 (an index) and test/other:1" test $? -eq 0
MF=$T/A/blobs/sha256/${A[0]#sha256:}
for t in 0.9 1.1.0 1.2.0-rc1 2.0.0 v1.3.0 latest edge; do tag test/app "$t" "$MF" || break; done
checkd "the origin has test/app tagged 0.9 1.0.0 1.1.0 1.2.0-rc1 2.0.0 v1.3.0 latest edge" \
  test "$(curl -s "$ORIGIN/v2/test/app/tags/list" | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["tags"])))')" \
  = "0.9 1.0.0 1.1.0 1.2.0-rc1 2.0.0 edge latest v1.3.0"

# ---- 1. tag filters pick exactly the expected tags (layerd prefetch --once) --------------
R="  images:
    - repository: 127.0.0.1:$PO/test/app"
checkd "1. semver '>=1.0 <2': 1.0.0 1.1.0 v1.3.0 (no prerelease, no 0.9, no 2.0.0)" \
  picks f1 "$R
      tags: {semver: '>=1.0 <2'}" "1.0.0 1.1.0 v1.3.0"
checkd "1. semver '>=1.0 <2', newest 2: v1.3.0 1.1.0" \
  picks f2 "$R
      tags: {semver: '>=1.0 <2', newest: 2}" "1.1.0 v1.3.0"
checkd "1. regex '^1\\.': 1.0.0 1.1.0 1.2.0-rc1 (a regex alone admits prereleases)" \
  picks f3 "$R
      tags: {regex: '^1\\.'}" "1.0.0 1.1.0 1.2.0-rc1"
checkd "1. regex '^[a-z]+\$' newest 1: latest (non-versions newest by reverse lexical order)" \
  picks f4 "$R
      tags: {regex: '^[a-z]+\$', newest: 1}" "latest"
checkd "1. regex and semver together: '^v' and '^1': v1.3.0" \
  picks f5 "$R
      tags: {regex: '^v', semver: '^1'}" "v1.3.0"
checkd "1. the summary table counts every image and says ok" grep -q '^1 images: 1 ok, 0 failed' "$T/f5.out"
checkd "1. progress lines name the image, layers done/total, bytes and rate" \
  grep -qE "^\[1/1\] 127\.0\.0\.1:$PO/test/app:v1\.3\.0 linux/[a-z0-9/]+  layers 3/3  [0-9.]+ MiB  [0-9.]+ MiB/s  ok" \
  "$T/f5.err"

spec "$T/p.yaml" "$T/cache-paged" "  images:
    - repository: 127.0.0.1:$PF/test/paged
      tags: {semver: '>=1.1'}"
prefetch p "$T/p.yaml"
checkd "1. the worker follows tags/list pages (of 2): semver '>=1.1' finds 1.1.0 1.2.0 2.0.0" \
  bash -c '[[ $1 == 0 && $(awk "NR > 1 && \$1 ~ /paged:/ { sub(/.*:/, \"\", \$1); print \$1 }" "$2" | sort | paste -sd" ") == "1.1.0 1.2.0 2.0.0" ]]' \
  _ "$rc" "$T/p.out"

# ---- 2. a multi-arch index: only the platforms asked for ---------------------------------
spec "$T/m.yaml" "$T/cache-multi" "  platforms: [linux/arm64]
  images: [127.0.0.1:$PO/test/multi:1]"
prefetch m "$T/m.yaml"
checkd "2. prefetch of the index for linux/arm64 succeeds" test "$rc" = 0
checkd "2. the index, the arm64 manifest, config and layer are in the cache" in_cache "$T/cache-multi" "${M[@]:3:4}"
none_in_cache() { local dir=$1 d; shift; for d in "$@"; do ! in_cache "$dir" "$d" || return 1; done; }
checkd "2. nothing of the amd64 image is" none_in_cache "$T/cache-multi" "${M[@]:0:3}"
spec "$T/m2.yaml" "$T/cache-multi" "  images:
    - image: 127.0.0.1:$PO/test/multi:1
      platforms: [linux/s390x]"
prefetch m2 "$T/m2.yaml"
checkd "2. a platform the index lacks fails the image (exit 1) and says so" \
  bash -c '[[ $1 == 1 ]] && grep -q "the index has no manifest for linux/s390x" "$2"' _ "$rc" "$T/m2.out"

# ---- 3. layerd serve: readiness, bandwidth, tags/list, pull after prefetch, eviction -----
spec "$T/s.yaml" "$T/cache" "  bandwidth: 2MiB
  wait_ready: true
  wait_ready_timeout: 60s
  images: [127.0.0.1:$PO/test/app:1.0.0]" "  cache_max_size: 1MiB"
mo=$(mark "$T/origin.log")
layerd_serve "$LOG" "$T/s.yaml"
L1=$LAYERD_PID
checkd "3. layerd serve listens" wait_port "$PA" 10
saw_prefetching() { [[ $(http GET "$LAYERD_URL/readyz") == 503 ]] && grep -q prefetching "$T/body"; }
checkd "3. /readyz answers 503 'prefetching' while the first round runs (wait_ready)" wait_for 5 saw_prefetching
ready() { [[ $(http GET "$LAYERD_URL/readyz") == 200 ]]; }
checkd "3. /readyz answers 200 once the first round finished" wait_for 30 ready
checkd "3. the round logged one line for the image (registry, repo, ref, digest, platforms, blobs, bytes, ms)" \
  grep -qE "^<6>prefetch ns=127\.0\.0\.1:$PO repo=test/app ref=1\.0\.0 digest=${A[0]} platforms=linux/[a-z0-9/]+ blobs=3 fetched=3 present=0 bytes=[0-9]+ fetched_bytes=[0-9]+ ms=[0-9]+$" \
  "$LOG"
checkd "3. every blob of the image is in the cache" in_cache "$T/cache" "${A[@]}"
line=$(grep -E "^<6>downloaded ns=127\.0\.0\.1:$PO repo=test/app digest=${A[2]} " "$LOG")
bytes=$(sed -n 's/.* bytes=\([0-9]*\) .*/\1/p' <<<"$line")
ms=$(sed -n 's/.* ms=\([0-9]*\) .*/\1/p' <<<"$line")
rate=$((bytes * 1000 / (ms > 0 ? ms : 1)))
echo "# 3. the 4 MiB layer: $bytes bytes in $ms ms = $rate B/s (limit $RATE B/s)"
checkd "3. the bandwidth limit holds: the layer came at 2 MiB/s +-20 % ($rate B/s)" \
  test "$rate" -ge $((RATE * 8 / 10)) -a "$rate" -le $((RATE * 12 / 10))
checkd "3. metrics: one round, one image, its bytes, the last round's duration and errors" bash -c '
  [[ $1 == 1 && $2 == 1 && $3 -ge 4194304 && -n $4 && $5 == 0 ]]' _ "$(metric layerd_prefetch_rounds_total)" \
  "$(metric layerd_prefetch_images_total)" "$(metric layerd_prefetch_bytes_total)" \
  "$(metric layerd_prefetch_last_round_duration_seconds)" "$(metric layerd_prefetch_last_round_errors)"
checkd "3. metrics: the prefetched blobs are pinned" test "$(metric layerd_cache_pinned)" -ge 3

# tags/list through the agent
checkd "3. GET /v2/test/app/tags/list through layerd lists every tag" bash -c '
  [[ $(curl -s --max-time 5 "$1/v2/test/app/tags/list?$2" | python3 -c "import json,sys; print(\" \".join(sorted(json.load(sys.stdin)[\"tags\"])))") == "0.9 1.0.0 1.1.0 1.2.0-rc1 2.0.0 edge latest v1.3.0" ]]' _ "$LAYERD_URL" "$NS"
mt=$(mark "$T/origin.log")
http GET "$LAYERD_URL/v2/test/app/tags/list?n=3&last=1.1.0&$NS" >/dev/null
checkd "3. n and last go on to the origin" \
  bash -c 'grep -qF "\"GET /v2/test/app/tags/list?n=3&last=1.1.0 HTTP" <<<"$1"' _ "$(requests "$T/origin.log" "$mt")"
FNS=ns=127.0.0.1:$PF
link_path() { header Link | sed -n 's/^<\(.*\)>; rel="next"$/\1/p'; }
page_is() { python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tags"]; sys.exit(t != sys.argv[2:])' "$T/body" "$@"; }
paged() {
  [[ $(http GET "$LAYERD_URL/v2/test/paged/tags/list?$FNS") == 200 ]] && page_is 1.0.0 1.1.0 || return 1
  [[ $(link_path) == "/v2/test/paged/tags/list?last=1.1.0&$FNS" ]] || { echo "# link: $(header Link)" >&2; return 1; }
  [[ $(http GET "$LAYERD_URL$(link_path)") == 200 ]] && page_is 1.2.0 2.0.0 || return 1
  [[ $(http GET "$LAYERD_URL$(link_path)") == 200 ]] && page_is x && [[ -z $(header Link) ]]
}
checkd "3. a paginated list through layerd: pages of 2, Links back at layerd, the last page without" paged
code=$(http GET "$LAYERD_URL/v2/test/paged/tags/list?n=3&$FNS")
checkd "3. n is passed on and kept in the next page's Link" \
  bash -c '[[ $1 == 200 && $2 == "</v2/test/paged/tags/list?n=3&last=1.1.0&$3>; rel=\"next\"" ]]' _ "$code" "$(header Link)" "$FNS"
code=$(http GET "$LAYERD_URL/v2/127.0.0.1_$PF/test/paged/tags/list?n=3")
checkd "3. without ns, by the fixture's registry namespace: its list, the next page's Link at the namespaced path" \
  bash -c '[[ $1 == 200 && $2 == "</v2/127.0.0.1_$3/test/paged/tags/list?n=3&last=1.1.0>; rel=\"next\"" ]]' _ \
  "$code" "$(header Link)" "$PF"
http GET "$LAYERD_URL/v2/test/app/tags/list?n=5&$NS" >/dev/null
mt=$(mark "$T/origin.log")
http GET "$LAYERD_URL/v2/test/app/tags/list?n=5&$NS" >/dev/null
checkd "3. a page asked again within 30 s is answered from memory (no origin request)" \
  eval '(($(requests "$T/origin.log" 0 | grep -c "tags/list") > 0)) && test "$(requests "$T/origin.log" "$mt" | grep -c "tags/list")" = 0'
checkd "3. a repository the origin does not know: 404 NAME_UNKNOWN" \
  bash -c '[[ $(curl -s -o "$2" -w "%{http_code}" "$1/v2/test/nothing/tags/list?$3") == 404 ]] && grep -q NAME_UNKNOWN "$2"' \
  _ "$LAYERD_URL" "$T/b404" "$NS"
checkd "3. n=0 is refused (400)" test "$(http GET "$LAYERD_URL/v2/test/app/tags/list?n=0&$NS")" = 400

# a pull after prefetch costs the origin no blob request
m=$(mark "$T/origin.log")
for d in "${A[@]:1}"; do curl -s --max-time 10 -o /dev/null "$LAYERD_URL/v2/test/app/blobs/$d?$NS" || break; done
code=$(http GET "$LAYERD_URL/v2/test/app/manifests/1.0.0?$NS")
checkd "3. the manifest by tag comes from layerd" test "$code" = 200
checkd "3. a pull after prefetch makes zero upstream blob requests (the prefetch's are in the log)" \
  eval '(($(origin_blob_gets 0) > 0)) && test "$(origin_blob_gets "$m")" = 0'

# eviction: the cache limit is 1 MiB; test/other is not listed, its ~600 KiB go, the prefetched 4 MiB stay
for d in "${O[@]:1}"; do curl -s --max-time 10 -o /dev/null "$LAYERD_URL/v2/test/other/blobs/$d?$NS"; done
gone() { ! in_cache "$T/cache" "${O[2]}" && ! in_cache "$T/cache" "${O[3]}"; }
checkd "3. under a 1 MiB limit, the blobs of an unlisted image are evicted" wait_for 10 gone
checkd "3. every prefetched blob survives eviction" in_cache "$T/cache" "${A[@]}"
stop "$L1"
checkd "3. layerd serve stops cleanly" test "$status" = 0
checkd "3. the pins file lists the prefetched blobs" bash -c '
  for d in "${@:2}"; do grep -qxF "$d" "$1" || exit 1; done' _ "$T/cache/prefetch.pins" "${A[@]}"
"$LAYERD" cache ls --cache-dir "$T/cache" >"$T/ls.out" 2>&1
checkd "3. layerd cache ls shows them pinned" bash -c '
  for d in "${@:2}"; do grep -qE "^$d [0-9]+ pinned$" "$1" || exit 1; done' _ "$T/ls.out" "${A[@]}"
"$LAYERD" cache gc --spec "$T/s.yaml" >"$T/gc.out" 2>&1
checkd "3. layerd cache gc (1 MiB limit) leaves them" in_cache "$T/cache" "${A[@]}"

# ---- 4. cache check: fails on a missing or damaged blob, passes after prefetch -----------
cache_check c1 "$T/s.yaml"
checkd "4. cache check passes after the prefetch (exit 0)" test "$rc" = 0
checkd "4. it reports the image, its platform and every blob present" \
  grep -qE "^ok +127\.0\.0\.1:$PO/test/app:1\.0\.0 - blobs 3/3$" "$T/c1.out"
rm -f "$(blob_path "$T/cache" "${A[3]}")"
cache_check c2 "$T/s.yaml"
checkd "4. with a layer missing, cache check fails (exit 1) and names it" \
  bash -c '[[ $1 == 1 ]] && grep -qE "^MISSING .*test/app:1\.0\.0 - blobs 2/3 first_missing $2" "$3"' _ "$rc" "${A[3]}" "$T/c2.out"
cache_check c3 "$T/s.yaml" "127.0.0.1:$PO/test/other:1"
checkd "4. an image never fetched (IMAGE argument): fails, manifest not in the cache" \
  bash -c '[[ $1 == 1 ]] && grep -q "manifest: not in the cache" "$2"' _ "$rc" "$T/c3.out"
prefetch p1 "$T/s.yaml"
checkd "4. layerd prefetch --once fetches what was missing (1 blob)" \
  bash -c '[[ $1 == 0 ]] && grep -qE "test/app:1\.0\.0 .* 3/3 +1 " "$2"' _ "$rc" "$T/p1.out"
cache_check c4 "$T/s.yaml"
checkd "4. cache check passes again" test "$rc" = 0
printf 'XXXX' | dd of="$(blob_path "$T/cache" "${A[3]}")" bs=1 seek=100 conv=notrunc status=none
cache_check c5 "$T/s.yaml"
checkd "4. a damaged blob (bytes changed on disk) fails the check" \
  bash -c '[[ $1 == 1 ]] && grep -q "damaged in the cache" "$2"' _ "$rc" "$T/c5.out"
# A manifest that is still valid JSON but not the bytes its digest names.
printf ' ' >>"$(blob_path "$T/cache" "${A[0]}")"
cache_check c5m "$T/s.yaml"
checkd "4. a damaged manifest (a byte appended, still JSON) fails the check too" \
  bash -c '[[ $1 == 1 ]] && grep -qE "manifest.*damaged in the cache" "$2"' _ "$rc" "$T/c5m.out"
cache_check c6 "$T/m.yaml" --platform linux/arm64 "127.0.0.1:$PO/test/multi:1"
checkd "4. the multi-arch image checks per platform (arm64 complete)" \
  bash -c '[[ $1 == 0 ]] && grep -qE "^ok +.*test/multi:1 linux/arm64 blobs 2/2$" "$2"' _ "$rc" "$T/c6.out"
spec "$T/mrepo.yaml" "$T/cache-filters" "$R
      tags: {semver: '>=1.0 <2'}"
cache_check c7 "$T/mrepo.yaml"
checkd "4. a repository entry resolves through the tags the node recorded (3 images)" \
  bash -c '[[ $1 == 0 ]] && grep -q "^3 images checked: 3 complete, 0 not" "$2"' _ "$rc" "$T/c7.out"

# ---- 5. the origin goes away mid-round; the next round completes the work ----------------
spec "$T/o.yaml" "$T/cache-outage" "  bandwidth: 1MiB
  images: [127.0.0.1:$PO/test/app:1.0.0]"
LAST=$T/o1
timeout 60 "$LAYERD" prefetch --once --log-level info --spec "$T/o.yaml" >"$T/o1.out" 2>"$T/o1.err" &
BG=$!
PIDS+=("$BG")
# The config comes first, then the layers at 1 MiB/s: a second into them, the origin is
# killed (the kernel may already hold the rest of the 4 MiB layer in socket buffers, so
# which blob fails varies: a layer does).
checkd "5. the round has fetched the config and goes on with the layers" \
  wait_for 10 grep -q "^<6>downloaded .* digest=${A[1]} " "$T/o1.err"
sleep 1
kill -KILL "$ORIGIN_PID"; wait_exit "$ORIGIN_PID" 10
wait_exit "$BG" 60
checkd "5. the round fails (exit 1) with the origin gone" test "$status" = 1
checkd "5. the cache holds no partial or wrong blob (cache verify: 0 quarantined)" \
  bash -c '"$1" cache verify --cache-dir "$2" | grep -q ", 0 quarantined$"' _ "$LAYERD" "$T/cache-outage"
failed=$(sed -n 's/.*FAILED: blob \(sha256:[0-9a-f]*\):.*/\1/p' "$T/o1.out" | head -n 1)
checkd "5. the blob the round failed on is named, and not in the store" \
  bash -c '[[ -n $1 ]] && ! test -e "$2"' _ "$failed" "$(blob_path "$T/cache-outage" "${failed:-sha256:x}")"
checkd "5. no partial download is left behind (tmp/ is empty)" \
  bash -c '[[ -z $(ls -A "$1/tmp" 2>/dev/null) ]]' _ "$T/cache-outage"
cache_check o2 "$T/o.yaml"
checkd "5. cache check reports the image incomplete" test "$rc" = 1
checkd "5. the origin is back" start_origin
prefetch o3 "$T/o.yaml"
checkd "5. the next round completes the work" test "$rc" = 0
cache_check o4 "$T/o.yaml"
checkd "5. cache check passes" test "$rc" = 0

# The same with a download cut in the middle, deterministically: the fixture breaks every
# answer for the layer after 300 000 bytes (Range resumes included).
head -c 1048576 /dev/urandom >"$T/fx-layer"
FXL=sha256:$(sha256sum "$T/fx-layer" | cut -d' ' -f1)
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1048576}]}' \
  "$OCI_MANIFEST" "$FXC" "$(stat -c %s "$T/fx-config")" "$FXL" >"$T/fx-big"
fixture_call PUT "$FX/_fixture/blob/$FXL" "$T/fx-layer" && fixture_manifest "$FX" test/big 1 "$T/fx-big" >/dev/null &&
  fixture_json PUT "$FX/_fixture/rules" "[{\"path\": \"/blobs/$FXL\", \"close_after\": 300000}]"
checkd "5. the fixture serves test/big:1 and cuts its layer after 300 000 bytes" test $? -eq 0
spec "$T/cut.yaml" "$T/cache-cut" "  images: [127.0.0.1:$PF/test/big:1]"
prefetch cut1 "$T/cut.yaml"
checkd "5. a round whose layer download breaks every time fails on that layer" \
  bash -c '[[ $1 == 1 ]] && grep -q "FAILED: blob $2" "$3"' _ "$rc" "$FXL" "$T/cut1.out"
checkd "5. the broken download left nothing: not in the store, tmp/ empty, 0 quarantined" bash -c '
  ! test -e "$1" && [[ -z $(ls -A "$2/tmp" 2>/dev/null) ]] && "$3" cache verify --cache-dir "$2" | grep -q ", 0 quarantined$"' \
  _ "$(blob_path "$T/cache-cut" "$FXL")" "$T/cache-cut" "$LAYERD"
fixture_json PUT "$FX/_fixture/rules" "[]"
prefetch cut2 "$T/cut.yaml"
checkd "5. the next round (the fault gone) completes, and cache check passes" \
  bash -c '[[ $1 == 0 ]] && "$2" cache check --spec "$3" >/dev/null' _ "$rc" "$LAYERD" "$T/cut.yaml"

# ---- 6. a client joining a prefetch download lifts its limit; a reload unpins ------------
spec "$T/r.yaml" "$T/cache-reload" "  bandwidth: 256KiB
  images: [127.0.0.1:$PO/test/app:1.0.0]" "  cache_max_size: 1MiB"
LOG=$T/layerd-r.log
layerd_serve "$LOG" "$T/r.yaml"
L2=$LAYERD_PID
checkd "6. layerd serve listens" wait_port "$PA" 10
# At 256 KiB/s the 4 MiB layer alone would take 16 s.
checkd "6. the round fetched the config and is on the 4 MiB layer" \
  wait_for 10 grep -q "^<6>downloaded .* digest=${A[1]} " "$LOG"
t=$(curl -s --max-time 30 -o "$T/big" -w '%{time_total}' "$LAYERD_URL/v2/test/app/blobs/${A[2]}?$NS")
echo "# 6. a client's GET of the layer being prefetched took $t s"
checkd "6. the client joined the prefetch download (cache=join)" \
  grep -qE "^<6>request method=GET .* ref=${A[2]} status=200 .* cache=join " "$LOG"
checkd "6. and got the whole layer far faster than the prefetch rate allows (< 6 s, not 16 s)" \
  bash -c '[[ $(sha256sum "$1" | cut -d" " -f1) == "${2#sha256:}" ]] && python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 6)" "$3"' \
  _ "$T/big" "${A[2]}" "$t"
round_done() { grep -q "^<6>prefetch round done images=1 ok=1" "$LOG"; }
checkd "6. the round completes" wait_for 30 round_done
checkd "6. the image is pinned (manifest, config, 2 layers)" test "$(metric layerd_cache_pinned)" = 4
# The new list also names an image the origin does not have: gone for good,
# it must not keep what the list dropped pinned (only an upstream that could
# not be asked does).
spec "$T/r.yaml" "$T/cache-reload" "  platforms: [linux/arm64]
  images: [127.0.0.1:$PO/test/multi:1, 127.0.0.1:$PO/test/nosuch:1]" "  cache_max_size: 1MiB"
kill -HUP "$L2"
second_round() { grep -q "^<4>prefetch round done images=2 ok=1 failed=1 " "$LOG"; }
checkd "6. SIGHUP with another list starts a round at once (one image of it does not exist)" wait_for 20 second_round
checkd "6. only the new list is pinned (index, arm64 manifest, config, layer)" test "$(metric layerd_cache_pinned)" = 4
checkd "6. the pins file names the new list only" \
  bash -c 'grep -qxF "$2" "$1" && ! grep -qxF "$3" "$1"' _ "$T/cache-reload/prefetch.pins" "${M[3]}" "${A[2]}"
unpinned_gone() { ! in_cache "$T/cache-reload" "${A[2]}"; }
checkd "6. the unlisted image's 4 MiB layer is evicted under the 1 MiB limit" wait_for 40 unpinned_gone
checkd "6. the listed image stays" in_cache "$T/cache-reload" "${M[@]:3:4}"
stop "$L2"
checkd "6. layerd serve stops cleanly" test "$status" = 0

# ---- 7. a pins file that cannot be read never keeps the agent from serving -------------
mkdir -p "$T/cache-badpins/prefetch.pins"  # a directory where the file should be
spec "$T/bp.yaml" "$T/cache-badpins" "  images: [127.0.0.1:$PO/test/app:1.0.0]"
LOG=$T/layerd-bp.log
layerd_serve "$LOG" "$T/bp.yaml"
L3=$LAYERD_PID
checkd "7. with a directory in place of prefetch.pins, layerd serve starts and answers" \
  wait_for 10 bash -c '[[ $(curl -s -o /dev/null -w "%{http_code}" "$1/v2/") == 200 ]]' _ "$LAYERD_URL"
checkd "7. ... and says it ignores the file" grep -q '^<4>ignoring the prefetch pins file=' "$LOG"
stop "$L3"
checkd "7. layerd serve stops cleanly" test "$status" = 0

finish
