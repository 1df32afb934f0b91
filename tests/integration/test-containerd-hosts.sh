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

if [[ $(id -u) -ne 0 ]]; then
  echo "1..0 # SKIP containerd needs root"
  exit 0
fi
for b in containerd ctr docker-registry skopeo setpriv curl "$PY"; do
  if ! command -v "$b" >/dev/null; then
    not_ok "$b is installed (make deps)"
    finish
    exit 1
  fi
done

# ---- helpers -------------------------------------------------------------------------
# wait_for SECONDS COMMAND...: until COMMAND succeeds, bounded.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}
# mark FILE: its current line count; since FILE MARK: the lines added after it.
mark() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
since() { tail -n "+$(($2 + 1))" "$1"; }

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
# requests LOG MARK: docker-registry's access-log lines for /v2/ API calls since MARK.
requests() { since "$1" "$2" | grep -E '"(GET|HEAD) /v2/[^ ]+ HTTP/[0-9.]+" [0-9]+ ' || true; }
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
SOCK=$T/ctrd/containerd.sock

# ---- peers ---------------------------------------------------------------------------
# registry NAME PORT: a docker-registry on 127.0.0.1:PORT, its log (the access
# log included) in $T/NAME.log.
registry() {
  mkdir -p "$T/$1-data"
  cat >"$T/$1.yml" <<YAML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $T/$1-data
http:
  addr: 127.0.0.1:$2
  secret: layerd-integration-test
health:
  storagedriver:
    enabled: false
YAML
  docker-registry serve "$T/$1.yml" >"$T/$1.log" 2>&1 &
  PIDS+=("$!")
}
registry mirror "$PM"
registry other "$PX"

mkdir -p "$T/ctrd"
cat >"$T/ctrd/config.toml" <<TOML
version = 2
root = "$T/ctrd/root"
state = "$T/ctrd/state"
# No CRI, no /opt/containerd, no snapshotters that need a special file system.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
TOML
containerd --config "$T/ctrd/config.toml" >"$T/ctrd/log" 2>&1 &
PIDS+=("$!")

check "docker-registry R_mirror listens" wait_port "$PM" 10
check "docker-registry R_other listens" wait_port "$PX" 10
ctrd_up() { timeout 5 ctr -a "$SOCK" version >/dev/null 2>&1; }
checkd "containerd answers on its own socket" wait_for 20 ctrd_up
checkd "containerd started without errors" bash -c "! grep -E 'level=(error|fatal)' '$T/ctrd/log'"

# The test image: an OCI layout, two layers of random bytes, pushed to R_mirror.
$PY - "$T/layout" >"$T/digests" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
layers, diff_ids = [], []
for i in range(2):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        payload = os.urandom(64 * 1024)
        ti = tarfile.TarInfo("layer%d/data.bin" % i)
        ti.size, ti.mode = len(payload), 0o644
        t.addfile(ti, io.BytesIO(payload))
    diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    layers.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **put(gzip.compress(raw.getvalue()))))
