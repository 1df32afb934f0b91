#!/usr/bin/env bash
# `layerd serve` re-reads its spec when the file changes on disk (issue 19):
# a spec directory laid out as the kubelet lays out a ConfigMap volume
# (a timestamped directory, "..data" pointing at it, "spec.yaml ->
# ..data/spec.yaml"), updated as the kubelet updates it (a new timestamped
# directory, a "..data_tmp" symlink renamed over "..data", the old directory
# removed). A bad spec is rejected whole (the old one keeps serving, one
# error with line:col), a good one is taken and --write-hosts follows, a
# change of metadata or identical bytes reloads nothing, a plain file
# rewritten in place reloads, a credentials file in the same volume is
# followed by its own mechanism and reloads no spec, and without inotify (its limits at 0 in a user
# namespace) the spec is still followed, by stat().
#
# The peers are private to this test, on free loopback ports: one upstream.py
# serving app:v1 for every registry name ("rN.test:PORT", each with the
# fixture as its origin), and layerd instances whose caches are under $T.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_tools curl "$PY"

DIAG_FILES=()
checkd() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; diag_tail "${DIAG_FILES[@]}"; fi; }
logged() { since "$1" "$2" | grep -qF -- "$3"; }
logged_re() { since "$1" "$2" | grep -qE -- "$3"; }
count_re() { since "$1" "$2" | grep -cE -- "$3"; }
# pull PORT REGISTRY: the status of GET app:v1's manifest through layerd on PORT for REGISTRY.
pull() { curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/v2/app/manifests/v1?ns=$2.test:$PF"; }
serves() { [[ $(pull "$1" "$2") == "$3" ]]; }

checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
manifest_json() {
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":2},"layers":[]}' \
    "$(printf '%064d' 0)" >"$1"
}
manifest_json "$T/manifest.json"
serve_app() { fixture_manifest "$FX" app v1 "$T/manifest.json" >/dev/null; }
checkd "the fixture serves app:v1" serve_app

# spec FILE PORT REGISTRY...: a valid spec for a layerd on PORT serving the registries.
spec() {
  local f=$1 port=$2 r; shift 2
  {
    printf 'version: 1\nagent:\n  listen: 127.0.0.1:%s\n  cache_dir: %s\nregistries:\n' "$port" "$T/cache-$port"
    for r in "$@"; do printf '  "%s.test:%s":\n    origin: %s\n' "$r" "$PF" "$FX"; done
  } >"$f"
}

# ---- the kubelet's volume ---------------------------------------------------------------
CM=$T/configmap
TS=0
# kubelet_update FILE: the volume now holds FILE as spec.yaml, swapped in as the
# kubelet's atomic writer does it.
kubelet_update() {
  local old new
  old=$(readlink "$CM/..data" 2>/dev/null || true)
  TS=$((TS + 1))
  new=..2026_12_07_21_00_0$TS.00000000$TS
  mkdir -p "$CM/$new"
  cp "$1" "$CM/$new/spec.yaml"
  ln -s "$new" "$CM/..data_tmp"
  mv -T "$CM/..data_tmp" "$CM/..data"
  [[ -e $CM/spec.yaml || -L $CM/spec.yaml ]] || ln -s ..data/spec.yaml "$CM/spec.yaml"
  [[ -z $old ]] || rm -rf "${CM:?}/$old"
}

PA=$(free_port)
LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fixture.log")
mkdir -p "$CM"
spec "$T/v1.yaml" "$PA" r0 r1
kubelet_update "$T/v1.yaml"
checkd "the volume is laid out as the kubelet's (spec.yaml -> ..data/spec.yaml)" \
  test "$(readlink "$CM/spec.yaml")" = ..data/spec.yaml -a -f "$CM/..data/spec.yaml"
layerd_serve "$LOG" "$CM/spec.yaml" --write-hosts "$T/hosts" --containerd-socket "$T/no-containerd.sock" \
  --log-level debug
LP=$LAYERD_PID
checkd "layerd listens" wait_port "$PA" 10
checkd "r0 is served (200)" serves "$PA" r0 200
checkd "r1 is served (200)" serves "$PA" r1 200
checkd "r2 is not in the spec (404)" serves "$PA" r2 404
checkd "--write-hosts wrote r0's hosts file" wait_for 5 test -f "$T/hosts/r0.test:$PF/hosts.toml"

# ---- a bad spec swapped in: rejected whole, the old one serves on ------------------------
spec "$T/v2.yaml" "$PA" r1 r2
printf '    mirror: maybe\n' >>"$T/v2.yaml"  # an unknown key, on the last line
bad_line=$(wc -l <"$T/v2.yaml")
cp -a "$T/hosts" "$T/hosts.before"
m=$(mark "$LOG")
kubelet_update "$T/v2.yaml"
checkd "a bad spec swapped in: \"reload rejected\" at error level" wait_for 5 logged_re "$LOG" "$m" '^<3>.*reload rejected'
echo "# $(since "$LOG" "$m" | grep -m1 'reload rejected' | cut -c1-300)"
checkd "... naming the file with line:col ($CM/spec.yaml:$bad_line:N)" \
  logged_re "$LOG" "$m" "^<3>.*$CM/spec\.yaml:$bad_line:[0-9]+"
checkd "... one reload for the whole swap" test "$(count_re "$LOG" "$m" 'reload rejected')" = 1
checkd "... no \"reloaded\" line" absent '^<6>reloaded' <(since "$LOG" "$m")
checkd "the old spec serves on: r0 (200)" serves "$PA" r0 200
checkd "... r1 (200)" serves "$PA" r1 200
checkd "... not the rejected spec's r2 (404)" serves "$PA" r2 404
checkd "the hosts files are untouched" diff -r "$T/hosts.before" "$T/hosts"

# ---- a good spec swapped in: taken within 5 s, --write-hosts follows ---------------------
spec "$T/v3.yaml" "$PA" r1 r2
m=$(mark "$LOG"); t0=$(now_ms)
kubelet_update "$T/v3.yaml"
checkd "a good spec swapped in: r2 is served within 5 s" wait_for 5 serves "$PA" r2 200
echo "# the new registry was served after $(($(now_ms) - t0)) ms"
checkd "... logged (\"spec changed on disk\", then \"reloaded\" with registries=2)" \
  wait_for 5 logged_re "$LOG" "$m" "^<6>reloaded spec=\"$CM/spec\.yaml\" registries=2"
checkd "... the change said first" logged "$LOG" "$m" "spec changed on disk path=\"$CM/spec.yaml\""
checkd "r1 is served on (200)" serves "$PA" r1 200
checkd "r0, no longer in the spec, is not (404)" serves "$PA" r0 404
checkd "--write-hosts follows: r2's hosts file written" wait_for 5 test -f "$T/hosts/r2.test:$PF/hosts.toml"
checkd "... r0's pruned" wait_for 5 not test -e "$T/hosts/r0.test:$PF"
"$LAYERD" hosts --spec "$T/v3.yaml" --dir "$T/ref" --listen "127.0.0.1:$PA" \
  --containerd-socket "$T/no-containerd.sock" >/dev/null 2>&1
checkd "... the same files as layerd hosts writes for the new spec" diff -r "$T/ref" "$T/hosts"

# ---- changes that are no change: nothing reloaded ---------------------------------------
m=$(mark "$LOG")
kubelet_update "$T/v3.yaml"  # a re-sync writing the same bytes
checkd "a swap to identical bytes: looked at (one debug line, \"spec unchanged on disk\")" \
  wait_for 5 logged "$LOG" "$m" "spec unchanged on disk path=\"$CM/spec.yaml\""
sleep 0.5
checkd "... nothing reloaded (no \"spec changed\", no \"reloaded\" line)" \
  not logged_re "$LOG" "$m" '(spec changed on disk|^<6>reloaded)'

# ---- SIGHUP still reloads, through the same path ----------------------------------------
m=$(mark "$LOG")
kill -HUP "$LP"
checkd "SIGHUP reloads as before" wait_for 5 logged_re "$LOG" "$m" '^<6>reloaded spec=.* registries=2'
# An edit followed at once by `systemctl reload` (kill -HUP): one reload, not two.
spec "$T/v4.yaml" "$PA" r1 r2 r3
m=$(mark "$LOG")
kubelet_update "$T/v4.yaml"
kill -HUP "$LP"
checkd "a swap then SIGHUP: r3 served" wait_for 5 serves "$PA" r3 200
sleep 1  # past the watcher's look
checkd "... one reload for both (the watcher found the signal's spec already read)" \
  test "$(count_re "$LOG" "$m" '^<6>reloaded'):$(count_re "$LOG" "$m" 'spec unchanged on disk')" = 1:1
checkd "layerd stops with 0" stop "$LP"
checkd "... exit status 0" test "$status" = 0

# ---- credentials in the same volume: followed on their own, never a spec reload ----------
# A projected volume holding the spec and a credentials_file (config.json): a
# swap that changes only the credentials is credsource's (fallback/), read
# once; the spec's bytes are the same, so no reload. A later spec change keeps
# the credentials working.
checkd "a fixture with Basic auth starts" fixture_start authfx
PQ=$FIXTURE_PORT
FQ=http://127.0.0.1:$PQ
basic_auth() { fixture_json PUT "$FQ/_fixture/auth" "{\"mode\": \"basic\", \"user\": \"u\", \"password\": \"$1\"}"; }
dockercfg() { printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}' "$PQ" "$(basic_b64 u "$1")" >"$2"; }
CM=$T/projected
TS=0
# volume_update SPEC CONFIG_JSON: both files swapped in at once, as the kubelet does.
volume_update() {
  local old new
  old=$(readlink "$CM/..data" 2>/dev/null || true)
  TS=$((TS + 1))
  new=..2026_12_07_22_00_0$TS.00000000$TS
  mkdir -p "$CM/$new"
  cp "$1" "$CM/$new/spec.yaml"
  cp "$2" "$CM/$new/config.json"
  ln -s "$new" "$CM/..data_tmp"
  mv -T "$CM/..data_tmp" "$CM/..data"
  [[ -L $CM/spec.yaml ]] || ln -s ..data/spec.yaml "$CM/spec.yaml"
  [[ -L $CM/config.json ]] || ln -s ..data/config.json "$CM/config.json"
  [[ -z $old ]] || rm -rf "${CM:?}/$old"
}
# cspec FILE REGISTRY...: a spec whose "a" registry needs the volume's credentials.
cspec() {
  local f=$1; shift
  spec "$f" "$PC" "$@"
  printf '  "a.test:%s":\n    origin: %s\n    endpoints: [{url: %s, credentials_file: %s}]\n' \
    "$PQ" "$FQ" "$FQ" "$CM/config.json" >>"$f"
}
# blob_pull: a blob new to layerd, through registry a; 0 when it came whole.
bi=0
blob_pull() {
  local d
  bi=$((bi + 1))
  d=$(random_file "$T/cblob$bi" 4096)
  fixture_call PUT "$FQ/_fixture/blob/$d" "$T/cblob$bi" || return 1
  get "http://127.0.0.1:$PC/v2/app/blobs/$d?ns=a.test:$PQ" "$T/cgot$bi"
  [[ $code == 200 ]] && cmp -s "$T/cblob$bi" "$T/cgot$bi"
}
PC=$(free_port)
LOG=$T/layerd-creds.log
DIAG_FILES=("$LOG" "$T/authfx.log")
mkdir -p "$CM"
basic_auth pw-one
cspec "$T/c1.yaml" r1
dockercfg pw-one "$T/cfg1.json"
volume_update "$T/c1.yaml" "$T/cfg1.json"
layerd_serve "$LOG" "$CM/spec.yaml" --log-level debug
LP=$LAYERD_PID
checkd "layerd (spec and credentials in one volume) listens" wait_port "$PC" 10
checkd "a pull with the first password" blob_pull
basic_auth pw-two
dockercfg pw-two "$T/cfg2.json"
m=$(mark "$LOG")
volume_update "$T/c1.yaml" "$T/cfg2.json"
checkd "a swap changing only the credentials: the spec looked at, unchanged" \
  wait_for 5 logged "$LOG" "$m" "spec unchanged on disk"
sleep 1.2  # credsource looks at the file once a second at most
checkd "... a pull with the new password" blob_pull
checkd "... the credentials updated once (credsource), no spec reload" \
  test "$(count_re "$LOG" "$m" 'credentials updated: ns=a\.test'):$(count_re "$LOG" "$m" '(spec changed on disk|^<6>reloaded)')" = 1:0
m=$(mark "$LOG")
cspec "$T/c2.yaml" r1 r2
volume_update "$T/c2.yaml" "$T/cfg2.json"
checkd "a spec change in the same volume: reloaded" wait_for 5 logged_re "$LOG" "$m" '^<6>reloaded spec=.* registries=3'
checkd "... r2 served" serves "$PC" r2 200
checkd "... and pulls through the credentials go on" blob_pull
# A spec naming a credentials_file that is not there yet (a Secret volume
# updated after the ConfigMap): rejected, then retried after the backoff
# (5 s) once the file exists, the spec untouched.
LATE=$T/late-config.json
spec "$T/c3.yaml" "$PC" r1 r2 r3
printf '  "a.test:%s":\n    origin: %s\n    endpoints: [{url: %s, credentials_file: %s}]\n' \
  "$PQ" "$FQ" "$FQ" "$LATE" >>"$T/c3.yaml"
m=$(mark "$LOG")
volume_update "$T/c3.yaml" "$T/cfg2.json"
checkd "a spec whose credentials_file is missing: rejected" wait_for 5 logged_re "$LOG" "$m" '^<3>.*reload rejected'
checkd "... a retry announced (\"looking at it again in 5 s\")" wait_for 2 logged "$LOG" "$m" "spec not applied, looking at it again in 5 s"
checkd "... r3 not served (404)" serves "$PC" r3 404
dockercfg pw-two "$LATE"
t0=$(now_ms)
checkd "the credentials file created (the spec untouched): r3 served within the backoff" wait_for 8 serves "$PC" r3 200
echo "# served after $(($(now_ms) - t0)) ms"
checkd "... reloaded once (registries=4)" test "$(count_re "$LOG" "$m" '^<6>reloaded spec=.* registries=4')" = 1
checkd "... pulls through the late credentials" blob_pull
sleep 1
checkd "... the retries end with it (one \"looking at it again\" line)" test "$(count_re "$LOG" "$m" 'looking at it again')" = 1
checkd "... never a password in the log" absent -e pw-one -e pw-two "$LOG"
checkd "layerd stops with 0" stop "$LP"

# ---- a plain file rewritten in place ----------------------------------------------------
PB=$(free_port)
LOG=$T/layerd-plain.log
DIAG_FILES=("$LOG" "$T/fixture.log")
mkdir -p "$T/plain"
spec "$T/plain/spec.yaml" "$PB" r0
layerd_serve "$LOG" "$T/plain/spec.yaml" --log-level debug
LP=$LAYERD_PID
checkd "layerd (plain spec file) listens" wait_port "$PB" 10
checkd "r0 is served (200)" serves "$PB" r0 200
m=$(mark "$LOG")
touch "$T/plain/spec.yaml"
checkd "a touch: looked at (\"spec unchanged on disk\")" wait_for 5 logged "$LOG" "$m" "spec unchanged on disk"
sleep 0.5
checkd "... nothing reloaded" not logged_re "$LOG" "$m" '(spec changed on disk|^<6>reloaded)'
m=$(mark "$LOG"); ino=$(stat -c %i "$T/plain/spec.yaml")
spec "$T/plain/spec.yaml" "$PB" r0 r2  # truncated and rewritten: the same inode
checkd "the file was rewritten in place (same inode)" test "$(stat -c %i "$T/plain/spec.yaml")" = "$ino"
checkd "an in-place rewrite: r2 is served within 5 s" wait_for 5 serves "$PB" r2 200
checkd "... one reload" test "$(count_re "$LOG" "$m" '^<6>reloaded')" = 1
m=$(mark "$LOG")
spec "$T/plain/spec.yaml.new" "$PB" r2
mv "$T/plain/spec.yaml.new" "$T/plain/spec.yaml"
checkd "a rename over it (as sed -i, editors): r0 is dropped within 5 s" wait_for 5 serves "$PB" r0 404
checkd "... r2 served on" serves "$PB" r2 200
checkd "layerd stops with 0" stop "$LP"

# ---- --no-watch: SIGHUP only --------------------------------------------------------------
LOG=$T/layerd-nowatch.log
DIAG_FILES=("$LOG")
spec "$T/plain/spec.yaml" "$PB" r0
layerd_serve "$LOG" "$T/plain/spec.yaml" --no-watch
LP=$LAYERD_PID
checkd "layerd --no-watch listens" wait_port "$PB" 10
spec "$T/plain/spec.yaml" "$PB" r0 r2
sleep 1.5  # past the debounce and a stat()
checkd "--no-watch: an edit is not taken (r2 404)" serves "$PB" r2 404
kill -HUP "$LP"
checkd "... until SIGHUP (r2 200)" wait_for 5 serves "$PB" r2 200
checkd "layerd stops with 0" stop "$LP"

# ---- no inotify: the stat() fallback, said once -----------------------------------------
# In a user namespace of its own, inotify's limits are the namespace's: no watch
# may be added (ENOSPC, as when fs.inotify.max_user_watches is used up).
LOG=$T/layerd-nowatches.log
DIAG_FILES=("$LOG")
if ! unshare -U -r sh -c 'echo 0 >/proc/sys/user/max_inotify_watches' 2>"$T/unshare.err"; then
  skip "without inotify watches: the spec is followed by stat()" \
    "unsupported: no user namespace with its own inotify limits here: $(head -c 200 "$T/unshare.err")"
else
  spec "$T/plain/spec.yaml" "$PB" r0
  unshare -U -r sh -c 'echo 0 >/proc/sys/user/max_inotify_watches && exec "$@"' sh \
    "$LAYERD" serve --spec "$T/plain/spec.yaml" >"$LOG" 2>&1 &
  LP=$!; PIDS+=("$LP")
  checkd "layerd without inotify watches listens" wait_port "$PB" 10
  checkd "... says once that it checks the spec by stat()" \
    wait_for 5 grep -qE '^<4>cannot watch the spec.s directory .*No space left on device; checking the spec every 2 s' "$LOG"
  m=$(mark "$LOG")
  spec "$T/plain/spec.yaml.new" "$PB" r0 r2
  mv "$T/plain/spec.yaml.new" "$T/plain/spec.yaml"
  checkd "... and takes a changed spec within 5 s (r2 200)" wait_for 5 serves "$PB" r2 200
  checkd "... the fallback logged once" test "$(grep -c 'cannot watch the spec' "$LOG")" = 1
  checkd "layerd stops with 0" stop "$LP"
fi

finish
