#!/usr/bin/env bash
# make deb: builds the layerd .deb with dpkg-buildpackage in a copy of the
# source tree (the tree itself stays clean), then runs lintian on it, failing
# on any error. Output: OUT/layerd_<version>_<arch>.deb (and .buildinfo, .changes).
#   packaging/build-deb.sh --version UPSTREAM_VERSION --out DIR
set -euo pipefail
cd "$(dirname "$0")/.."

version="" out=build/deb
while (($#)); do
  case $1 in
    --version) version=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: packaging/build-deb.sh --version VERSION [--out DIR]" >&2; exit 2 ;;
  esac
done
[[ -n $version ]] || { echo "build-deb.sh: --version is required" >&2; exit 2; }

# A native package's version: no hyphen. A release tag (v1.2.3, 1.2.3-4-gabc)
# maps onto itself (1.2.3, 1.2.3+4+gabc); an untagged commit sorts below any
# release and by commit count: 0.0~git<count>.<hash>.
if [[ $version =~ ^v?[0-9]+\.[0-9]+ ]]; then
  debver=${version#v}
  debver=${debver//-/+}
else
  count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
  debver="0.0~git$count.${version//-/+}"
fi
# The changelog's date (and so the package's file times) follows the last
# commit, not the clock, so the same commit builds the same package.
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH=$epoch

mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/layerd-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$work/layerd-$debver
mkdir -p "$src"

# The tree as git sees it (tracked files and new ones not ignored): no build
# output, no ./layerd binary. Without git (a tarball), everything but those.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$src"
else
  tar --exclude=./build --exclude=./layerd -cf - . | tar -xf - -C "$src"
fi

cp -r packaging/debian "$src/debian"
cp packaging/systemd/layerd.service packaging/systemd/layerd.socket "$src/debian/"
printf '%s\n' "$version" >"$src/debian/upstream-version"
cat >"$src/debian/changelog" <<CHANGELOG
layerd ($debver) unstable; urgency=medium

  * Built from the layerd repository at $version.

 -- layerd developers <layerd@example.com>  $(date -u -R -d "@$epoch")
CHANGELOG

(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >"$work/build.log" 2>&1 || {
  tail -n 40 "$work/build.log" >&2
  echo "build-deb.sh: dpkg-buildpackage failed" >&2
  exit 1
}
arch=$(dpkg --print-architecture)
deb=layerd_${debver}_$arch.deb
for f in "$work"/layerd_"$debver"_*; do cp "$f" "$out/"; done

# lintian: errors fail the build; warnings are shown. Run as root it refuses
# to unpack unless told that is intended.
lintian_opts=(--fail-on error --tag-display-limit 0)
[[ $(id -u) -eq 0 ]] && lintian_opts+=(--allow-root)
lintian "${lintian_opts[@]}" "$out/$deb"
echo "$out/$deb"
