#!/usr/bin/env bash
# packaging/debian (issue 8): `make deb`'s script builds the package from a copy
# of this tree with dpkg-buildpackage; lintian finds no error in it; it holds
# the binary, the units, the default spec (a conffile), the man page, the
# docs and README.Debian; its maintainer scripts enable the socket and the service (started only
# under a running systemd) and remove the cache on purge; the packaged binary
# runs and is this tree's version; dpkg installs, removes and purges it in a
# directory (dpkg --root: no chroot, which would need a Debian root file
# system that debootstrap fetches from the network).
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
lintian_rc=$?
# Its exit status (1 on an error tag) stands whatever its output looks like.
no_errors() { ((lintian_rc == 0)) && absent '^E: ' "$T/lintian.out"; }
check "lintian: no error ($(grep -c '^W: ' "$T/lintian.out") warnings)" no_errors
sed 's/^/# /' "$T/lintian.out" >&2

dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$T/contents"
has_files() {
  local f
  for f in /usr/bin/layerd /lib/systemd/system/layerd.service /lib/systemd/system/layerd.socket \
    /etc/layerd/spec.yaml /usr/share/man/man8/layerd.8.gz /usr/share/doc/layerd/copyright \
    /usr/share/doc/layerd/spec.md.gz /usr/share/doc/layerd/doctor.md.gz /usr/share/doc/layerd/hosts.md.gz \
    /usr/share/doc/layerd/changelog.gz; do
    grep -qxF "$f" "$T/contents" || { echo "# missing: $f" >&2; return 1; }
  done
  # dh_compress compresses it once it passes 4 KiB.
  grep -qxE '/usr/share/doc/layerd/README\.Debian(\.gz)?' "$T/contents" ||
    { echo "# missing: /usr/share/doc/layerd/README.Debian" >&2; return 1; }
}
check "contents: binary, both units, default spec, man page, copyright, docs, README.Debian" has_files

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

# ---- dpkg -i into a directory ----------------------------------------------------------------
# dpkg --root with --force-script-chrootless: the maintainer scripts run here with
# DPKG_ROOT set, and deb-systemd-helper enables the units inside that root. The
# dependencies (libraries) are not in it: --force-depends. Not where a systemd
# runs: the postinst would ask it to reload.
I=$T/installed
DIAG_FILES=("$T/dpkg.out")
dpkg_root() { timeout 60 dpkg --root="$I" --force-script-chrootless --force-depends --force-not-root \
  --log="$I/dpkg.log" "$@" >>"$T/dpkg.out" 2>&1; }
if [[ -d /run/systemd/system ]]; then
  skip "dpkg -i into a directory" "unsupported: a systemd runs here, which the postinst would talk to"
else
  mkdir -p "$I/var/lib/dpkg/info" "$I/var/lib/dpkg/updates" "$I/usr/sbin"
  : >"$I/var/lib/dpkg/status"
  # Belt and braces: deb-systemd-invoke reads DPKG_ROOT's policy-rc.d; 101 = start nothing.
  printf '#!/bin/sh\nexit 101\n' >"$I/usr/sbin/policy-rc.d"; chmod 0755 "$I/usr/sbin/policy-rc.d"
  dpkg_root -i "$deb"
  checkd "dpkg -i installs it into a directory, maintainer scripts run" test $? -eq 0
  installed() { dpkg-query --admindir="$I/var/lib/dpkg" -W -f='${Status}' layerd 2>/dev/null; }
  checkd "dpkg says: install ok installed" test "$(installed)" = "install ok installed"
  enabled() {
    [[ $(readlink "$I/etc/systemd/system/sockets.target.wants/layerd.socket") == /lib/systemd/system/layerd.socket &&
      $(readlink "$I/etc/systemd/system/multi-user.target.wants/layerd.service") == /lib/systemd/system/layerd.service ]]
  }
  checkd "postinst enabled layerd.socket (sockets.target) and layerd.service (multi-user.target)" enabled
  mkdir -p "$I/var/lib/layerd/blobs"
  dpkg_root --remove layerd
  kept() { [[ ! -e $I/usr/bin/layerd && -d $I/var/lib/layerd/blobs && -f $I/etc/layerd/spec.yaml ]]; }
  checkd "dpkg --remove: the binary goes, the cache and the conffile stay" kept
  dpkg_root --purge layerd
  purged() {
    [[ ! -e $I/var/lib/layerd && ! -e $I/etc/layerd/spec.yaml &&
      ! -e $I/etc/systemd/system/sockets.target.wants/layerd.socket &&
      ! -e $I/etc/systemd/system/multi-user.target.wants/layerd.service ]]
  }
  checkd "dpkg --purge: the cache, the spec and the unit links are gone" purged
fi

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
  skip "layerd(8) renders without groff warnings" "man is not installed (make deps)"
fi
finish
