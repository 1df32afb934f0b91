# Shared helpers for integration tests: TAP output, free ports, bounded waits.
# Everything runs on 127.0.0.1 in a temp dir removed at exit; every process a
# test starts is stopped by PID.
set -uo pipefail

LAYERD=$(realpath "${LAYERD:-./layerd}")
T=$(mktemp -d /tmp/layerd-test.XXXXXX)
PIDS=()
n=0

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: one TAP line from a command's exit status.
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
finish() { echo "1..$n"; }
# require_root WHY: unless root, the whole test is skipped (TAP "1..0 # SKIP").
# require_tools' skips count as failures in tests/run when run as root (CI).
require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "1..0 # SKIP $1"
    exit 0
  fi
}

# require_tools PROGRAM...: unless every PROGRAM is installed, the whole test is skipped.
require_tools() {
  local b
  for b in "$@"; do
    command -v "$b" >/dev/null || { echo "1..0 # SKIP $b is not installed (make deps)"; exit 0; }
  done
}

# A port nobody listens on right now (the kernel picks it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT [SECONDS]: until something accepts on 127.0.0.1:PORT, bounded.
wait_port() {
  local port=$1 deadline=$((SECONDS + ${2:-10}))
  while ((SECONDS < deadline)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# wait_exit PID [SECONDS]: until PID (a child of this shell) has exited, bounded;
# its exit status lands in $status ("timeout" when it did not exit). Not for
# use in $(...): a subshell cannot wait for its parent's children.
status=
wait_exit() {
  local pid=$1 deadline=$((SECONDS + ${2:-10}))
  status=timeout
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; status=$?; return 0; fi
    sleep 0.05
  done
  return 1
}

# http METHOD URL: prints the status code; headers to $T/headers, body to $T/body.
http() {
  curl -s --max-time 5 -X "$1" -o "$T/body" -D "$T/headers" -w '%{http_code}' "$2"
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds, bounded.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}
# absent GREP_ARGUMENTS...: grep finds nothing: exit 1, not the 2 of an error
# (a missing file), which `! grep` would take for "absent". A negative check
# also asserts a line of the same format that must be there, so that it cannot
# pass because the format changed.
absent() { grep -q "$@"; (($? == 1)); }
# ctr_no_next_host FILE: ctr's --debug output in FILE shows it resolving (its
# log format is what we read) and containerd never moving on to a next host.
ctr_no_next_host() { grep -q 'msg=resolving host="' "$1" && absent 'trying next host' "$1"; }
# mark FILE: its current line count; since FILE MARK: the lines added after it.
mark() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }
since() { tail -n "+$(($2 + 1))" "$1"; }

# ---- real registries (Debian's docker-registry, distribution v2) and skopeo ----------
# registry NAME PORT [YAML]: a docker-registry on 127.0.0.1:PORT with its own
# storage under $T, its log (the access log included) in $T/NAME.log, its PID
# in $REGISTRY_PID (and in PIDS). YAML: more top-level configuration (auth:,
# proxy:). A proxy-mode registry asks its upstream's /v2/ at start-up.
REGISTRY_PID=
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
${3:-}
YAML
  docker-registry serve "$T/$1.yml" >>"$T/$1.log" 2>&1 &
  REGISTRY_PID=$!
  PIDS+=("$!")
}

# requests LOG MARK: docker-registry's access-log lines for /v2/ API calls since MARK.
requests() { since "$1" "$2" | grep -E '"(GET|HEAD) /v2/[^ ]+ HTTP/[0-9.]+" [0-9]+ ' || true; }

