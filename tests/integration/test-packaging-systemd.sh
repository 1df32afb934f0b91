#!/usr/bin/env bash
# packaging/systemd (issue 8): systemd-analyze verifies the units and rates the
# sandbox; the units agree with the default spec (paths, listen address); and
# the service's own ExecStart and ExecReload lines, pointed at a temp dir, run
# layerd with the default spec: it serves, pulls, writes the hosts files,
# reloads and stops cleanly, and what it did under strace would pass the
# unit's SystemCallFilter=, RestrictAddressFamilies= and MemoryDenyWriteExecute=.
. "$(dirname "$0")/lib.sh"

U=packaging/systemd
SPEC=packaging/spec.yaml

# unit_get FILE KEY: the values of KEY= in FILE, one a line.
unit_get() { sed -n "s/^$2=//p" "$1"; }
# spec_get KEY: agent.KEY of the default spec, as check-config normalises it.
spec_get() { "$LAYERD" check-config "$SPEC" | sed -n "s/^  $1: //p"; }

# ---- systemd-analyze --------------------------------------------------------------------
mkdir -p "$T/units"
# The installed path of the binary does not exist here; verify checks that ExecStart's does.
sed "s#/usr/bin/layerd#$LAYERD#g" "$U/layerd.service" >"$T/units/layerd.service"
cp "$U/layerd.socket" "$T/units/layerd.socket"
if command -v systemd-analyze >/dev/null; then
  # --man=no: the man page is installed by the package, not here.
  (cd "$T/units" && timeout 60 systemd-analyze verify --man=no layerd.socket layerd.service) >"$T/verify.out" 2>&1
  rc=$?
  check "systemd-analyze verify passes, silent (exit $rc)" test "$rc" -eq 0 -a ! -s "$T/verify.out"
  sed 's/^/# /' "$T/verify.out" >&2
  # The same check on a unit with a misspelt directive: it does complain.
  sed 's/^ProtectHome=/ProtectHomee=/' "$T/units/layerd.service" >"$T/units/broken.service"
  (cd "$T/units" && timeout 60 systemd-analyze verify --man=no broken.service) >"$T/broken.out" 2>&1
  check "... and complains about a misspelt directive (the check can fail)" grep -q ProtectHomee "$T/broken.out"
  # --threshold is on the 0-100 scale of the 0.0-10.0 level it prints.
  timeout 60 systemd-analyze security --offline=yes --threshold=25 "$T/units/layerd.service" >"$T/security.out" 2>&1
  rc=$?
  level=$(sed -n 's/.*Overall exposure level for layerd.service: \([0-9.]*\).*/\1/p' "$T/security.out")
  check "systemd-analyze security rates the sandbox 2.5 or better of 10 (${level:-none})" test "$rc" -eq 0 -a -n "$level"
else
  skip "systemd-analyze verify" "systemd-analyze is not installed (make deps)"
  skip "systemd-analyze verify complains about a misspelt directive" "systemd-analyze is not installed"
  skip "systemd-analyze security" "systemd-analyze is not installed"
fi

