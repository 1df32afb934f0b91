#!/usr/bin/env bash
# The Docker daemon itself (Debian 12's docker.io, dockerd 20.10) pulls through
# layerd with the registry-mirrors that `layerd hosts --format docker` renders
# (issue 18). dockerd sends no ?ns= and consults mirrors for docker.io only, so
# layerd serves it as agent.default_registry, docker.io.
#
# The peers are real and private to this test, under $T and on free loopback ports:
#  - docker.io's origin, a docker-registry (the spec's `origin:`), with a small
#    test image pushed by skopeo as library/dtest:v1;
#  - layerd serve, default_registry docker.io;
#  - dockerd with its own --data-root, --exec-root, --pidfile and unix socket,
#    no iptables, no bridge, vfs storage, and --config-file = the rendered
#    fragment plus "deprecated-key-path" (else dockerd 20.10 writes its
#    identity key to /etc/docker/key.json); its containerd is a private one,
#    started here and named with --containerd (unset, dockerd would use
#    /run/containerd/containerd.sock when that exists, else start its own);
#  - a proxy trap: dockerd runs with HTTP(S)_PROXY pointing at a local listener
#    that logs the first line of each connection and closes it. Go's proxy
#    selection never proxies loopback, so layerd and the origin are reached
#    directly, while a fallback to Docker Hub (which Docker tries after every
#    mirror) goes to the trap and fails there: nothing leaves the machine, and
#    the test sees whether dockerd fell back;
#  - the docker CLI, /usr/bin/docker (Debian's; /usr/local/bin/docker may be
#    another), with DOCKER_HOST on the private socket and a private DOCKER_CONFIG.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
DOCKERD=/usr/sbin/dockerd
DOCKER=/usr/bin/docker
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_root "dockerd needs root"
require_tools "$DOCKERD" "$DOCKER" containerd ctr docker-registry skopeo setpriv curl "$PY"

PO=$(free_port)  # docker.io's origin (a docker-registry)
PA=$(free_port)  # layerd
PX=$(free_port)  # the proxy trap
LAYERD_URL=http://127.0.0.1:$PA
ORIGIN=http://127.0.0.1:$PO
IMG=docker.io/library/dtest:v1
LOG=$T/layerd.log
D=$T/docker  # dockerd's directories, socket and log
mkdir -p "$D/cli"
export DOCKER_HOST=unix://$D/docker.sock DOCKER_CONFIG=$D/cli

