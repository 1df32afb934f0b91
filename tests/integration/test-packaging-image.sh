#!/usr/bin/env bash
# packaging/image (issue 8): the OCI image written without a container daemon.
#  - built twice from the same binary: the same digests; another input, another digest;
#  - a valid OCI layout: every blob is what its digest says, the config's
#    diff_id is the layer's, a non-root user, layerd as the entrypoint;
#  - its root file system is complete: the image's layerd runs in a chroot of
#    it, as the image's user, and serves;
#  - layerd serves its own image: skopeo pushes it to a private origin
#    (docker-registry), containerd pulls it through layerd (hosts files
#    written by layerd), first from the origin (cache=miss), then, into a
#    fresh namespace, from layerd's cache (cache=hit) with the origin unasked.
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "containerd and chroot need root"
require_tools containerd ctr docker-registry skopeo setpriv chroot strip curl /usr/bin/python3

BUILD=packaging/image/build.py
LOG=$T/layerd.log
# A failing check shows the last lines of these (and of the last ctr fetch's output).
DIAG_FILES=("$T/build.err" "$T/layout.out" "$T/chroot-layerd.log" "$T/skopeo.log" "$LOG")
TAG=t1
version=$("$LAYERD" version | sed -n '1s/^layerd //p')
# manifest_digest LAYOUT: the digest index.json names.
manifest_digest() {
  /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$1/index.json"
}

# ---- reproducible --------------------------------------------------------------------------
d1=$(/usr/bin/python3 "$BUILD" --binary "$LAYERD" --out "$T/img" --tag "$TAG" --version "$version" 2>"$T/build.err")
checkd "build.py writes the layout and prints its manifest digest ($d1)" \
  bash -c "[[ '$d1' =~ ^sha256:[0-9a-f]{64}$ && '$d1' == '$(manifest_digest "$T/img")' ]]"
sleep 1  # another second on the clock: times must not leak into the image
d2=$(/usr/bin/python3 "$BUILD" --binary "$LAYERD" --out "$T/img2" --tag "$TAG" --version "$version")
checkd "a second build of the same binary has the same manifest digest" test "$d1" = "$d2"
checkd "... and the same blobs, byte for byte" diff -r "$T/img" "$T/img2"
printf '# another spec\n' | cat - packaging/spec.yaml >"$T/other-spec.yaml"
d3=$(/usr/bin/python3 "$BUILD" --binary "$LAYERD" --out "$T/img3" --tag "$TAG" --version "$version" --spec "$T/other-spec.yaml")
checkd "a build with one file changed has another digest" test -n "$d3" -a "$d3" != "$d1"

# ---- a valid OCI layout ------------------------------------------------------------------
/usr/bin/python3 - "$T/img" "$T/layer.tar" >"$T/layout.out" 2>&1 <<'PY'
import gzip, hashlib, json, os, sys
root, layer_out = sys.argv[1:]
def blob(desc):
    data = open(os.path.join(root, "blobs", *desc["digest"].split(":")), "rb").read()
    assert len(data) == desc["size"], "size of " + desc["digest"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"], "digest of " + desc["digest"]
    return data
assert json.load(open(os.path.join(root, "oci-layout"))) == {"imageLayoutVersion": "1.0.0"}
index = json.load(open(os.path.join(root, "index.json")))
(m,) = index["manifests"]
assert m["annotations"]["org.opencontainers.image.ref.name"] == "t1"
manifest = json.loads(blob(m))
assert manifest["mediaType"] == m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
config = json.loads(blob(manifest["config"]))
(layer,) = manifest["layers"]
assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
tar = gzip.decompress(blob(layer))
assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar).hexdigest()], "diff_id"
c = config["config"]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/usr/bin/layerd"] and c["Cmd"][0] == "serve", c
assert config["os"] == "linux" and config["architecture"]
open(layer_out, "wb").write(tar)
print("layout ok")
PY
checkd "the layout is valid: blobs match their digests and sizes, diff_id, user 65532, entrypoint layerd" \
  grep -qx "layout ok" "$T/layout.out"

# ---- the root file system ------------------------------------------------------------------
R=$T/rootfs
mkdir -p "$R"
tar -xf "$T/layer.tar" -C "$R" --numeric-owner --same-owner
files_there() {
  test -x "$R/usr/bin/layerd" -a -s "$R/etc/ssl/certs/ca-certificates.crt" -a -s "$R/etc/layerd/spec.yaml" &&
    grep -q '^layerd:x:65532:65532:' "$R/etc/passwd" && grep -q '^layerd:x:65532:' "$R/etc/group"
}
checkd "the binary, the CA bundle, the spec, passwd and group with layerd (65532) are there" files_there
checkd "/var/lib/layerd belongs to 65532, /tmp is 1777" \
  test "$(stat -c %u:%g "$R/var/lib/layerd") $(stat -c %a "$R/tmp")" = "65532:65532 1777"
