#!/usr/bin/env bash
# Real containerd (Debian 12: containerd 1.6) reads the hosts.toml files that
# `layerd hosts` and `layerd serve --write-hosts` write, and tries the hosts in
# our order: layerd, the spec's endpoints, the origin.
#
# The peers are real and private to this test: a containerd with its own
# root, state and socket under $T, docker-registry (distribution v2) instances
# on free loopback ports, skopeo to push a generated image. `ctr content fetch`
# pulls and verifies content without unpacking. In containerd 1.6 it is ctr,
# not the daemon, that reads --hosts-dir (with the same code the CRI plugin
# uses for config_path); the daemon stores and verifies the content.
#
# The registry is named "127.0.0.1:$PO" with its origin on that port, where
# nothing listens: a pull that succeeds went through the hosts file.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "containerd needs root"
for b in containerd ctr docker-registry skopeo setpriv curl "$PY"; do
  if ! command -v "$b" >/dev/null; then
    not_ok "$b is installed (make deps)"
    finish
    exit 1
  fi
done

# ---- helpers -------------------------------------------------------------------------
LAST=  # the last fetch's output prefix, for diagnostics
diag() {
  local f
  for f in "$T/ctrd/log" "$T/mirror.log" "$T/other.log" "$T/layerd.log" ${LAST:+"$LAST.err"}; do
    [[ -s $f ]] || continue
    echo "# --- last lines of $f"
    tail -n 15 "$f" | cut -c1-400 | sed 's/^/#   /'
  done >&2
}
# checkd DESCRIPTION COMMAND...: check, with the peers' logs on stderr when it fails.
checkd() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; diag; fi; }

# fetch NAMESPACE HOSTS_DIR: pulls $REF into a containerd namespace of its own.
# The content store is isolated per namespace (content_sharing_policy), so
# every fetch downloads every blob again. Output in $LAST.out and $LAST.err.
fetch() {
  LAST=$T/fetch-$1
  timeout 60 ctr --debug -a "$SOCK" -n "$1" content fetch --hosts-dir "$2" "$REF" >"$LAST.out" 2>"$LAST.err"
}
# resolve_order FILE: the hosts ctr tried to resolve the tag on, in order.
resolve_order() { grep -o 'msg=resolving host="[^"]*"' "$1" | sed 's/.*host="//; s/"$//' | paste -sd' '; }
# image_is NAMESPACE: the image record names the manifest we pushed.
image_is() {
  [[ $(timeout 10 ctr -a "$SOCK" -n "$1" images ls 2>/dev/null | awk -v r="$REF" '$1 == r { print $3 }') == "$MDIGEST" ]]
}
# all_blobs NAMESPACE: manifest, config and both layers are in the content store.
all_blobs() {
  local d
  timeout 10 ctr -a "$SOCK" -n "$1" content ls -q >"$T/content-$1" 2>/dev/null || return 1
  for d in $(cat "$T/digests"); do grep -qxF "$d" "$T/content-$1" || return 1; done
}
# manifest_bytes NAMESPACE: containerd's copy of the manifest is the one we built.
manifest_bytes() {
  timeout 10 ctr -a "$SOCK" -n "$1" content get "$MDIGEST" 2>/dev/null | cmp -s - "$T/layout/blobs/sha256/${MDIGEST#sha256:}"
}
# spec FILE ENDPOINT_PORT...: a layerd-form spec for the registry 127.0.0.1:$PO.
spec() {
  local f=$1 p; shift
  {
    echo "version: 1"
    echo "agent:"
    echo "  listen: 127.0.0.1:$PA"
    echo "  cache_dir: $T/cache"
    echo "registries:"
    echo "  \"127.0.0.1:$PO\":"
    echo "    origin: http://127.0.0.1:$PO"
    echo "    endpoints:"
    for p in "$@"; do echo "      - http://127.0.0.1:$p"; done
  } >"$f"
}

