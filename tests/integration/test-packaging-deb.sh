#!/usr/bin/env bash
# packaging/debian (issue 8): `make deb`'s script builds the package from a copy
# of this tree with dpkg-buildpackage; lintian finds no error in it; it holds
# the binary, the units, the default spec (a conffile), the man page and the
# docs; its maintainer scripts enable the socket and the service (started only
# under a running systemd) and remove the cache on purge; the packaged binary
# runs and is this tree's version. Not installed with dpkg -i: that would need
# a Debian root file system to chroot into (debootstrap fetches one from the
# network) or change this machine.
. "$(dirname "$0")/lib.sh"

require_tools dpkg-buildpackage dh lintian dpkg-deb

version=$("$LAYERD" version | sed -n '1s/^layerd //p')
packaging/build-deb.sh --version "$version" --out "$T/deb" >"$T/build.log" 2>&1
check "packaging/build-deb.sh builds the package, lintian without errors" test $? -eq 0
DIAG=$T/build.log
deb=$(ls "$T"/deb/layerd_*.deb 2>/dev/null | head -n 1)
if [[ -z $deb ]]; then
  not_ok "a .deb was written"
  diag_tail "$DIAG"
  finish
  exit 0
fi
ok "a .deb was written ($(basename "$deb"))"

lintian_opts=()
[[ $(id -u) -eq 0 ]] && lintian_opts+=(--allow-root)
lintian "${lintian_opts[@]}" --tag-display-limit 0 "$deb" >"$T/lintian.out" 2>&1
no_errors() { ! grep -q '^E: ' "$T/lintian.out"; }
check "lintian: no error ($(grep -c '^W: ' "$T/lintian.out") warnings)" no_errors
sed 's/^/# /' "$T/lintian.out" >&2

dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$T/contents"
has_files() {
  local f
  for f in /usr/bin/layerd /lib/systemd/system/layerd.service /lib/systemd/system/layerd.socket \
    /etc/layerd/spec.yaml /usr/share/man/man8/layerd.8.gz /usr/share/doc/layerd/copyright \
    /usr/share/doc/layerd/spec.md.gz /usr/share/doc/layerd/changelog.gz; do
    grep -qxF "$f" "$T/contents" || { echo "# missing: $f" >&2; return 1; }
  done
}
check "contents: binary, both units, default spec, man page, copyright, docs" has_files

field() { dpkg-deb -f "$deb" "$1"; }
debver=$(field Version)
check "Version $debver is a native version (no hyphen) that carries this tree's $version" \
  bash -c "[[ '$debver' != *-* && '$debver' == *'${version//-/+}'* ]]"
deps_ok() { local d; for d in libc6 libcurl4 libmicrohttpd12 libsystemd0 libyaml-0-2 libjansson4 libssl3; do
  field Depends | grep -q "\b$d\b" || { echo "# Depends lacks $d" >&2; return 1; }; done; }
check "Depends (from the shared libraries) names every library layerd links" deps_ok

mkdir -p "$T/ctl" "$T/root"
dpkg-deb -e "$deb" "$T/ctl"
check "/etc/layerd/spec.yaml is a conffile" grep -qx /etc/layerd/spec.yaml "$T/ctl/conffiles"
scripts_parse() { local s; for s in postinst prerm postrm; do sh -n "$T/ctl/$s" || return 1; done; }
check "postinst, prerm and postrm parse (sh -n)" scripts_parse
enables() { grep -q "deb-systemd-helper enable 'layerd.socket'" "$T/ctl/postinst" &&
  grep -q "deb-systemd-helper enable 'layerd.service'" "$T/ctl/postinst"; }
check "postinst enables layerd.socket and layerd.service" enables
starts_under_systemd() {
  grep -q 'if \[ -d /run/systemd/system \]' "$T/ctl/postinst" &&
    grep -q "deb-systemd-invoke \$_dh_action 'layerd.service' 'layerd.socket'" "$T/ctl/postinst"
}
check "postinst starts them only under a running systemd (restart on upgrade)" starts_under_systemd
purge_removes_cache() {
  # Run the purge branch against a fake root: only the cache path is rewritten.
  mkdir -p "$T/fake/var/lib/layerd/blobs"
  sed -e "s#/var/lib/layerd#$T/fake/var/lib/layerd#" -e '/^# Automatically added by/,/^# End automatically added section/d' \
    "$T/ctl/postrm" >"$T/postrm"
  sh "$T/postrm" remove && [[ -d $T/fake/var/lib/layerd ]] && sh "$T/postrm" purge && [[ ! -e $T/fake/var/lib/layerd ]]
}
check "postrm keeps the cache on remove and deletes it on purge" purge_removes_cache

dpkg-deb -x "$deb" "$T/root"
check "the packaged binary runs and is this tree's version" \
  test "$("$T/root/usr/bin/layerd" version | head -n 1)" = "layerd $version"
check "the packaged default spec is packaging/spec.yaml" cmp -s "$T/root/etc/layerd/spec.yaml" packaging/spec.yaml
spec_ok() { "$T/root/usr/bin/layerd" check-config "$T/root/etc/layerd/spec.yaml" >/dev/null; }
check "... and passes the packaged layerd's check-config" spec_ok
units_same() { cmp -s "$T/root/lib/systemd/system/layerd.service" packaging/systemd/layerd.service &&
  cmp -s "$T/root/lib/systemd/system/layerd.socket" packaging/systemd/layerd.socket; }
check "the packaged units are packaging/systemd's" units_same
if command -v man >/dev/null; then
  man_ok() { MANWIDTH=80 man -l --warnings "$T/root/usr/share/man/man8/layerd.8.gz" 2>"$T/man.err" >"$T/man.out" &&
    [[ ! -s $T/man.err ]] && grep -q 'layerd - node-local registry mirror' "$T/man.out"; }
  check "layerd(8) renders without groff warnings" man_ok
else
  skip "layerd(8) renders without groff warnings" "man is not installed"
fi
finish
