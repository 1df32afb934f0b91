#!/usr/bin/env bash
# podman pulls through layerd (issue 18): images of two registries through one
# layerd, with the registries.conf that `layerd hosts --format registries-conf`
# renders (layerd the first mirror of each registry, at the registry's
# namespaced path, plain HTTP on loopback).
#
# The peers are real and private to this test, on free loopback ports:
#  - two origins, docker-registry (distribution v2) on 127.0.0.1:$P1 and
#    127.0.0.1:$P2, the two registries of the spec; skopeo pushes an image of
#    random layers to each;
#  - layerd serve, with agent.default_registry the first registry: a request
#    for the second one reaches it only by its namespace;
#  - podman (Debian's) as root, in a mount namespace of its own where
#    /etc/containers and /var/lib/containers are empty directories of the
#    test, with its own storage (--root, --runroot, vfs), containers.conf,
#    storage.conf, policy, auth file, certificates directory and HOME under
#    $T, CONTAINERS_REGISTRIES_CONF the rendered file (its debug log shows
#    which files it read).
# Cold: each pull goes through layerd at the registry's namespaced path, and
# layerd fetches from the right origin; the origins see layerd alone; a
# namespaced tag list is the right registry's. Warm: both origins stopped, a
# podman with a fresh storage pulls both images again: from layerd's cache.
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_root "podman runs as root here, in a mount namespace of its own (unshare --mount)"
require_tools podman docker-registry skopeo setpriv curl /usr/bin/python3

P1=$(free_port)  # the first registry's origin
P2=$(free_port)  # the second registry's origin
PA=$(free_port)  # layerd
R1=127.0.0.1:$P1 R2=127.0.0.1:$P2
LOG=$T/layerd.log
DIAG_FILES=("$LOG")