PM=$(free_port)  # R_mirror: a registry that has the image
PX=$(free_port)  # R_other: a registry without it
PO=$(free_port)  # the origin: closed
PA=$(free_port)  # layerd
PC=$(free_port)  # another closed port
REF=127.0.0.1:$PO/test/app:v1

# ---- peers ---------------------------------------------------------------------------
registry mirror "$PM"
registry other "$PX"

containerd_start "$T/ctrd"

check "docker-registry R_mirror listens" wait_port "$PM" 10
check "docker-registry R_other listens" wait_port "$PX" 10
checkd "containerd answers on its own socket" wait_for 20 ctrd_up
checkd "containerd started without errors" \
  eval 'grep -q "level=info" "$T/ctrd/log" && absent -E "level=(error|fatal)" "$T/ctrd/log"'

# The test image: an OCI layout, two layers of random bytes, pushed to R_mirror.
oci_layout "$T/layout" >"$T/digests"
check "the OCI layout is built" test $? -eq 0
MDIGEST=$(head -n 1 "$T/digests")
chmod -R a+rX "$T/layout"
skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/layout:v1" "docker://127.0.0.1:$PM/test/app:v1"
checkd "skopeo pushes the image to R_mirror" test $? -eq 0
curl -s --max-time 5 -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$T/headers" \
  "http://127.0.0.1:$PM/v2/test/app/manifests/v1"
checkd "R_mirror serves the tag under the pushed manifest digest" \
  grep -qi "^Docker-Content-Digest: $MDIGEST" "$T/headers"

# ---- 1. layerd down, origin closed: containerd goes on to the mirror -----------------
spec "$T/spec.yaml" "$PM"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/spec.yaml" --dir "$T/hosts" >"$T/out" 2>"$T/err"
checkd "layerd hosts exits 0" test $? -eq 0
F=$T/hosts/127.0.0.1:$PO/hosts.toml
checkd "layerd hosts writes 127.0.0.1:$PO/hosts.toml" test -f "$F"
# containerd_version: auto (the spec names none): the containerd under test, asked on its socket.
CTRD_VERSION=$(containerd --version | awk '{ print $3 }' | grep -oE '^v?[0-9]+\.[0-9]+(\.[0-9]+)?' | sed 's/^v//')
checkd "the file is rendered for the containerd on \$SOCK ($CTRD_VERSION)" \
  grep -qF "for containerd $CTRD_VERSION. Tried in order" "$F"
checkd "layerd hosts says where the version came from" grep -qF "source=socket" "$T/err"

m=$(mark "$T/mirror.log")
fetch c1 "$T/hosts"
checkd "ctr content fetch succeeds with layerd and the origin closed" test $? -eq 0
checkd "ctr loaded our hosts directory" grep -qF "msg=\"loading host directory\" dir=\"$T/hosts/127.0.0.1:$PO\"" "$LAST.err"
checkd "containerd reports no error decoding our hosts.toml" \
  eval 'grep -qF "msg=\"loading host directory\"" "$LAST.err" && absent "failed to decode hosts.toml" "$LAST.err"'
checkd "tried layerd first, then R_mirror" test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PM"
checkd "layerd's closed port made containerd try the next host" \
  grep -q "trying next host.*127.0.0.1:$PA.*connection refused.*host=\"127.0.0.1:$PA\"" "$LAST.err"
checkd "the origin was never dialled (layerd's closed port was)" \
  eval 'grep -q "dial tcp 127.0.0.1:$PA" "$LAST.err" && absent "dial tcp 127.0.0.1:$PO" "$LAST.err"'
checkd "the image record names the pushed manifest digest" image_is c1
checkd "every blob is in containerd's content store" all_blobs c1
checkd "containerd's manifest is byte for byte the pushed one" manifest_bytes c1

# ---- 2. order: R_other after R_mirror gets nothing; before it, a 404 and on ----------
requests "$T/mirror.log" "$m" >"$T/req"
checkd "R_mirror logged containerd's HEAD of the tag (with ?ns=)" \
  grep -qF "\"HEAD /v2/test/app/manifests/v1?ns=127.0.0.1%3A$PO HTTP/1.1\" 200" "$T/req"