libs_all_there() {
  local lib
  for lib in $(ldd "$LAYERD" | grep -o '/[^ ]*'); do
    [[ -e $R$lib ]] || { echo "# missing in the image: $lib" >&2; return 1; }
  done
}
checkd "every library ldd names is in the image under its path" libs_all_there
inroot() { timeout 10 chroot --userspec=65532:65532 "$R" "$@"; }
checkd "the image's layerd runs in a chroot of it as 65532, same version" \
  test "$(inroot /usr/bin/layerd version 2>&1 | head -n 1)" = "layerd $version"
spec_ok() { inroot /usr/bin/layerd check-config /etc/layerd/spec.yaml >/dev/null; }
checkd "... and finds its default spec valid" spec_ok
PI=$(free_port)
chroot --userspec=65532:65532 "$R" /usr/bin/layerd serve --spec /etc/layerd/spec.yaml --listen "127.0.0.1:$PI" \
  >"$T/chroot-layerd.log" 2>&1 &
CPID=$!
PIDS+=("$CPID")
checkd "... and serves its default spec with its cache in /var/lib/layerd" wait_port "$PI" 10
chroot_ready() { [[ $(http GET "http://127.0.0.1:$PI/readyz") == 200 ]]; }
checkd "... /readyz 200 there" wait_for 10 chroot_ready
stop "$CPID"
checkd "... and stops on SIGTERM with status 0" test "$status" = 0

# ---- layerd serves its own image -------------------------------------------------------------
PO=$(free_port)
PA=$(free_port)
registry origin "$PO"
checkd "the origin (docker-registry) listens" wait_port "$PO" 10
chmod -R a+rX "$T/img"
skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/img:$TAG" "docker://127.0.0.1:$PO/layerd:$TAG"
checkd "skopeo pushes the image to the origin" test $? -eq 0
origin_digest=$(curl -s --max-time 5 -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://127.0.0.1:$PO/v2/layerd/manifests/$TAG" | tr -d '\r' | sed -n 's/^docker-content-digest: *//Ip')
checkd "the origin serves it under the built digest" test "$origin_digest" = "$d1"

cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PA
  cache_dir: $T/cache
  default_registry: "127.0.0.1:$PO"
registries:
  "127.0.0.1:$PO":
    origin: http://127.0.0.1:$PO
YAML
layerd_serve "$LOG" "$T/spec.yaml" --write-hosts "$T/hosts"
checkd "layerd listens" wait_port "$PA" 10
checkd "layerd wrote the hosts file for the origin" wait_for 10 test -f "$T/hosts/127.0.0.1:$PO/hosts.toml"
containerd_start "$T/ctrd"
checkd "containerd answers on its own socket" wait_for 20 ctrd_up

mapfile -t digests < <(/usr/bin/python3 -c '
import json, os, sys
root, m = sys.argv[1], sys.argv[2]
man = json.load(open(os.path.join(root, "blobs", "sha256", m[7:])))
print(man["config"]["digest"]); [print(l["digest"]) for l in man["layers"]]' "$T/img" "$d1")
REF=127.0.0.1:$PO/layerd:$TAG
# served NS_MARK OUTCOME: layerd answered every blob's GET 200 with cache=OUTCOME since the mark.
served() {
  local d
  for d in "${digests[@]}"; do
    since "$LOG" "$1" | grep -qE "^<6>request method=GET ns=127\.0\.0\.1:$PO repo=layerd ref=$d status=200 .* cache=$2( |$)" || return 1
  done
}
from_layerd_blobs() { requests "$T/origin.log" "$1" | grep -F '"layerd/' | grep -c '/blobs/' || true; }

l=$(mark "$LOG"); mo=$(mark "$T/origin.log")
ctr_fetch one "$T/hosts" "$REF"
checkd "containerd pulls the image through layerd" test "$rc" -eq 0
checkd "... every blob of it is in containerd's content store" ctr_has one "$d1" "${digests[@]}"
checkd "... the image record names the built digest" test "$(ctr_image_digest one "$REF")" = "$d1"
checkd "layerd served config and layer from the origin (cache=miss)" served "$l" miss
checkd "... fetching each blob from the origin once" test "$(from_layerd_blobs "$mo")" = "${#digests[@]}"
checkd "... and keeps them in its cache" in_cache "$T/cache" "${digests[@]}"
checkd "containerd never needed its next host" ctr_no_next_host "$LAST.err"

l=$(mark "$LOG"); mo=$(mark "$T/origin.log")
ctr_fetch two "$T/hosts" "$REF"
checkd "a pull into a fresh namespace succeeds" test "$rc" -eq 0
checkd "... config and layer from layerd's cache (cache=hit)" served "$l" hit
# The first pull's blob requests are in the log in the format counted.
checkd "... and layerd asked the origin for no blob" \
  test "$(from_layerd_blobs 0).$(from_layerd_blobs "$mo")" = "${#digests[@]}.0"
code=$(http GET "http://127.0.0.1:$PA/metrics")
hits=$(sed -n 's/^layerd_cache_hits_total //p' "$T/body")
checkd "/metrics counts the hits (layerd_cache_hits_total $hits >= ${#digests[@]})" \
  test "${hits:-0}" -ge "${#digests[@]}" -a "$code" = 200
stop "$LAYERD_PID"
checkd "layerd stops with status 0" test "$status" = 0
finish
