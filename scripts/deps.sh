#!/usr/bin/env bash
# Installs the Debian 12 packages layerd needs to build and test, and only the
# missing ones: a no-op (and silent) when everything is there.
#   scripts/deps.sh           build and test packages
#   scripts/deps.sh --bench   those, and the peers and tools of `make bench` (bench/README.md)
set -euo pipefail

packages=(
  # build
  gcc make pkg-config clang
  libcurl4-openssl-dev libssl-dev libyaml-dev libsystemd-dev libmicrohttpd-dev libjansson-dev
  # tests
  libcmocka-dev valgrind curl python3 python3-yaml procps diffutils openssl util-linux
  # real peers for integration tests
  containerd docker-registry skopeo
)
if [[ ${1:-} == --bench ]]; then
  # make bench only: the load generator, the static-file baseline (run as a
  # private instance on a free port, never as the packaged service) and the profiler.
  packages+=(wrk nginx-light linux-perf)
elif [[ $# -gt 0 ]]; then
  echo "usage: scripts/deps.sh [--bench]" >&2
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

# containerd, docker-registry and nginx ship services; on a machine without an init
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