checkd "R_mirror served every blob" test "$(grep -c '"GET /v2/test/app/blobs/sha256:[0-9a-f]*?ns=[^ ]* HTTP/1.1" 200' "$T/req")" -eq 3

spec "$T/spec-after.yaml" "$PM" "$PX"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/spec-after.yaml" --dir "$T/hosts-after" >/dev/null 2>&1
checkd "layerd hosts writes the spec with R_other last" test $? -eq 0
m=$(mark "$T/mirror.log"); x=$(mark "$T/other.log")
fetch c2a "$T/hosts-after"
checkd "R_other listed after R_mirror: fetch succeeds" test $? -eq 0
checkd "R_other listed after R_mirror: resolved at R_mirror" test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PM"
checkd "R_other listed after R_mirror: R_mirror got the requests" test -n "$(requests "$T/mirror.log" "$m")"
checkd "R_other listed after R_mirror: R_other got no request" test -z "$(requests "$T/other.log" "$x")"
checkd "R_other listed after R_mirror: image complete" all_blobs c2a

spec "$T/spec-before.yaml" "$PX" "$PM"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/spec-before.yaml" --dir "$T/hosts-before" >/dev/null 2>&1
checkd "layerd hosts writes the spec with R_other first" test $? -eq 0
m=$(mark "$T/mirror.log"); x=$(mark "$T/other.log")
fetch c2b "$T/hosts-before"
checkd "R_other listed before R_mirror: fetch succeeds" test $? -eq 0
checkd "R_other listed before R_mirror: tried layerd, R_other, R_mirror" \
  test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PX 127.0.0.1:$PM"
checkd "R_other answered 404 to the tag" \
  grep -qF "\"HEAD /v2/test/app/manifests/v1?ns=127.0.0.1%3A$PO HTTP/1.1\" 404" <(requests "$T/other.log" "$x")
checkd "containerd moved on to R_mirror after the 404" \
  grep -qF "\"HEAD /v2/test/app/manifests/v1?ns=127.0.0.1%3A$PO HTTP/1.1\" 200" <(requests "$T/mirror.log" "$m")
checkd "R_other listed before R_mirror: image complete" all_blobs c2b

# ---- 4. a broken chain fails (so the successes above mean something) ------------------
spec "$T/spec-broken.yaml" "$PC"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/spec-broken.yaml" --dir "$T/hosts-broken" >/dev/null 2>&1
checkd "layerd hosts writes the spec whose only endpoint is closed" test $? -eq 0
fetch c4 "$T/hosts-broken"; rc=$?
checkd "fetch with every host closed fails, promptly" bash -c "test $rc -ne 0 && test $rc -ne 124"
checkd "it tried the closed endpoint from our file" grep -q "dial tcp 127.0.0.1:$PC: connect: connection refused" "$LAST.err"
checkd "the failed fetch stored no image" bash -c "! timeout 10 ctr -a '$SOCK' -n c4 images ls -q | grep -q ."
mkdir -p "$T/no-hosts"
fetch c4b "$T/no-hosts"; rc=$?
checkd "without our hosts file the fetch fails (only the closed origin)" bash -c "test $rc -ne 0 && test $rc -ne 124"

# ---- 3 and 5. layerd serving the pull; --write-hosts and SIGHUP ------------------------
cp "$T/spec.yaml" "$T/serve.yaml"
"$LAYERD" serve --spec "$T/serve.yaml" --listen "127.0.0.1:$PA" --cache-dir "$T/cache" \
  --containerd-socket "$SOCK" --write-hosts "$T/hosts2" --log-level debug >"$T/layerd.log" 2>&1 &
