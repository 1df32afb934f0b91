#!/usr/bin/env bash
# `layerd doctor` against real files and processes: containerd configs as
# operators write them (the table each config version reads, the wrong one,
# mirrors beside config_path), containerd's own version (Debian's 1.6.20, from
# its binary and from a private containerd's socket), hosts files (in step,
# missing, stale, hand-written), a running layerd, endpoints that answer and
# one that does not, the cache on tmpfs, the JSON form, and serve's start-up
# line. (The CRI pull that proves the wrong table bypasses layerd is in test-cri.sh.)
. "$(dirname "$0")/lib.sh"
require_tools containerd docker-registry

HOSTS=$T/certs.d
PO=$(free_port) PA=$(free_port) PD=$(free_port)
SPEC=$T/spec.yaml
cat >"$SPEC" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PA
  cache_dir: $T/cache
registries:
  "127.0.0.1:$PO":
    origin: http://127.0.0.1:$PO
YAML
# The same registry with a dead mirror before the origin.
cat >"$T/spec-dead.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PA
  cache_dir: $T/cache
registries:
  "127.0.0.1:$PO":
    origin: http://127.0.0.1:$PO
    endpoints:
      - url: http://127.0.0.1:$PD
      - url: http://127.0.0.1:$PO
YAML

# config NAME TOML_LINE...: a containerd config in $T/NAME.toml.
config() { local name=$1; shift; printf '%s\n' "$@" >"$T/$name.toml"; }
V2_TABLE='[plugins."io.containerd.grpc.v1.cri".registry]'
V3_TABLE='[plugins."io.containerd.cri.v1.images".registry]'
config good 'version = 2' "$V2_TABLE" "  config_path = \"$HOSTS\""
config wrong 'version = 2' "$V3_TABLE" "  config_path = \"$HOSTS\""
config none 'version = 2' "$V2_TABLE" '  [plugins."io.containerd.grpc.v1.cri".registry.auths]'
config elsewhere 'version = 2' "$V2_TABLE" '  config_path = "/etc/docker/certs.d"'
config v3 'version = 3' "$V3_TABLE" "  config_path = \"$HOSTS\""
config mirrors 'version = 2' "$V2_TABLE" "  config_path = \"$HOSTS\"" \
  '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]' '    endpoint = ["https://mirror.example.com"]'
config configs_tls 'version = 2' "$V2_TABLE" "  config_path = \"$HOSTS\"" \
  '  [plugins."io.containerd.grpc.v1.cri".registry.configs."127.0.0.1".tls]' '    insecure_skip_verify = true'
config nocri 'version = 2' 'disabled_plugins = ["io.containerd.grpc.v1.cri"]' "$V2_TABLE" "  config_path = \"$HOSTS\""
config broken 'version = 2' "$V2_TABLE" '  config_path = "unterminated'
# Valid TOML that containerd itself will not load (oom_score is a number).
config refused 'version = 2' 'oom_score = "high"' "$V2_TABLE" "  config_path = \"$HOSTS\""
# containerd 2.x's own layout with no config_path: its default directories apply.
config v3_default 'version = 3' '[plugins."io.containerd.cri.v1.images".pinned_images]' '  sandbox = "pause:3.10"'
config v3_mirrors 'version = 3' "$V3_TABLE" "  config_path = \"$HOSTS\"" \
  '  [plugins."io.containerd.cri.v1.images".registry.mirrors."docker.io"]' '    endpoint = ["https://mirror.example.com"]'