DOCKERD_PID=
# dockerd 20.10 keeps its plugin sockets in /run/docker/plugins whatever its
# --exec-root: removed again (only if empty) when this test made it.
run_docker_made=0; [[ -e /run/docker ]] || run_docker_made=1
etc_key_was=0; [[ -e /etc/docker/key.json ]] && etc_key_was=1
# dockerd may leave its bind mount of --data-root (mount propagation) when it
# dies unexpectedly: stop it first, then unmount what is left under $T.
cleanup_dockerd() {
  if [[ -n $DOCKERD_PID ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    stop "$DOCKERD_PID" 20 || { kill -KILL "$DOCKERD_PID" 2>/dev/null; wait_exit "$DOCKERD_PID" 5; }
  fi
  awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  ((run_docker_made)) && rmdir /run/docker/plugins /run/docker 2>/dev/null
  cleanup
}
trap cleanup_dockerd EXIT

DIAG_FILES=("$LOG" "$D/dockerd.log" "$T/origin.log" "$T/ctrd/log" "$T/trap.log")
# docker ARGUMENTS...: the docker CLI on the private daemon, bounded (60 s); output in $T/docker.out.
docker() { timeout 60 "$DOCKER" "$@" >"$T/docker.out" 2>&1; }
# layerd_requests MARK: layerd's request lines since MARK.
layerd_requests() { since "$LOG" "$1" | grep '^<6>request ' || true; }
# image_id: the ID dockerd gives $IMG (the config's digest), empty when it has none.
image_id() { timeout 10 "$DOCKER" image inspect --format '{{.Id}}' "$IMG" 2>/dev/null; }
# served_image LABEL FILE CACHE: layerd's request lines in FILE show the pull of
# dtest:v1 as dockerd makes it: HEAD of the tag, GET of the manifest by digest,
# GET of the config and each layer, each answered 200 with cache= matching CACHE.
served_image() {
  local label=$1 file=$2 cache=$3 d
  checkd "$label: layerd answered dockerd's HEAD of the tag (cache=$cache)" \
    grep -qE " method=HEAD .* ref=v1 status=200 .* cache=$cache " "$file"
  for d in "${DIG[@]}"; do
    checkd "$label: layerd served ${d:7:12} (cache=$cache)" grep -qE " method=GET .* ref=$d status=200 .* cache=$cache " "$file"
  done
}
# trap_quiet: nobody connected to the proxy trap.
trap_quiet() { [[ ! -s $T/trap.log ]]; }

# ---- the origin and its image ----------------------------------------------------------
registry origin "$PO"
ORIGIN_PID=$REGISTRY_PID
mapfile -t DIG < <(oci_layout "$T/img")  # manifest, config, layer 0, layer 1
checkd "the origin listens" wait_port "$PO" 10
checkd "skopeo pushes the test image to the origin as library/dtest:v1" \
  skopeo_copy --preserve-digests --dest-tls-verify=false "oci:$T/img:v1" "docker://127.0.0.1:$PO/library/dtest:v1"

# ---- layerd and the rendered daemon.json ------------------------------------------------
write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
  default_registry: docker.io
registries:
  docker.io:
    mirror: true
    origin: $ORIGIN
YAML
"$LAYERD" hosts --spec "$T/spec.yaml" --format docker >"$T/mirrors.json" 2>"$T/hosts.err"
checkd "layerd hosts --format docker renders layerd first, then the custom origin" \
  "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d == {"registry-mirrors": sys.argv[2:]}, d' \
  "$T/mirrors.json" "$LAYERD_URL" "$ORIGIN"
checkd "it notes that Docker falls back to Docker Hub after the origin" \
  grep -q "note: docker.io: the origin $ORIGIN is listed as a mirror, and Docker falls back to Docker Hub" "$T/hosts.err"
# The fragment merged into dockerd's own file, as docs/hosts.md says to.
"$PY" -c 'import json, sys
d = json.load(open(sys.argv[1])); d["deprecated-key-path"] = sys.argv[2]
json.dump(d, open(sys.argv[3], "w"), indent=2)' "$T/mirrors.json" "$D/key.json" "$D/daemon.json"

layerd_serve "$LOG" "$T/spec.yaml"
checkd "layerd listens" wait_port "$PA" 10

# ---- the proxy trap ---------------------------------------------------------------------
"$PY" - "$PX" "$T/trap.log" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        line = c.recv(4096).split(b"\r\n")[0]
    except OSError:
        line = b""
    c.close()
    if line:  # wait_port's probe sends nothing
        with open(sys.argv[2], "ab") as f:
            f.write(line + b"\n")
PY
PIDS+=("$!")
checkd "the proxy trap listens" wait_port "$PX" 10

# ---- a private containerd and dockerd ---------------------------------------------------
containerd_start "$T/ctrd"
checkd "dockerd's private containerd answers" wait_for 20 ctrd_up
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$D" \
  HTTP_PROXY="http://127.0.0.1:$PX" HTTPS_PROXY="http://127.0.0.1:$PX" \
  "$DOCKERD" --config-file "$D/daemon.json" --data-root "$D/root" --exec-root "$D/exec" \
  --pidfile "$D/dockerd.pid" -H "unix://$D/docker.sock" --containerd "$SOCK" \
  --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
  --exec-opt native.cgroupdriver=cgroupfs --userland-proxy=false >"$D/dockerd.log" 2>&1 &
DOCKERD_PID=$!
up() { timeout 5 "$DOCKER" version >/dev/null 2>&1; }
if ! wait_for 30 up; then
  # Why it cannot run here: its last error line.
  why=$(grep -E 'level=(fatal|error)|failed to start daemon' "$D/dockerd.log" | tail -n 1 | cut -c1-200)
  kill -0 "$DOCKERD_PID" 2>/dev/null || why="dockerd exited: ${why:-no error logged}"
  diag_tail "$D/dockerd.log"
  # A daemon.json dockerd refuses is layerd's fault, never "unsupported".
  if grep -q 'unable to configure the Docker daemon with file' "$D/dockerd.log"; then
    not_ok "dockerd accepts the rendered daemon.json"
    finish
    exit 1
  fi
  skip "dockerd pulls through layerd" "unsupported: dockerd does not start here: ${why:-no answer on its socket in 30 s}"
  finish
  exit 0
fi
ok "dockerd answers on its private socket"
docker info --format '{{.HTTPSProxy}} {{.DockerRootDir}} {{.RegistryConfig.Mirrors}}'
checkd "dockerd runs with the proxy trap, its own root and layerd's mirrors" \
  grep -qxF "http://127.0.0.1:$PX $D/root [$LAYERD_URL/ $ORIGIN/]" "$T/docker.out"

# ---- cold: dockerd -> layerd -> the origin ------------------------------------------------
mo=$(mark "$T/origin.log") ml=$(mark "$LOG")
docker pull "$IMG"
checkd "cold: docker pull $IMG succeeds" test $? = 0
checkd "cold: dockerd's image is the pushed one (its ID is the config's digest)" test "$(image_id)" = "${DIG[1]}"
checkd "cold: the pull names the pushed manifest's digest" grep -qF "Digest: ${DIG[0]}" "$T/docker.out"
layerd_requests "$ml" | grep -F ' repo=library/dtest ' >"$T/cold.requests"
served_image cold "$T/cold.requests" miss
checkd "cold: dockerd sent no ns=: layerd took every request for docker.io, its default_registry" \
  eval '[[ -s $T/cold.requests ]] && ! grep -vF " ns=docker.io " "$T/cold.requests"'
requests "$T/origin.log" "$mo" >"$T/cold.origin"
checkd "cold: the origin was asked, by layerd only (never by dockerd directly)" \
  eval '[[ -s $T/cold.origin ]] && ! grep -vF "\"layerd/" "$T/cold.origin"'
checkd "cold: dockerd never fell back to Docker Hub (the proxy trap is quiet)" trap_quiet
checkd "cold: every blob is in layerd's cache" in_cache "$T/cache" "${DIG[@]}"

# ---- warm: the origin down, the image removed from dockerd: layerd's cache alone ---------
stop "$ORIGIN_PID"
checkd "warm: the origin is down" refuses "$PO"
docker rmi "$IMG"
checkd "warm: docker rmi removes the image" test -z "$(image_id)"
ml=$(mark "$LOG")
docker pull "$IMG"
checkd "warm: docker pull $IMG succeeds with the origin down" test $? = 0
checkd "warm: dockerd's image is the pushed one" test "$(image_id)" = "${DIG[1]}"
layerd_requests "$ml" | grep -F ' repo=library/dtest ' >"$T/warm.requests"
served_image warm "$T/warm.requests" hit
checkd "warm: dockerd never fell back to Docker Hub (the proxy trap is quiet)" trap_quiet

# ---- an image nobody has: dockerd's fallback to Docker Hub stays on this machine -----------
ml=$(mark "$LOG")
docker pull docker.io/library/absent:v1
checkd "absent: docker pull of an image nobody has fails" test $? != 0
checkd "absent: dockerd asked layerd first" eval 'layerd_requests "$ml" | grep -qF " repo=library/absent "'
checkd "absent: dockerd's fallback to Docker Hub went to the local proxy trap (and failed there)" \
  grep -q '^CONNECT registry-1.docker.io:443 ' "$T/trap.log"

stop "$DOCKERD_PID" 20
checkd "dockerd stops on SIGTERM" test "$status" = 0
checkd "dockerd kept its identity key under \$T, not in /etc/docker" \
  eval '[[ -s $D/key.json ]] && { ((etc_key_was)) || [[ ! -e /etc/docker/key.json ]]; }'
finish