pid=$!; PIDS+=("$pid")
checkd "layerd serve listens" wait_port "$PA" 10
F2=$T/hosts2/127.0.0.1:$PO/hosts.toml
checkd "serve --write-hosts writes the hosts file at start-up" wait_for 10 test -f "$F2"
checkd "serve asked containerd's socket for its version" grep -qF "containerd version=$CTRD_VERSION source=socket" "$T/layerd.log"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/serve.yaml" --dir "$T/ref" --listen "127.0.0.1:$PA" >/dev/null 2>&1
checkd "serve writes the same files as layerd hosts" diff -r "$T/ref" "$T/hosts2"
checkd "... and the same file as case 1" cmp "$F" "$F2"

l=$(mark "$T/layerd.log"); m=$(mark "$T/mirror.log")
fetch c3 "$T/hosts"
checkd "with layerd serving, the fetch succeeds" test $? -eq 0
checkd "containerd did not need its next host" ctr_no_next_host "$LAST.err"
checkd "layerd served containerd's request for the tag, with its ns" \
  grep -qE "request method=(HEAD|GET) ns=127\.0\.0\.1:$PO repo=test/app ref=v1 status=200" <(since "$T/layerd.log" "$l")
checkd "layerd served the blobs" \
  grep -qE "request method=GET ns=127\.0\.0\.1:$PO repo=test/app ref=sha256:[0-9a-f]{64} status=200" <(since "$T/layerd.log" "$l")
checkd "layerd fetched them from R_mirror (its chain)" test -n "$(requests "$T/mirror.log" "$m")"
checkd "the image record names the pushed manifest digest (layerd up)" image_is c3
checkd "every blob is in containerd's content store (layerd up)" all_blobs c3

# Reload with R_other added in front: the file follows, and the next pull uses it.
cp "$F2" "$T/hosts2.before"
spec "$T/serve.yaml" "$PX" "$PM"
kill -HUP "$pid"
checkd "after SIGHUP the hosts file names the added endpoint" wait_for 10 grep -qF "\"http://127.0.0.1:$PX\"" "$F2"
"$LAYERD" hosts --containerd-socket "$SOCK" --spec "$T/serve.yaml" --dir "$T/ref2" --listen "127.0.0.1:$PA" >/dev/null 2>&1
checkd "the reloaded file equals layerd hosts output for the edited spec" diff -r "$T/ref2" "$T/hosts2"
x=$(mark "$T/other.log")
fetch c5 "$T/hosts2"
checkd "a pull after the reload succeeds" test $? -eq 0
# layerd's own chain follows the reload: a tag it has not seen goes to R_other first.
code=$(http GET "http://127.0.0.1:$PA/v2/test/app/manifests/unknown-tag?ns=127.0.0.1:$PO")
# R_other and R_mirror say 404, the origin is closed: no final answer, a fast 503.
checkd "an unknown tag is answered at once (503: the origin is down)" test "$code" = 503
checkd "layerd asked the added endpoint (it reloaded its chain)" \
  grep -q "/v2/test/app/manifests/unknown-tag" <(requests "$T/other.log" "$x")

# A broken spec on SIGHUP: rejected, the file untouched, serve still answering.
snapshot() { stat -c '%i %s %.9Y' "$F2"; md5sum <"$F2"; }
before=$(snapshot)
printf 'registries: {"127.0.0.1:%s": {mirror: maybe}}\n' "$PO" >"$T/serve.yaml"
l=$(mark "$T/layerd.log")
kill -HUP "$pid"
# wait_for re-runs its command, which reads the log afresh each time.
rejected() { since "$T/layerd.log" "$l" | grep -q '^<3>'; }
checkd "a broken spec on SIGHUP is logged as an error" wait_for 10 rejected
checkd "the hosts file is untouched (inode, size, mtime, content)" test "$before" = "$(snapshot)"
code=$(http GET "http://127.0.0.1:$PA/v2/")
checkd "serve still answers GET /v2/" test "$code" = 200

kill -TERM "$pid"
wait_exit "$pid" 10; checkd "SIGTERM stops serve with status 0" test "$status" = 0

finish