# ---- helpers -------------------------------------------------------------------------
# checkd DESCRIPTION COMMAND...: check, with layerd's and podman's last lines when it fails.
checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail "$LOG" ${LAST:+"$LAST.err"}
  fi
}
push() { skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$1:v1" "docker://$2"; }

# podman's private configuration: nothing may come from the system's or root's
# files. podman runs in a mount namespace of its own (unshare) where
# /etc/containers and /var/lib/containers are empty directories of the test
# (podman as root keeps its blob-info cache in /var/lib/containers/cache
# whatever --root says; CONTAINERS_REGISTRIES_CONF replaces registries.conf but
# not /etc/containers/registries.conf.d); CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF replace containers.conf and storage.conf;
# --signature-policy, --authfile and --cert-dir the policy, the auth files and
# the certs.d directories; HOME's registries.d (lookaside storage under $T)
# and auth.json are the only ones in reach.
VAR_LIB_CREATED=0
trap 'cleanup; if ((VAR_LIB_CREATED)); then rmdir /var/lib/containers; fi' EXIT
podman_config() {
  mkdir -p "$T/home/.config/containers/registries.d" "$T/podman-tmp" "$T/certs" "$T/etc-containers" \
    "$T/var-lib-containers"
  printf 'default-docker:\n  lookaside: file://%s/sigstore\n' "$T" >"$T/home/.config/containers/registries.d/default.yaml"
  printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$T/podman-policy.json"
  printf '{"auths": {}}\n' >"$T/auth.json"
  cat >"$T/containers.conf" <<TOML
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/podman-events.log"
tmp_dir = "$T/podman-tmp"
volume_path = "$T/podman-volumes"
TOML
  cat >"$T/storage.conf" <<TOML
[storage]
driver = "vfs"
graphroot = "$T/podman-unused/graph"
runroot = "$T/podman-unused/run"
TOML
  # The mount point, where podman has never run as root: removed at the end.
  if [[ ! -d /var/lib/containers ]]; then mkdir -m 700 /var/lib/containers && VAR_LIB_CREATED=1; fi
}
# podman_in NAME PODMAN_ARGUMENTS...: podman with the storage NAME ($T/podman-NAME)
# and the private configuration, bounded.
podman_in() {
  local name=$1; shift
  timeout 120 unshare --mount --propagation private -- /bin/sh -c \
    'mount --bind "$1" /etc/containers && mount --bind "$2" /var/lib/containers && shift 2 && exec "$@"' sh \
    "$T/etc-containers" "$T/var-lib-containers" \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$T/home" XDG_CONFIG_HOME="$T/home/.config" \
    XDG_DATA_HOME="$T/home/.local/share" TMPDIR="$T/podman-tmp" \
    CONTAINERS_CONF="$T/containers.conf" CONTAINERS_STORAGE_CONF="$T/storage.conf" \
    CONTAINERS_REGISTRIES_CONF="$T/registries.conf" \
    podman --root "$T/podman-$name/root" --runroot "$T/podman-$name/run" --storage-driver vfs "$@"
}
# podman_pull NAME REF: `podman pull` of REF into the storage NAME; its output in
# $T/pull-NAME-<count>.{out,err} ($LAST), the exit status in $rc.
pulls=0
podman_pull() {
  local name=$1 ref=$2
  pulls=$((pulls + 1))
  LAST=$T/pull-$name-$pulls
  podman_in "$name" --log-level=debug pull --authfile "$T/auth.json" --signature-policy "$T/podman-policy.json" \
    --cert-dir "$T/certs" "$ref" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
# registries_loaded FILE: podman's debug log FILE says it loaded the rendered
# registries.conf and no other registries configuration.
registries_loaded() {
  [[ $(sed -n 's/.*Loading registries configuration \\"\([^\\]*\)\\".*/\1/p' "$1") == "$T/registries.conf" ]]
}
# private_config FILE: podman's debug log FILE shows it using the test's
# registries.d and certificates directory, its blob-info cache in the test's
# directory, and naming no file of root's home.
private_config() {
  grep -qF "Using registries.d directory $T/home/.config/containers/registries.d" "$1" &&
    grep -qF "Looking for TLS certificates and private keys in $T/certs" "$1" &&
    grep -qF "Using blob info cache at /var/lib/containers/cache/" "$1" &&
    test -s "$T/var-lib-containers/cache/blob-info-cache-v1.boltdb" && absent -E '[" ]/root/' "$1"
}
# podman_digest NAME REF: the manifest digest of REF in the storage of NAME.
podman_digest() { podman_in "$1" image inspect --format '{{.Digest}}' "$2" 2>/dev/null; }
# requests_since MARK: layerd's request lines since MARK.
requests_since() { since "$LOG" "$1" | grep '^<6>request ' || true; }
# served MARK REGISTRY REPO CACHE DIGEST...: layerd answered a GET of each
# DIGEST of REGISTRY's REPO 200, with cache=CACHE.
served() {
  local m=$1 reg=$2 repo=$3 c=$4 d; shift 4
  for d in "$@"; do
    requests_since "$m" | grep -qF " method=GET ns=$reg repo=$repo ref=$d status=200 " || return 1
    requests_since "$m" | grep -F " ref=$d " | grep -qF " cache=$c" || return 1
  done
}
# only_layerd LOG MARK: the origin's access log since MARK has requests, and all of them are layerd's.
only_layerd() { [[ -n $(requests "$1" "$2") && $(requests "$1" "$2" | grep -vcF '"layerd/') == 0 ]]; }

# ---- peers and images ------------------------------------------------------------------
registry one "$P1"; ONE_PID=$REGISTRY_PID
registry two "$P2"; TWO_PID=$REGISTRY_PID
checkd "both origins listen" eval 'wait_port "$P1" 10 && wait_port "$P2" 10'
oci_layout "$T/A" --layers 262144,524288 >"$T/A.digests" && oci_layout "$T/B" --layers 131072,1048576 >"$T/B.digests"
checkd "the OCI layouts are built" test $? -eq 0
mapfile -t A <"$T/A.digests"
mapfile -t B <"$T/B.digests"
chmod -R a+rX "$T/A" "$T/B"
push "$T/A" "$R1/team/app:v1" && push "$T/B" "$R2/tools/cli:v2" && push "$T/B" "$R2/tools/cli:v3"
checkd "skopeo pushes team/app:v1 to the first registry and tools/cli:v2, v3 to the second" test $? -eq 0

write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
  default_registry: "$R1"
registries:
  "$R1":
    origin: http://$R1
  "$R2":
    origin: http://$R2
YAML
"$LAYERD" hosts --spec "$T/spec.yaml" --format registries-conf >"$T/registries.conf" 2>"$T/hosts.err"
checkd "layerd hosts renders registries.conf for both registries, leaving none out" \
  eval 'test -s "$T/registries.conf" && absent "layerd left out" "$T/hosts.err"'
checkd "layerd is the first mirror of each, by its namespace, plain HTTP" /usr/bin/python3 -c "
import sys, tomllib
d = tomllib.load(open(sys.argv[1], 'rb'))
got = {r['prefix']: (r['location'], r.get('insecure'), r['mirror'][0]) for r in d['registry']}
want = {r: (r, True, {'location': '127.0.0.1:$PA/' + r.replace(':', '_'), 'insecure': True}) for r in ['$R1', '$R2']}
assert got == want, got" "$T/registries.conf"
podman_config
layerd_serve "$LOG" "$T/spec.yaml"
checkd "layerd serve listens" wait_port "$PA" 10

# ---- cold: through layerd to each registry's origin --------------------------------------
l=$(mark "$LOG"); m1=$(mark "$T/one.log"); m2=$(mark "$T/two.log")
podman_pull cold "$R1/team/app:v1"
checkd "cold: podman pulls $R1/team/app:v1" test "$rc" = 0
checkd "cold: podman read the rendered registries.conf and no other" registries_loaded "$LAST.err"
checkd "cold: podman used the test's registries.d, certificates and blob-info cache, nothing of root's" \
  private_config "$LAST.err"
checkd "cold: podman's image is the pushed manifest" test "$(podman_digest cold "$R1/team/app:v1")" = "${A[0]}"
podman_pull cold "$R2/tools/cli:v2"
checkd "cold: podman pulls $R2/tools/cli:v2" test "$rc" = 0
checkd "cold: podman's image is the pushed manifest" test "$(podman_digest cold "$R2/tools/cli:v2")" = "${B[0]}"
checkd "cold: podman asked layerd at the namespaced paths" \
  eval 'cat "$T"/pull-cold-*.err >"$T/pull-cold.all" &&
        grep -qF "GET http://127.0.0.1:$PA/v2/127.0.0.1_$P1/team/app/manifests/v1" "$T/pull-cold.all" &&
        grep -qF "GET http://127.0.0.1:$PA/v2/127.0.0.1_$P2/tools/cli/manifests/v2" "$T/pull-cold.all"'
checkd "cold: layerd served the first image as $R1's team/app (blobs: cache=miss)" served "$l" "$R1" team/app miss "${A[@]:1}"
checkd "cold: layerd served the second image as $R2's tools/cli (blobs: cache=miss)" served "$l" "$R2" tools/cli miss "${B[@]:1}"
checkd "cold: layerd answered no request for the wrong registry" \
  eval '[[ $(requests_since "$l" | grep -cE " ns=$R1 repo=tools/| ns=$R2 repo=team/| status=404 ") == 0 ]]'
checkd "cold: the first origin saw layerd's requests and nobody else's" only_layerd "$T/one.log" "$m1"
checkd "cold: the second origin saw layerd's requests and nobody else's" only_layerd "$T/two.log" "$m2"
checkd "cold: every blob of both images is in layerd's cache" wait_for 5 in_cache "$T/cache" "${A[@]}" "${B[@]}"
code=$(http GET "http://127.0.0.1:$PA/v2/127.0.0.1_$P2/tools/cli/tags/list")
checkd "cold: a namespaced tag list is the second registry's ($code)" \
  eval '[[ $code == 200 ]] && grep -qF "\"tags\":[\"v2\",\"v3\"]" "$T/body"'
code=$(http GET "http://127.0.0.1:$PA/v2/tools/cli/tags/list")
checkd "cold: the same without the namespace is the default registry's, which has no such repository ($code)" \
  eval '[[ $code == 404 ]] && grep -qF NAME_UNKNOWN "$T/body"'
echo "# cold: layerd answered $(requests_since "$l" | grep -c " ns=$R1 ") requests for $R1, $(requests_since "$l" | grep -c " ns=$R2 ") for $R2"

# ---- warm: both origins down, layerd's cache serves ------------------------------------
stop "$ONE_PID"; stop "$TWO_PID"
checkd "warm: both origins are stopped" eval 'refuses "$P1" && refuses "$P2"'
l=$(mark "$LOG")
podman_pull warm "$R1/team/app:v1"
checkd "warm: podman with a fresh storage pulls $R1/team/app:v1" test "$rc" = 0
checkd "warm: podman's image is the pushed manifest" test "$(podman_digest warm "$R1/team/app:v1")" = "${A[0]}"
podman_pull warm "$R2/tools/cli:v2"
checkd "warm: podman with a fresh storage pulls $R2/tools/cli:v2" test "$rc" = 0
checkd "warm: podman's image is the pushed manifest" test "$(podman_digest warm "$R2/tools/cli:v2")" = "${B[0]}"
checkd "warm: layerd served every blob of $R1's team/app from its cache" served "$l" "$R1" team/app hit "${A[@]:1}"
checkd "warm: layerd served every blob of $R2's tools/cli from its cache" served "$l" "$R2" tools/cli hit "${B[@]:1}"
checkd "warm: layerd answered the tags from its cache (the origins are down)" \
  eval 'requests_since "$l" | grep -qE " ns=$R1 repo=team/app ref=v1 status=200 " &&
        requests_since "$l" | grep -qE " ns=$R2 repo=tools/cli ref=v2 status=200 "'

# ---- without a namespace: the default registry, as before ----------------------------------
code=$(http GET "http://127.0.0.1:$PA/v2/team/app/manifests/${A[0]}")
checkd "a path without namespace is the default registry's ($R1) ($code)" test "$code" = 200
code=$(http GET "http://127.0.0.1:$PA/v2/tools/cli/manifests/v2")
checkd "... so the second registry's tag is not answered there ($code)" test "${code:0:1}" != 2

finish
