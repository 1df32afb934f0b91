#!/usr/bin/env bash
# Installs the Debian 12 packages layerd needs to build and test, and only the
# missing ones: a no-op (and silent) when everything is there.
#   scripts/deps.sh              build, packaging and test packages (make check)
#   scripts/deps.sh --bench      those, and the peers and tools of `make bench` (bench/README.md)
#   scripts/deps.sh --packaging  build and packaging packages only (make deb, make image)
set -euo pipefail

build=(
  gcc make pkg-config clang
  libcurl4-openssl-dev libssl-dev libyaml-dev libsystemd-dev libmicrohttpd-dev libjansson-dev
)
# make deb (dpkg-buildpackage, debhelper, lintian), make image (python3, strip,
# the CA bundle), systemd-analyze for the unit tests. kubectl is not here:
# Debian 12's kubernetes-client (1.20) cannot validate offline either (it
# downloads the schema from a server), so the manifest test uses kubectl only
# for `kubectl kustomize`, where one is installed, and checks structure itself.
packaging=(
  dpkg-dev debhelper lintian binutils python3 ca-certificates systemd
)
tests=(
  libcmocka-dev valgrind curl python3 python3-yaml procps diffutils openssl util-linux
  # man renders layerd(8) with warnings on (test-packaging-deb); strace records
  # the syscalls checked against the unit's sandbox (test-packaging-systemd)
  man-db strace
  # real peers for integration tests
  containerd docker-registry skopeo
  # dockerd (test-dockerd): Debian's /usr/sbin/dockerd, run as a private instance
  docker.io
  # podman pulls through the rendered registries.conf (test-podman)
  podman
  # the CRI test client (tests/integration/cri): gRPC, and the messages compiled
  # at test time by protoc 3.21, the version of python3-protobuf (python3-grpc-tools'
  # protoc is too old for it)
  python3-grpcio python3-protobuf protobuf-compiler
)
case ${1:-} in
  "") packages=("${build[@]}" "${packaging[@]}" "${tests[@]}") ;;
  # make bench only: the load generator, the static-file baseline (run as a
  # private instance on a free port, never as the packaged service) and the profiler.
  --bench) packages=("${build[@]}" "${packaging[@]}" "${tests[@]}" wrk nginx-light linux-perf) ;;
  --packaging) packages=("${build[@]}" "${packaging[@]}") ;;
  *) echo "usage: scripts/deps.sh [--bench | --packaging]" >&2; exit 2 ;;
esac
if [[ $# -gt 1 ]]; then
  echo "usage: scripts/deps.sh [--bench | --packaging]" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

echo "deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

# containerd, docker-registry, docker.io, podman and nginx ship services; on a machine without an init
# system (and on a developer's) they must not start on install: tests run
# private instances on their own ports. policy-rc.d exit 101 = "do not start".
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 0755 "$policy"
  created_policy=1
fi
cleanup() { if ((created_policy)); then "${sudo[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