# oci_layout DIR [--index] [--layers SIZE,SIZE...]: a test image as an OCI
# layout in DIR, tagged v1: two layers of random bytes (64 KiB each, gzipped
# tar), linux/amd64. Prints its digests one a line: manifest, config, layer 0,
# layer 1. With --layers, one layer per SIZE (bytes of random payload) instead.
# With --index, also a linux/arm64 image (one layer) and an OCI index of both
# tagged "multi"; printed after those: index, arm64 manifest, its config, its layer.
oci_layout() {
  /usr/bin/python3 - "$@" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
out = sys.argv[1]
with_index = "--index" in sys.argv[2:]
sizes = [64 * 1024] * 2
if "--layers" in sys.argv[2:]:
    sizes = [int(x) for x in sys.argv[sys.argv.index("--layers") + 1].split(",")]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
def image(arch, layer_sizes):
    layers, diff_ids = [], []
    for i, size in enumerate(layer_sizes):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            payload = os.urandom(size)
            ti = tarfile.TarInfo("layer%d/data.bin" % i)
            ti.size, ti.mode = len(payload), 0o644
            t.addfile(ti, io.BytesIO(payload))
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        layers.append(dict(mediaType="application/vnd.oci.image.layer.v1.tar+gzip", **put(gzip.compress(raw.getvalue()))))
    config = dict(mediaType="application/vnd.oci.image.config.v1+json", **put(json.dumps(
        {"architecture": arch, "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()))
    manifest = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **put(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": config, "layers": layers}).encode()))
    return manifest, [manifest, config] + layers
manifest, digests = image("amd64", sizes)
refs = [dict(manifest, annotations={"org.opencontainers.image.ref.name": "v1"})]
if with_index:
    arm, arm_digests = image("arm64", [64 * 1024])
    index = dict(mediaType="application/vnd.oci.image.index.v1+json", **put(json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            dict(manifest, platform={"architecture": "amd64", "os": "linux"}),
            dict(arm, platform={"architecture": "arm64", "os": "linux"})]}).encode()))
    refs.append(dict(index, annotations={"org.opencontainers.image.ref.name": "multi"}))
    digests += [index] + arm_digests
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": refs}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
for d in digests:
    print(d["digest"])
PY
}

# skopeo_copy SKOPEO_COPY_ARGUMENTS...: `skopeo copy` as nobody, bounded, its
# output appended to $T/skopeo.log. As root skopeo would keep its blob-info
# cache in /var/lib/containers; as another user it uses $XDG_DATA_HOME, here
# under $T. The sources must be readable by nobody.
skopeo_copy() {
  chmod 711 "$T"
  mkdir -p "$T/skopeo"; chown 65534:65534 "$T/skopeo"
  printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$T/policy.json"; chmod 644 "$T/policy.json"
  timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
    env -i PATH=/usr/bin:/bin HOME="$T/skopeo" XDG_DATA_HOME="$T/skopeo" XDG_CONFIG_HOME="$T/skopeo" \
    XDG_RUNTIME_DIR="$T/skopeo" TMPDIR="$T/skopeo" \
    skopeo --policy "$T/policy.json" copy "$@" >>"$T/skopeo.log" 2>&1
}

# httpx URL CURL_OPTIONS...: like http, with any curl options (-I, -r, -H, --path-as-is).
httpx() {
  local url=$1; shift
  curl -s --max-time 5 -o "$T/body" -D "$T/headers" -w '%{http_code}' "$@" "$url"
}
# header NAME: the value of header NAME in the last http/httpx answer ($T/headers).
header() { tr -d '\r' <"$T/headers" | sed -n "s/^$1: *//Ip" | tail -n 1; }

# refuses PORT: nothing accepts connections on 127.0.0.1:PORT.
refuses() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stop PID [SECONDS]: SIGTERM to PID (a child of this shell) and wait for its
# exit, bounded; its exit status lands in $status.
stop() { kill -TERM "$1" 2>/dev/null; wait_exit "$1" "${2:-10}"; }

# hung_listener PORT SECONDS: a listener on 127.0.0.1:PORT that never accepts:
# the kernel completes handshakes into its backlog and nobody answers (a hung
# server). Its PID in $HUNG_PID (and in PIDS).
HUNG_PID=
hung_listener() {
  /usr/bin/python3 - "$1" "$2" <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
time.sleep(int(sys.argv[2]))
PY
  HUNG_PID=$!
  PIDS+=("$!")
}

# from_layerd LOG MARK: docker-registry's access-log lines for layerd's requests since MARK.
from_layerd() { requests "$1" "$2" | grep -F '"layerd/' || true; }

# diag_tail FILE...: the last lines of each non-empty FILE, as TAP comments on stderr.
diag_tail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    echo "# --- last lines of $f"
    tail -n 15 "$f" | cut -c1-400 | sed 's/^/#   /'
  done >&2
}

# ---- layerd serve ---------------------------------------------------------------------
# layerd_serve LOG SPEC SERVE_OPTIONS...: `layerd serve` in the background, its
# stderr and stdout in LOG; its PID in $LAYERD_PID (and in PIDS).
LAYERD_PID=
layerd_serve() {
  local log=$1 spec=$2; shift 2
  "$LAYERD" serve --spec "$spec" "$@" >"$log" 2>&1 &
  LAYERD_PID=$!
  PIDS+=("$!")
}
# in_cache DIR DIGEST...: every DIGEST is a committed blob of the layerd cache in DIR.
in_cache() {
  local dir=$1 d h; shift
  for d in "$@"; do
    h=${d#sha256:}
    [[ -f $dir/blobs/sha256/${h:0:2}/$h ]] || return 1
  done
}

# ---- small helpers the layerd serve suites share ----------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }
size_of() { stat -c %s "$1"; }
not() { ! "$@"; }
# random_file FILE SIZE: SIZE random bytes in FILE; prints their sha256 digest.
random_file() {
  head -c "$2" /dev/urandom >"$1"
  echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"
}
# valid_spec FILE: `layerd check-config` accepts FILE.
valid_spec() { "$LAYERD" check-config "$1" >/dev/null; }
# get URL FILE [CURL_OPTIONS...]: GET URL into FILE, bounded (20 s unless the options
# say); the status in $code, curl's exit status in $crc, the bytes received in $got,
# the wall time in $ms.
code='' crc='' got='' ms=''
get() {
  local url=$1 out=$2 t0 w; shift 2
  t0=$(now_ms)
  w=$(curl -s --max-time 20 -o "$out" -D "$out.headers" -w '%{http_code} %{size_download}' "$@" "$url")
  crc=$?
  ms=$(($(now_ms) - t0))
  code=${w% *} got=${w#* }
}

# leaks FILE DIR: FILE holds 32 bytes in a row of any file in DIR (the blobs of
# a private image, manifest included): what a client was not to get.
leaks() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys
got = open(sys.argv[1], "rb").read()
for name in os.listdir(sys.argv[2]):
    data = open(os.path.join(sys.argv[2], name), "rb").read()
    for off in range(0, max(1, len(data) - 32), 997):
        if data[off:off + 32] in got:
            sys.exit(0)
sys.exit(1)
PY
}
# basic_b64 USER PASSWORD: base64 of "USER:PASSWORD", as a Basic header or a docker config.json "auth" holds it.
basic_b64() { printf '%s:%s' "$1" "$2" | base64 -w0; }
# challenged FILE: the last get (into FILE) was layerd's 401 with its Basic challenge.
challenged() { [[ $code == 401 ]] && grep -qi '^WWW-Authenticate: Basic realm="layerd"' "$1.headers"; }

# layerd_hosts HOSTS_DIR REGISTRY: a containerd hosts file under HOSTS_DIR that
# resolves and pulls REGISTRY through the layerd on 127.0.0.1:$PA only.
layerd_hosts() {
  mkdir -p "$1/$2"
  printf 'server = "http://%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' "$2" "$PA" \
    >"$1/$2/hosts.toml"
}
# ---- private images through layerd (test-private*.sh) -----------------------------------
# The cases both suites run on a private image pulled through layerd. The suite
# defines: PRIV (the image's digests: manifest, config, layers; its OCI layout
# in $T/priv), USER_OK, PASS_OK, PASS_BAD, REG (the registry's name, hosts
# files in $T/hosts), blob_gets (the origin's blob GETs so far), checks_count
# (its manifest and blob requests so far), and a layerd on $PA logging to
# $T/layerd.log with auth_verdict_ttl: 1s.
# no_leak FILE: not a byte of the private image in FILE; url PATH: layerd's URL
# for /v2/PATH of $REG; fetch_all NAMESPACE REF [FETCH_OPTIONS...]: ctr pulls $REG/REF.
no_leak() { not leaks "$1" "$T/priv/blobs/sha256"; }
url() { echo "http://127.0.0.1:$PA/v2/$1?ns=$REG"; }
fetch_all() { local ns=$1; shift; ctr_fetch "$ns" "$T/hosts" "$REG/$1" "${@:2}"; }
# private_cold ORIGIN: the first pull by ctr --user, challenged, passed through,
# cached; each blob asked of ORIGIN (its name in the check lines) once. Sets $cold_gets.
cold_gets=
private_cold() {
  fetch_all cold team/app:v1 --user "$USER_OK:$PASS_OK"
  checkd "cold: ctr --user pulls the private image through layerd" test "$rc" = 0
  checkd "cold: every blob of it is in containerd's store" ctr_has cold "${PRIV[@]}"
  checkd "cold: layerd challenged, then passed the credentials through" \
    eval 'grep -q "repo=team/app .*status=401 .*auth=challenge" "$T/layerd.log" &&
          grep -q "repo=team/app .*status=200 .*auth=passthrough" "$T/layerd.log"'
  checkd "cold: every blob is in layerd's cache" wait_for 5 in_cache "$T/cache" "${PRIV[@]}"
  cold_gets=$(blob_gets)
  checkd "cold: each blob was asked of $1 once ($cold_gets GETs for $((${#PRIV[@]} - 1)))" \
    test "$cold_gets" = $((${#PRIV[@]} - 1))
}
# served_from_cache MARK DIGEST...: layerd's log since MARK has a GET of each
# DIGEST of team/app answered from its cache, with the client's credentials.
served_from_cache() {
  local l=$1 d; shift
  for d in "$@"; do
    since "$T/layerd.log" "$l" | grep -q "method=GET .*repo=team/app ref=$d status=200 .*cache=hit .*auth=passthrough" ||
      return 1
  done
}
# private_warm ORIGIN: past auth_verdict_ttl, a pull by ctr --user from layerd's
# cache: no blob GET at ORIGIN, at most one authorization check.
private_warm() {
  sleep 1.2  # past auth_verdict_ttl: the warm pull asks the origin once
  local c0 c1 l
  c0=$(checks_count) l=$(mark "$T/layerd.log")
  fetch_all warm team/app:v1 --user "$USER_OK:$PASS_OK"
  checkd "warm: ctr --user pulls it again" test "$rc" = 0
  checkd "warm: every blob in containerd's store" ctr_has warm "${PRIV[@]}"
  checkd "warm: no blob GET reached $1" test "$(blob_gets)" = "$cold_gets"
  c1=$(checks_count)
  checkd "warm: at most one authorization check reached $1 ($((c1 - c0)))" test $((c1 - c0)) -le 1
  checkd "warm: layerd served every blob from its cache (cache=hit)" served_from_cache "$l" "${PRIV[@]:1}"
  checkd "warm: the log says verdict hits" \
    eval 'since "$T/layerd.log" "$l" | grep -q "repo=team/app .*cache=hit .*auth=passthrough verdict=verdict-hit"'
}
# private_others LAYER: clients without or with wrong credentials get layerd's
# 401 and not a byte of the manifest, the tag or any blob; curl with the right
# ones gets PRIV[LAYER]'s bytes.
private_others() {
  local d kind
  for d in "${PRIV[@]}"; do
    kind=blobs; [[ $d == "${PRIV[0]}" ]] && kind=manifests
    get "$(url "team/app/$kind/$d")" "$T/anon"
    checkd "no credentials: 401 challenge and not a byte of $kind/${d:7:12}" \
      eval 'challenged "$T/anon" && no_leak "$T/anon"'
    get "$(url "team/app/$kind/$d")" "$T/bad" -u "$USER_OK:$PASS_BAD"
    checkd "wrong credentials: 401 challenge and not a byte of $kind/${d:7:12}" \
      eval 'challenged "$T/bad" && no_leak "$T/bad"'
  done
  get "$(url team/app/manifests/v1)" "$T/anon-tag"
  checkd "no credentials: 401 for the tag, no bytes" eval 'challenged "$T/anon-tag" && no_leak "$T/anon-tag"'
  get "$(url team/app/manifests/v1)" "$T/bad-tag" -u "$USER_OK:$PASS_BAD"
  checkd "wrong credentials: 401 for the tag, no bytes" eval 'challenged "$T/bad-tag" && no_leak "$T/bad-tag"'
  d=${PRIV[$1]}
  get "$(url "team/app/blobs/$d")" "$T/good" -u "$USER_OK:$PASS_OK"
  checkd "right credentials (curl): the layer's bytes" cmp -s "$T/good" "$T/priv/blobs/sha256/${d#sha256:}"
}

# private_grace LOG LAYER: the origin stopped and layerd's verdict past
# auth_verdict_ttl: ctr --user still pulls the cached image (inside
# auth_outage_grace), which layerd's LOG says once for the pull's requests
# (it is written once a minute per repository); without or with wrong
# credentials, not a byte of PRIV[LAYER].
private_grace() {
  local log=$1 d=${PRIV[$2]}
  sleep 1.2  # the verdict is past auth_verdict_ttl: the origin would be asked
  fetch_all grace team/app:v1 --user "$USER_OK:$PASS_OK"
  checkd "origin down: ctr --user pulls the cached private image" test "$rc" = 0
  checkd "origin down: every blob" ctr_has grace "${PRIV[@]}"
  checkd "origin down: the log says so, once for the pull's requests ($(grep -c "auth=passthrough verdict=grace" "$log"))" \
    eval '[[ $(grep -c "within auth_outage_grace .* suppressed=0$" "$log") == 1 &&
            $(grep -c "within auth_outage_grace" "$log") == 1 &&
            $(grep -c "auth=passthrough verdict=grace" "$log") -ge 4 ]]'
  get "$(url "team/app/blobs/$d")" "$T/anon-down"
  checkd "origin down: no credentials, still 401 and no bytes" eval 'challenged "$T/anon-down" && no_leak "$T/anon-down"'
  get "$(url "team/app/blobs/$d")" "$T/bad-down" -u "$USER_OK:$PASS_BAD"
  checkd "origin down: wrong credentials, no bytes" eval '[[ $code != 200 ]] && no_leak "$T/bad-down"'
}

# ---- a private containerd (Debian 12: containerd 1.6) and ctr --------------------------
# containerd_start DIR: a containerd with its root, state and socket under DIR,
# without CRI or special snapshotters, and a content store per namespace
# (content_sharing_policy = "isolated": a fresh namespace downloads every blob
# again). Its log in DIR/log, its socket in $SOCK, its PID in PIDS.
SOCK=
# containerd_config_head DIR [DISABLED_PLUGIN...]: the part of a private
# containerd's config both kinds share: root, state, sockets under DIR, no
# debug or metrics listener, the special snapshotters and opt off. Sets $SOCK.
containerd_config_head() {
  local dir=$1 more=""; shift
  (($#)) && more=$(printf '"%s", ' "$@")
  SOCK=$dir/containerd.sock
  cat <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [$more"io.containerd.internal.v1.opt",
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
TOML
}
containerd_start() {
  mkdir -p "$1"
  {
    containerd_config_head "$1" io.containerd.grpc.v1.cri
    cat <<TOML
[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
TOML
  } >"$1/config.toml"
  SOCK=$1/containerd.sock
  containerd --config "$1/config.toml" >"$1/log" 2>&1 &
  PIDS+=("$!")
}
# containerd_cri_start DIR [TOML_LINE...]: a containerd like containerd_start's
# but with the CRI plugin enabled, the kubelet's path: root, state, socket and
# ttrpc socket under DIR, the streaming server on a port the kernel picks
# ("0", which 1.6 accepts), CNI pointed at empty directories under DIR (image
# pulls need no network plugin and nothing of the host's is read), no cgroups,
# AppArmor or OOM-score changes. Each TOML_LINE is appended to the config (the
# registry table under test). The config in DIR/config.toml, the log in
# DIR/log, the socket in $SOCK, the PID in $CONTAINERD_PID (and in PIDS).
# The CRI plugin keeps its images in the namespace "k8s.io" and unpacks them
# into the overlayfs snapshotter.
CONTAINERD_PID=
containerd_cri_start() {
  local dir=$1; shift
  mkdir -p "$dir/cni-bin" "$dir/cni-conf"
  {
    containerd_config_head "$dir"
    cat <<TOML
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "127.0.0.1:1/pause:never-pulled"
  disable_cgroup = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni-bin"
    conf_dir = "$dir/cni-conf"
TOML
    printf '%s\n' "$@"
  } >"$dir/config.toml"
  SOCK=$dir/containerd.sock
  containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
  CONTAINERD_PID=$!
  PIDS+=("$!")
}
# ctrd_up: the containerd of containerd_start answers on its socket.
ctrd_up() { timeout 5 ctr -a "$SOCK" version >/dev/null 2>&1; }

# ctr_fetch NAMESPACE HOSTS_DIR REF [FETCH_OPTIONS...]: `ctr --debug content
# fetch` of REF into NAMESPACE with the hosts directory HOSTS_DIR, bounded (30 s).
# Output in $LAST.out and $LAST.err (LAST=$T/fetch-NAMESPACE), the exit status in $rc.
LAST= rc=
ctr_fetch() {
  local ns=$1 dir=$2 ref=$3; shift 3
  LAST=$T/fetch-$ns
  timeout 30 ctr --debug -a "$SOCK" -n "$ns" content fetch --hosts-dir "$dir" "$@" "$ref" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
# ctr_resolve_order FILE: the hosts ctr tried to resolve the tag on, in order, from its --debug output.
ctr_resolve_order() { grep -o 'msg=resolving host="[^"]*"' "$1" | sed 's/.*host="//; s/"$//' | paste -sd' '; }
# ctr_image_digest NAMESPACE REF: the manifest digest of containerd's image record for REF.
ctr_image_digest() {
  timeout 10 ctr -a "$SOCK" -n "$1" images ls 2>/dev/null | awk -v r="$2" '$1 == r { print $3 }'
}
# ctr_has NAMESPACE DIGEST...: every DIGEST is in NAMESPACE's content store.
ctr_has() {
  local ns=$1 d; shift
  timeout 10 ctr -a "$SOCK" -n "$ns" content ls -q >"$T/content-$ns" 2>/dev/null || return 1
  for d in "$@"; do grep -qxF "$d" "$T/content-$ns" || return 1; done
}

# ---- layerd fetch ---------------------------------------------------------------------
# fetch NAME ARGUMENTS...: `layerd fetch`, bounded (30 s); stdout in $T/NAME.out,
# stderr in $T/NAME.err ($LAST is $T/NAME), the exit status in $rc.
fetch() {
  LAST=$T/$1; shift
  timeout 30 "$LAYERD" fetch "$@" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
# field LINE KEY: the value of KEY= on line LINE of the last fetch's output.
field() { sed -n "$1p" "$LAST.out" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# answered LINE ENDPOINT [DIGEST [VERIFIED]]: line LINE is a 200 from ENDPOINT,
# verified (or VERIFIED), with DIGEST when given.
answered() {
  [[ $(field "$1" status) == 200 && $(field "$1" endpoint) == "$2" ]] || return 1
  [[ $(field "$1" verified) == "${4:-yes}" ]] || return 1
  [[ -z ${3:-} || $(field "$1" digest) == "$3" ]]
}
# DIAG_FILES: the logs a failing checkd shows besides the last fetch's output.
DIAG_FILES=()
# checkd DESCRIPTION COMMAND...: check; when it fails, the last lines of the last
# fetch's output and of DIAG_FILES as TAP comments.
checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail ${LAST:+"$LAST.out" "$LAST.err"} "${DIAG_FILES[@]}"
  fi
}
# skip DESCRIPTION REASON: a TAP line for a check that cannot run here. Run as
# root (CI), tests/run counts a skip as a failure unless REASON begins with
# "unsupported:" (this machine cannot run it at all; a missing package is not that).
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

# ---- the fault-injecting fixture (tests/fixtures/upstream.py) -------------------------
FIXTURE=$(realpath "$(dirname "${BASH_SOURCE[0]}")/../fixtures/upstream.py")
FIXTURE_CURL=()  # more curl options for its control API (--cacert for an HTTPS fixture)
# fixture_start NAME [UPSTREAM_OPTIONS...]: upstream.py on a free 127.0.0.1 port,
# its stderr in $T/NAME.log; its port in $FIXTURE_PORT, its PID in $FIXTURE_PID
# (and in PIDS). Fails unless it listens within 10 s.
FIXTURE_PORT= FIXTURE_PID=
fixture_start() {
  local name=$1; shift
  FIXTURE_PORT=
  /usr/bin/python3 "$FIXTURE" --port-file "$T/$name.port" "$@" >"$T/$name.log" 2>&1 &
  FIXTURE_PID=$!
  PIDS+=("$!")
  wait_for 10 test -s "$T/$name.port" || return 1
  FIXTURE_PORT=$(cat "$T/$name.port")  # written once it listens
}
# fixture_call METHOD URL [BODY_FILE]: a request to a fixture's control API, the
# answer in $T/fx; succeeds on a 2xx status.
fixture_call() {
  local code body=()
  [[ -n ${3:-} ]] && body=(--data-binary "@$3")
  code=$(curl -s --max-time 5 "${FIXTURE_CURL[@]}" -X "$1" "${body[@]}" -o "$T/fx" -w '%{http_code}' "$2")
  [[ $code == 2?? ]]
}
# put_blob FILE: the test's fixture ($FX) serves FILE as a blob; prints its digest.
put_blob() {
  local d; d="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  fixture_call PUT "$FX/_fixture/blob/$d" "$1" && echo "$d"
}
# rules JSON: the test's fixture's ($FX) rule list (replaces the previous one).
rules() { fixture_json PUT "$FX/_fixture/rules" "$1"; }
# write_spec FILE PORT CACHE_DIR: a spec for a layerd on 127.0.0.1:PORT with its
# cache in CACHE_DIR; more agent keys and the registries are the YAML on stdin.
write_spec() {
  {
    printf 'version: 1\nagent:\n  listen: 127.0.0.1:%s\n  cache_dir: %s\n' "$2" "$3"
    cat
  } >"$1"
}
# fixture_json METHOD URL JSON: fixture_call with JSON as the body (rules, auth).
fixture_json() { printf '%s' "$3" >"$T/fx.json" && fixture_call "$1" "$2" "$T/fx.json"; }
# fixture_manifest BASE NAME REF FILE [MEDIA_TYPE]: the fixture at BASE serves FILE
# as NAME:REF with Content-Type MEDIA_TYPE (default: OCI image manifest); prints its digest.
fixture_manifest() {
  local type=${5:-application/vnd.oci.image.manifest.v1+json}
  fixture_call PUT "$1/_fixture/manifest/$2/$3?type=${type//+/%2B}" "$4" &&
    /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["digest"])' "$T/fx"
}
# fixture_push DIR REPO BASE: the fixture at BASE serves the blobs of the OCI
# layout DIR (its digests in DIR.digests, as oci_layout prints them) under
# REPO only, its manifest as REPO:v1.
fixture_push() {
  local d f
  for d in $(tail -n +2 "$1.digests"); do
    f=$1/blobs/sha256/${d#sha256:}
    fixture_call PUT "$3/_fixture/blob/$d?repos=$2" "$f" || return 1
  done
  d=$(head -n 1 "$1.digests")
  [[ $(fixture_manifest "$3" "$2" v1 "$1/blobs/sha256/${d#sha256:}") == "$d" ]]
}
# fixture_requests BASE [PATH_REGEX]: the /v2/ and /token requests the fixture at
# BASE logged (those whose path matches), one JSON object a line, keys sorted.
fixture_requests() {
  curl -s --max-time 5 "${FIXTURE_CURL[@]}" "$1/_fixture/log" | /usr/bin/python3 -c '
import json, re, sys
for e in json.load(sys.stdin):
    if re.search(sys.argv[1], e["path"]):
        print(json.dumps(e, sort_keys=True))' "${2:-}"
}