config = dict(mediaType="application/vnd.oci.image.config.v1+json", **put(json.dumps(
    {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()))
manifest = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **put(json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": config, "layers": layers}).encode()))
manifest["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
for d in [manifest, config] + layers:
    print(d["digest"])
PY
check "the OCI layout is built" test $? -eq 0
MDIGEST=$(head -n 1 "$T/digests")
# skopeo runs as nobody: as root it would keep its blob-info cache in
# /var/lib/containers; as another user it uses $XDG_DATA_HOME, here under $T.
chmod 711 "$T"; chmod -R a+rX "$T/layout"
mkdir -p "$T/skopeo"; chown 65534:65534 "$T/skopeo"
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$T/policy.json"; chmod 644 "$T/policy.json"
timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
  env -i PATH=/usr/bin:/bin HOME="$T/skopeo" XDG_DATA_HOME="$T/skopeo" XDG_CONFIG_HOME="$T/skopeo" \
  XDG_RUNTIME_DIR="$T/skopeo" TMPDIR="$T/skopeo" \
  skopeo --policy "$T/policy.json" copy --dest-tls-verify=false --preserve-digests \
  "oci:$T/layout:v1" "docker://127.0.0.1:$PM/test/app:v1" >"$T/skopeo.log" 2>&1
checkd "skopeo pushes the image to R_mirror" test $? -eq 0
curl -s --max-time 5 -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' -o "$T/headers" \
  "http://127.0.0.1:$PM/v2/test/app/manifests/v1"
checkd "R_mirror serves the tag under the pushed manifest digest" \
  grep -qi "^Docker-Content-Digest: $MDIGEST" "$T/headers"

# ---- 1. layerd down, origin closed: containerd goes on to the mirror -----------------
spec "$T/spec.yaml" "$PM"
"$LAYERD" hosts --spec "$T/spec.yaml" --dir "$T/hosts" >"$T/out" 2>"$T/err"
checkd "layerd hosts exits 0" test $? -eq 0
F=$T/hosts/127.0.0.1:$PO/hosts.toml
checkd "layerd hosts writes 127.0.0.1:$PO/hosts.toml" test -f "$F"

m=$(mark "$T/mirror.log")
fetch c1 "$T/hosts"
checkd "ctr content fetch succeeds with layerd and the origin closed" test $? -eq 0
checkd "ctr loaded our hosts directory" grep -qF "msg=\"loading host directory\" dir=\"$T/hosts/127.0.0.1:$PO\"" "$LAST.err"
checkd "containerd reports no error decoding our hosts.toml" bash -c "! grep -q 'failed to decode hosts.toml' '$LAST.err'"
checkd "tried layerd first, then R_mirror" test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PM"
checkd "layerd's closed port made containerd try the next host" \
  grep -q "trying next host.*127.0.0.1:$PA.*connection refused.*host=\"127.0.0.1:$PA\"" "$LAST.err"
checkd "the origin was never dialled" bash -c "! grep -q 'dial tcp 127.0.0.1:$PO' '$LAST.err'"
checkd "the image record names the pushed manifest digest" image_is c1
checkd "every blob is in containerd's content store" all_blobs c1
checkd "containerd's manifest is byte for byte the pushed one" manifest_bytes c1

# ---- 2. order: R_other after R_mirror gets nothing; before it, a 404 and on ----------
requests "$T/mirror.log" "$m" >"$T/req"
checkd "R_mirror logged containerd's HEAD of the tag (with ?ns=)" \
  grep -qF "\"HEAD /v2/test/app/manifests/v1?ns=127.0.0.1%3A$PO HTTP/1.1\" 200" "$T/req"
checkd "R_mirror served every blob" test "$(grep -c '"GET /v2/test/app/blobs/sha256:[0-9a-f]*?ns=[^ ]* HTTP/1.1" 200' "$T/req")" -eq 3

spec "$T/spec-after.yaml" "$PM" "$PX"
"$LAYERD" hosts --spec "$T/spec-after.yaml" --dir "$T/hosts-after" >/dev/null 2>&1
checkd "layerd hosts writes the spec with R_other last" test $? -eq 0
m=$(mark "$T/mirror.log"); x=$(mark "$T/other.log")
fetch c2a "$T/hosts-after"
checkd "R_other listed after R_mirror: fetch succeeds" test $? -eq 0
checkd "R_other listed after R_mirror: resolved at R_mirror" test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PM"
checkd "R_other listed after R_mirror: R_mirror got the requests" test -n "$(requests "$T/mirror.log" "$m")"
checkd "R_other listed after R_mirror: R_other got no request" test -z "$(requests "$T/other.log" "$x")"
checkd "R_other listed after R_mirror: image complete" all_blobs c2a

spec "$T/spec-before.yaml" "$PX" "$PM"
"$LAYERD" hosts --spec "$T/spec-before.yaml" --dir "$T/hosts-before" >/dev/null 2>&1
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
"$LAYERD" hosts --spec "$T/spec-broken.yaml" --dir "$T/hosts-broken" >/dev/null 2>&1
checkd "layerd hosts writes the spec whose only endpoint is closed" test $? -eq 0
fetch c4 "$T/hosts-broken"; rc=$?
checkd "fetch with every host closed fails, promptly" bash -c "test $rc -ne 0 && test $rc -ne 124"
checkd "it tried the closed endpoint from our file" grep -q "dial tcp 127.0.0.1:$PC: connect: connection refused" "$LAST.err"
checkd "the failed fetch stored no image" bash -c "! timeout 10 ctr -a '$SOCK' -n c4 images ls -q | grep -q ."
mkdir -p "$T/no-hosts"
fetch c4b "$T/no-hosts"; rc=$?
checkd "without our hosts file the fetch fails (only the closed origin)" bash -c "test $rc -ne 0 && test $rc -ne 124"

# ---- 3 and 5. layerd serving: its 404 is skipped; --write-hosts and SIGHUP ------------
cp "$T/spec.yaml" "$T/serve.yaml"
"$LAYERD" serve --spec "$T/serve.yaml" --listen "127.0.0.1:$PA" --cache-dir "$T/cache" \
  --write-hosts "$T/hosts2" --log-level debug >"$T/layerd.log" 2>&1 &
pid=$!; PIDS+=("$pid")
checkd "layerd serve listens" wait_port "$PA" 10
F2=$T/hosts2/127.0.0.1:$PO/hosts.toml
checkd "serve --write-hosts writes the hosts file at start-up" wait_for 10 test -f "$F2"
"$LAYERD" hosts --spec "$T/serve.yaml" --dir "$T/ref" --listen "127.0.0.1:$PA" >/dev/null 2>&1
checkd "serve writes the same files as layerd hosts" diff -r "$T/ref" "$T/hosts2"
checkd "... and the same file as case 1" cmp "$F" "$F2"

l=$(mark "$T/layerd.log"); m=$(mark "$T/mirror.log")
fetch c3 "$T/hosts"
checkd "with layerd answering 404, the fetch still succeeds" test $? -eq 0
checkd "containerd skipped layerd's 404" \
  grep -q "trying next host - response was http.StatusNotFound\" host=\"127.0.0.1:$PA\"" "$LAST.err"
checkd "layerd logged containerd's request for the tag, with its ns" \
  grep -qE "request method=(HEAD|GET) path=\"/v2/test/app/manifests/v1[^\"]*\" ns=\"?127\.0\.0\.1(:|%3A)$PO\b" <(since "$T/layerd.log" "$l")
checkd "containerd asked layerd for blobs too before R_mirror" \
  grep -qE "request method=GET path=\"/v2/test/app/blobs/sha256:" <(since "$T/layerd.log" "$l")
checkd "R_mirror then served the pull" test -n "$(requests "$T/mirror.log" "$m")"
checkd "the image record names the pushed manifest digest (layerd up)" image_is c3
checkd "every blob is in containerd's content store (layerd up)" all_blobs c3

# Reload with R_other added in front: the file follows, and the next pull uses it.
cp "$F2" "$T/hosts2.before"
spec "$T/serve.yaml" "$PX" "$PM"
kill -HUP "$pid"
checkd "after SIGHUP the hosts file names the added endpoint" wait_for 10 grep -qF "\"http://127.0.0.1:$PX\"" "$F2"
"$LAYERD" hosts --spec "$T/serve.yaml" --dir "$T/ref2" --listen "127.0.0.1:$PA" >/dev/null 2>&1
checkd "the reloaded file equals layerd hosts output for the edited spec" diff -r "$T/ref2" "$T/hosts2"
x=$(mark "$T/other.log")
fetch c5 "$T/hosts2"
checkd "a pull after the reload succeeds" test $? -eq 0
checkd "the pull after the reload tries layerd, R_other, R_mirror" \
  test "$(resolve_order "$LAST.err")" = "127.0.0.1:$PA 127.0.0.1:$PX 127.0.0.1:$PM"
checkd "the added endpoint was asked (containerd re-read the file)" test -n "$(requests "$T/other.log" "$x")"

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