# doctor NAME CONFIG [OPTIONS...]: `layerd doctor` with the spec and hosts dir
# above and no containerd socket (the version comes from the binary), bounded; its output in $T/NAME.out, its exit status in $rc.
doctor() {
  local name=$1 cfg=$2; shift 2
  LAST=$T/doctor-$name
  timeout 60 "$LAYERD" doctor --spec "$SPEC" --containerd-config "$T/$cfg.toml" --hosts-dir "$HOSTS" \
    --containerd-socket "$T/none.sock" "$@" \
    >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
# line STATUS CHECK [REGEX]: the last doctor run printed "STATUS CHECK: ..." (matching REGEX).
line() { grep -E "^$1 +${2//./\\.}: .*${3:-}" "$LAST.out" >/dev/null; }
# fixed: the check line just before a "fix:" line, for the check named.
fixed() { grep -A1 -E "^(warn|fail) +${1//./\\.}: " "$LAST.out" | grep -qE '^     fix: .+\.$'; }

"$LAYERD" doctor --help >"$T/out"; check "doctor --help exits 0" test $? -eq 0
check "doctor --help names every option" grep -q -- "--containerd-config FILE.*--hosts-dir DIR" <(tr -d '\n' <"$T/out")
"$LAYERD" doctor --format yaml >/dev/null 2>&1; check "doctor --format yaml exits 2" test $? -eq 2
"$LAYERD" doctor extra >/dev/null 2>&1; check "doctor with an argument exits 2" test $? -eq 2
"$LAYERD" doctor --spec "$T/nope.yaml" >/dev/null 2>&1; check "doctor with a missing spec exits 2" test $? -eq 2

# ---- a healthy node: origin up, layerd serving and writing the hosts files ------------------
registry origin "$PO"
layerd_serve "$T/layerd.log" "$SPEC" --write-hosts "$HOSTS" --containerd-config "$T/good.toml"
DIAG_FILES=("$T/layerd.log")
checkd "layerd serve listens" wait_port "$PA" 10
checkd "the origin listens" wait_port "$PO" 10
checkd "the hosts file is written" wait_for 10 test -f "$HOSTS/127.0.0.1:$PO/hosts.toml"
checkd "serve logs the start-up checks at info when all is well" \
  wait_for 10 grep -qsE '^<6>doctor ok=[0-9]+ warn=0 fail=0 ' "$T/layerd.log"

doctor good good
checkd "good node: exit 0" test "$rc" -eq 0
checkd "good node: config_path under the version-2 table" line ok containerd.config_path 'grpc\.v1\.cri'
checkd "good node: containerd's own dump was read" line ok containerd.config 'containerd config dump'
checkd "good node: containerd 1.6.20 from its binary" line ok containerd.version '1\.6\.20 \(from containerd --version\)'
checkd "good node: the hosts files match the spec" line ok hosts.files '1 files'
checkd "good node: layerd answers" line ok layerd.listen "127\.0\.0\.1:$PA/v2/ answers 200"
checkd "good node: layerd is ready" line ok layerd.ready
checkd "good node: the origin answers /v2/" line ok "endpoint.127.0.0.1:$PO.0" "answers 200"
checkd "good node: the cache directory" line ok cache.dir
checkd "good node: the cache's space" line ok cache.space
checkd "good node: nothing but ok" eval 'grep -qE "^ok " "$LAST.out" && absent -E "^(warn|fail) " "$LAST.out"'
checkd "good node: the summary line" grep -qxE '[0-9]+ ok, 0 warn, 0 fail' "$LAST.out"

doctor json good --format json
checkd "--format json: one valid document whose counts match its checks" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
st = [c["status"] for c in d["checks"]]
assert all(set(c) == {"name", "status", "message", "fix"} for c in d["checks"]), d
assert d["ok"] == st.count("ok") and d["warn"] == st.count("warn") and d["fail"] == st.count("fail"), d
assert d["fail"] == 0 and any(c["name"] == "containerd.config_path" for c in d["checks"]), d' "$LAST.out"
doctor json-wrong wrong --format json --offline
checkd "--format json: a failing check carries its fix, exit 1" /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = [c for c in d["checks"] if c["name"] == "containerd.config_path"][0]
assert c["status"] == "fail" and c["fix"].endswith(".") and "io.containerd.grpc.v1.cri" in c["fix"], c
assert d["fail"] >= 1' "$LAST.out"
checkd "--format json: exit 1 on a failure" test "$rc" -eq 1

# ---- containerd's config, wrong in each way operators get it wrong ------------------------
doctor wrong wrong --offline
checkd "wrong table: exit 1" test "$rc" -eq 1
checkd "wrong table: config_path fails, naming the table it sits under" \
  line fail containerd.config_path 'io\.containerd\.cri\.v1\.images.*version-2 file does not read'
checkd "wrong table: the fix names the table to use" fixed containerd.config_path
checkd "wrong table: --offline contacts no endpoint" \
  eval 'grep -q "^[a-z]* *containerd\.config_path:" "$LAST.out" && absent "^[a-z]* *endpoint\." "$LAST.out"'
doctor none none --offline
checkd "no config_path: fails" line fail containerd.config_path 'no config_path under \[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]'
doctor elsewhere elsewhere --offline
checkd "config_path elsewhere: fails, naming both directories" \
  line fail containerd.config_path "/etc/docker/certs\.d.*not the directory.*$HOSTS"
doctor v3 v3 --offline
checkd "a version-3 file on containerd 1.6: fails" line fail containerd.config_path 'reads it as version 2'
doctor mirrors mirrors --offline
checkd "registry.mirrors beside config_path: fails (1.6 refuses the CRI plugin)" \
  line fail containerd.mirrors 'docker\.io.*refuses to start the CRI plugin'
checkd "registry.mirrors: the fix" fixed containerd.mirrors
doctor configs configs_tls --offline
checkd "registry.configs tls beside config_path: fails" line fail containerd.mirrors 'tls table beside config_path'
doctor nocri nocri --offline
checkd "CRI plugin disabled: warns" line warn containerd.cri 'disabled_plugins'
doctor broken broken --offline
checkd "a config containerd cannot parse: fails with its position" line fail containerd.config 'broken\.toml:3:'
doctor refused refused --offline
checkd "a config containerd's own dump refuses: fails" line fail containerd.config 'config dump exited with 1'
doctor absent absent --offline
checkd "no config file on containerd 1.6: fails" line fail containerd.config 'absent'

# ---- containerd's version ------------------------------------------------------------------
sed 's/^registries:/hosts:\n  containerd_version: "2.0.7"\nregistries:/' "$SPEC" >"$T/spec-207.yaml"
LAST=$T/doctor-207
timeout 60 "$LAYERD" doctor --spec "$T/spec-207.yaml" --containerd-config "$T/good.toml" --hosts-dir "$HOSTS" --offline \
  >"$LAST.out" 2>&1
checkd "a spec for 2.0.7 on a 1.6.20 node: fails" line fail containerd.version '1\.6\.20.*older than hosts\.containerd_version 2\.0\.7'
# No socket and no binary: unknown, the 1.6 rules, said as a warning.
mkdir -p "$T/bin" && ln -sf "$(command -v timeout)" "$T/bin/timeout"
# A 2.x node (the spec says so; no binary here to dump the config): a version-3
# file without config_path has 2.x's default, which names /etc/containerd/certs.d.
sed 's/^registries:/hosts:\n  containerd_version: "2.0.7"\nregistries:/' "$SPEC" >"$T/spec-2.yaml"
LAST=$T/doctor-v3default
PATH=$T/bin timeout 60 "$LAYERD" doctor --spec "$T/spec-2.yaml" --containerd-config "$T/v3_default.toml" \
  --hosts-dir /etc/containerd/certs.d --containerd-socket "$T/none.sock" --offline >"$LAST.out" 2>&1
checkd "containerd 2.x without config_path: its default directory" \
  line ok containerd.config_path "/etc/containerd/certs\.d:/etc/docker/certs\.d.*2\.x's default"
LAST=$T/doctor-v3mirrors
PATH=$T/bin timeout 60 "$LAYERD" doctor --spec "$T/spec-2.yaml" --containerd-config "$T/v3_mirrors.toml" \
  --hosts-dir "$HOSTS" --containerd-socket "$T/none.sock" --offline >"$LAST.out" 2>&1
checkd "containerd 2.x: mirrors beside config_path fail too" line fail containerd.mirrors 'refuses to start the CRI plugin'

LAST=$T/doctor-nobin
PATH=$T/bin timeout 60 "$LAYERD" doctor --spec "$SPEC" --containerd-config "$T/good.toml" --hosts-dir "$HOSTS" \
  --containerd-socket "$T/none.sock" --offline >"$LAST.out" 2>&1
checkd "no socket, no binary: the version is unknown (warn)" line warn containerd.version 'unknown.*containerd 1\.6'
checkd "without the binary the file itself is read" line ok containerd.config 'version 2$'
# A private containerd: the version comes from its socket.
containerd_start "$T/ctrd"
checkd "a private containerd answers" wait_for 10 ctrd_up
LAST=$T/doctor-sock
PATH=$T/bin timeout 60 "$LAYERD" doctor --spec "$SPEC" --containerd-config "$T/good.toml" --hosts-dir "$HOSTS" \
  --containerd-socket "$SOCK" --offline >"$LAST.out" 2>&1
checkd "containerd's socket gives its version" line ok containerd.version '1\.6\.20 \(from its socket\)'

# ---- the hosts files -------------------------------------------------------------------------
F=$HOSTS/127.0.0.1:$PO/hosts.toml
cp "$F" "$T/hosts.orig"
sed -i 's/capabilities = \["pull", "resolve"\]/capabilities = ["pull"]/' "$F"
doctor stale good --offline
checkd "a managed file that differs from the spec: stale (warn)" line warn hosts.files '1 stale'
sed -i 1d "$F"
doctor foreign good --offline
checkd "a hand-written file for a mirrored registry: fails" line fail hosts.files '1 not written by layerd'
rm "$F"
doctor missing good --offline
checkd "a missing file: fails" line fail hosts.files '1 missing'
checkd "hosts.files: the fix says how to write them" fixed hosts.files
cp "$T/hosts.orig" "$F"

# ---- endpoints -------------------------------------------------------------------------------
LAST=$T/doctor-dead
timeout 60 "$LAYERD" doctor --spec "$T/spec-dead.yaml" --containerd-config "$T/good.toml" --hosts-dir "$T/hosts-dead" \
  >"$LAST.out" 2>&1
checkd "a dead mirror before a live origin: warn" line warn "endpoint.127.0.0.1:$PO.0" "127\.0\.0\.1:$PD"
checkd "the live origin: ok" line ok "endpoint.127.0.0.1:$PO.1" 'answers 200'
kill "$REGISTRY_PID"; wait_exit "$REGISTRY_PID" 10
LAST=$T/doctor-alldead
timeout 60 "$LAYERD" doctor --spec "$T/spec-dead.yaml" --containerd-config "$T/good.toml" --hosts-dir "$T/hosts-dead" \
  >"$LAST.out" 2>&1
checkd "no endpoint of a registry answers: each fails" \
  bash -c "grep -qE '^fail +endpoint\.127\.0\.0\.1:$PO\.0: ' '$LAST.out' && grep -qE '^fail +endpoint\.127\.0\.0\.1:$PO\.1: ' '$LAST.out'"
checkd "no endpoint answers: exit 1" test "$(timeout 60 "$LAYERD" doctor --spec "$T/spec-dead.yaml" \
  --containerd-config "$T/good.toml" --hosts-dir "$T/hosts-dead" >/dev/null 2>&1; echo $?)" -eq 1

# ---- layerd down, the cache on tmpfs ---------------------------------------------------------
kill "$LAYERD_PID"; wait_exit "$LAYERD_PID" 10
doctor down good --offline
checkd "layerd not running: fails" line fail layerd.listen "127\.0\.0\.1:$PA/v2/"
SHM=$(mktemp -d /dev/shm/layerd-test.XXXXXX)
sed "s|cache_dir: .*|cache_dir: $SHM/cache|" "$SPEC" >"$T/spec-shm.yaml"
LAST=$T/doctor-shm
mkdir -p "$SHM/cache"
timeout 60 "$LAYERD" doctor --spec "$T/spec-shm.yaml" --containerd-config "$T/good.toml" --hosts-dir "$HOSTS" --offline \
  >"$LAST.out" 2>&1
checkd "a cache on tmpfs: warns" line warn cache.dir 'tmpfs'
rm -rf "$SHM"

# ---- serve's start-up line with a misconfigured node -----------------------------------------
layerd_serve "$T/layerd2.log" "$SPEC" --write-hosts "$HOSTS" --containerd-config "$T/wrong.toml"
DIAG_FILES=("$T/layerd2.log")
checkd "serve warns at start-up about the wrong table, and serves" \
  wait_for 10 grep -qsE '^<4>doctor ok=[0-9]+ warn=[0-9]+ fail=1 containerd\.config_path=fail ' "$T/layerd2.log"
checkd "serve still answers" wait_port "$PA" 10
kill "$LAYERD_PID"; wait_exit "$LAYERD_PID" 10
# A version-3 file on this 1.6.20 node: serve's line knows the node's version from --write-hosts.
layerd_serve "$T/layerd4.log" "$SPEC" --write-hosts "$HOSTS" --containerd-config "$T/v3.toml" --containerd-socket "$T/none.sock"
DIAG_FILES=("$T/layerd4.log")
checkd "serve: a version-3 file on containerd 1.6 is caught at start-up" \
  wait_for 10 grep -qsE '^<4>doctor .*containerd\.config_path=fail ' "$T/layerd4.log"
kill "$LAYERD_PID"; wait_exit "$LAYERD_PID" 10
# In a container the node's config is not there: a warning, not a failure;
# without --write-hosts the hosts files are not judged.
layerd_serve "$T/layerd3.log" "$SPEC" --containerd-config "$T/not-mounted.toml"
DIAG_FILES=("$T/layerd3.log")
checkd "serve: a containerd config not found is a warning" \
  wait_for 10 grep -qsE '^<4>doctor ok=[0-9]+ warn=1 fail=0 containerd\.config=warn ' "$T/layerd3.log"
# The start-up line names every check that is not ok (containerd.config=warn here);
# hosts.files against /etc/containerd/certs.d would not be ok.
checkd "serve without --write-hosts does not judge the hosts files" \
  eval 'grep -qE "^<4>doctor .* containerd\.config=warn " "$T/layerd3.log" && absent "hosts.files" "$T/layerd3.log"'

finish