# ---- the units' settings ----------------------------------------------------------------
S=$U/layerd.service
exec_start=$(unit_get "$S" ExecStart)
opt() { local a; read -ra a <<<"$exec_start"; for ((i = 0; i < ${#a[@]} - 1; i++)); do [[ ${a[i]} == "$1" ]] && echo "${a[i + 1]}"; done; }
check "Type=notify with a WatchdogSec" test "$(unit_get "$S" Type) $(unit_get "$S" WatchdogSec | grep -c .)" = "notify 1"
check "Restart=on-failure, not on a bad spec (RestartPreventExitStatus=2)" \
  test "$(unit_get "$S" Restart) $(unit_get "$S" RestartPreventExitStatus)" = "on-failure 2"
check "ExecStart runs /usr/bin/layerd serve --spec /etc/layerd/spec.yaml" \
  test "${exec_start%% --*} $(opt --spec)" = "/usr/bin/layerd serve /etc/layerd/spec.yaml"
check "ExecReload sends SIGHUP" test "$(unit_get "$S" ExecReload)" = '/bin/kill -HUP $MAINPID'
check "StateDirectory=layerd is the default spec's cache_dir" \
  test "/var/lib/$(unit_get "$S" StateDirectory)" = "$(spec_get cache_dir)"
rw=$(unit_get "$S" ReadWritePaths)
hosts_rw() { local p; for p in $rw; do [[ ${p#-} == "$(opt --write-hosts)" ]] && return 0; done; return 1; }
check "ReadWritePaths holds the --write-hosts directory ($(opt --write-hosts))" hosts_rw
check "ConfigurationDirectory= creates the --write-hosts directory" \
  test "/etc/$(unit_get "$S" ConfigurationDirectory)" = "$(opt --write-hosts)"
cache_rw() { [[ " $rw " == *" $(spec_get cache_dir) "* ]]; }
check "ReadWritePaths holds the cache directory" cache_rw
sandbox() {
  local kv
  for kv in ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
    SystemCallFilter=@system-service CapabilityBoundingSet= AmbientCapabilities=; do
    grep -qx "$kv" "$S" || { echo "# missing: $kv" >&2; return 1; }
  done
}
check "sandbox: ProtectSystem=strict, NoNewPrivileges, PrivateTmp, ProtectHome, @system-service, no capabilities" sandbox
check "layerd.socket listens on the default spec's agent.listen ($(spec_get listen))" \
  test "$(unit_get "$U/layerd.socket" ListenStream)" = "$(spec_get listen)"
check "the socket unit and the service name each other" \
  test "$(unit_get "$S" Requires) $(unit_get "$S" Also)" = "layerd.socket layerd.socket"
spec_valid() { "$LAYERD" check-config "$SPEC" >/dev/null; }
check "the default spec is valid" spec_valid

# ---- the service's command lines, run -----------------------------------------------------
# With docker-registry and skopeo (as root), a private origin with a test image
# joins the default spec, so the run pulls through layerd too (miss, then hit).
# With strace, the run is traced, and its system calls, socket families and
# mappings are held against the unit's sandbox (check-syscalls.py): the
# sandbox itself needs a running systemd, which this machine has not.
port=$(free_port)
sed "s#^  listen: .*#  listen: 127.0.0.1:$port#; s#^  cache_dir: .*#  cache_dir: $T/cache#" "$SPEC" >"$T/spec.yaml"
PO=
if command -v docker-registry >/dev/null && command -v skopeo >/dev/null && [[ $(id -u) -eq 0 ]]; then
  PO=$(free_port)
  registry origin "$PO"
  oci_layout "$T/img" >"$T/img.digests" && chmod -R a+rX "$T/img" && wait_port "$PO" 10 &&
    skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/img:v1" "docker://127.0.0.1:$PO/test/app:v1"
  check "a private origin serves a test image" test $? -eq 0
  # By name, as the public registries are: localhost resolves through /etc/hosts (nsswitch, netlink).
  printf '  "127.0.0.1:%s":\n    origin: http://localhost:%s\n' "$PO" "$PO" >>"$T/spec.yaml"
else
  skip "a private origin serves a test image" "needs root, docker-registry and skopeo (make deps)"
fi
cmd=${exec_start//\/usr\/bin\/layerd/$LAYERD}
cmd=${cmd//\/etc\/layerd\/spec.yaml/$T/spec.yaml}
cmd=${cmd//\/etc\/containerd\/certs.d/$T/certs.d}
read -ra argv <<<"$cmd"
tracer=()
command -v strace >/dev/null && tracer=(strace -f -qq -o "$T/strace.out")
"${tracer[@]}" "${argv[@]}" >"$T/layerd.log" 2>&1 &
RUNPID=$!
PIDS+=("$RUNPID")
MAINPID=$RUNPID
if ((${#tracer[@]})); then
  # By name: strace may have a short-lived helper child of its own next to layerd.
  traced_child() { MAINPID=$(pgrep -x -P "$RUNPID" "$(basename "$LAYERD")" | head -n 1); [[ -n $MAINPID ]]; }
  wait_for 10 traced_child
fi
DIAG_FILES=("$T/layerd.log")
checkd "ExecStart (paths in a temp dir) serves on the spec's address" wait_port "$port" 10
checkd "GET /v2/ answers 200" test "$(http GET "http://127.0.0.1:$port/v2/")" = 200
hosts_written() {
  local r
  for r in docker.io ghcr.io quay.io registry.k8s.io gcr.io; do
    grep -qsF "[host.\"http://127.0.0.1:$port\"]" "$T/certs.d/$r/hosts.toml" || return 1
  done
}
checkd "--write-hosts wrote a hosts.toml naming layerd for each of the 5 registries" wait_for 10 hosts_written
if [[ -n $PO ]]; then
  mapfile -t D <"$T/img.digests"
  # pulled OUTCOME: the manifest and each blob through layerd, bytes as digested, the blobs cache=OUTCOME.
  pulled() {
    local d m
    m=$(mark "$T/layerd.log")
    [[ $(httpx "http://127.0.0.1:$port/v2/test/app/manifests/v1?ns=127.0.0.1:$PO" \
      -H 'Accept: application/vnd.oci.image.manifest.v1+json') == 200 ]] || return 1
    [[ sha256:$(sha256sum <"$T/body" | cut -d' ' -f1) == "${D[0]}" ]] || return 1
    for d in "${D[@]:1}"; do
      [[ $(http GET "http://127.0.0.1:$port/v2/test/app/blobs/$d?ns=127.0.0.1:$PO") == 200 ]] || return 1
      [[ sha256:$(sha256sum <"$T/body" | cut -d' ' -f1) == "$d" ]] || return 1
      since "$T/layerd.log" "$m" | grep -qE "^<6>request method=GET .* ref=$d status=200 .* cache=$1( |\$)" || return 1
    done
  }
  checkd "a pull through it: manifest and blobs from the origin, verified (cache=miss)" pulled miss
  checkd "the same again from its cache (cache=hit)" pulled hit
fi
reload=$(unit_get "$S" ExecReload)
reload=${reload//\$MAINPID/$MAINPID}
$reload
checkd "ExecReload: layerd reloads the spec and keeps serving" wait_for 10 grep -q '^<6>reloaded ' "$T/layerd.log"
checkd "... still answering" test "$(http GET "http://127.0.0.1:$port/v2/")" = 200
stop_timeout=$(unit_get "$S" TimeoutStopSec)
kill -TERM "$MAINPID"
wait_exit "$RUNPID" "${stop_timeout%s}"
checkd "SIGTERM (systemd's stop) ends it with status 0 within TimeoutStopSec ($status)" test "$status" = 0
if ((${#tracer[@]})) && command -v systemd-analyze >/dev/null; then
  /usr/bin/python3 tests/integration/check-syscalls.py "$T/strace.out" "$S" >"$T/syscalls" 2>"$T/syscalls.err"
  check "check-syscalls.py ran" test $? -eq 0
  while read -r pass what; do
    if [[ $pass == 1 ]]; then ok "sandbox: $what"; else not_ok "sandbox: $what"; fi
  done <"$T/syscalls"
  diag_tail "$T/syscalls.err"
else
  skip "the traced run against the unit's sandbox" "needs strace and systemd-analyze (make deps)"
fi
finish
