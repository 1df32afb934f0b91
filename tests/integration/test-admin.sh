#!/usr/bin/env bash
# The admin API (issue 19): `layerd cache stats|ls|verify|gc|check`,
# `layerd prefetch --once` and `layerd status` through the running agent's
# unix socket, with curl against a layerd in front of the fixture origin
# (tests/fixtures/upstream.py). What is proven:
# - the socket is mode 0600: another user (nobody) cannot connect, even with
#   its directory open to everyone;
# - while a trickled blob downloads, cache stats/ls/verify answer through the
#   agent (its log says so) and the pull completes with the right bytes;
# - the same commands give the same output through the agent as offline on the
#   same cache after the agent stopped (ls sorted: its order is least recently
#   used first, and recency starts over at a restart);
# - prefetch --once runs a round in the agent and prints the summary table;
# - status, text and JSON (parsed with Python's json): the cache, the
#   prefetch round, the endpoint and its last error;
# - garbage, a request body and oversized headers on the socket are refused
#   (400, 413, 431; a bare word only gets the connection closed, libmicrohttpd's
#   way) and the agent serves on;
# - without an agent: status exits 1 and says so; a socket left by a killed
#   agent is replaced at the next start; --admin-socket '' keeps the offline
#   commands' refusal of a cache in use.
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "a second user (nobody) must be refused the admin socket"
require_tools curl setpriv /usr/bin/python3

PA=$(free_port)
LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fx.log")
checkd() {
  local d=$1; shift
  if "$@"; then ok "$d"; else
    not_ok "$d"
    diag_tail "${DIAG_FILES[@]}" ${LAST:+"$LAST.out" "$LAST.err"}
  fi
}

fixture_start fx || { not_ok "fixture starts"; finish; exit 1; }
FX=http://127.0.0.1:$FIXTURE_PORT REG=127.0.0.1:$FIXTURE_PORT
oci_layout "$T/app" >"$T/app.digests" && oci_layout "$T/big" --layers 400000 >"$T/big.digests"
mapfile -t APP <"$T/app.digests"
mapfile -t BIG <"$T/big.digests"
checkd "the origin serves test/app and test/big" \
  eval 'fixture_push "$T/app" test/app "$FX" && fixture_push "$T/big" test/big "$FX"'

# The socket in a directory everyone may enter: only its own mode keeps others out.
chmod 711 "$T"
mkdir -m 755 "$T/run"
SOCK=$T/run/admin.sock
write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
  admin_socket: $SOCK
registries:
  "$REG":
    origin: $FX
prefetch:
  interval: 1h
  wait_ready: false
  images: ["$REG/test/app:v1"]
YAML
start_layerd() {
  layerd_serve "$LOG" "$T/spec.yaml" "$@"
  wait_port "$PA" 10 && wait_for 10 test -S "$SOCK"
}
# run NAME COMMAND_ARGS...: layerd COMMAND_ARGS, bounded; output in $T/NAME.out and .err, status in $rc.
run() {
  LAST=$T/$1; shift
  timeout 60 "$LAYERD" "$@" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
admin_lines() { grep -c "admin command=$1" "$LOG"; }

checkd "layerd serves with its admin socket" start_layerd
checkd "the socket is mode 0600, root's" test "$(stat -c '%a %u %F' "$SOCK")" = "600 0 socket"
checkd "the log names the socket" grep -q "admin API socket=\"$SOCK\"" "$LOG"
checkd "the first prefetch round completes" wait_for 20 in_cache "$T/cache" "${APP[@]}"
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
code=$(nobody curl -s --max-time 5 -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" http://admin/v1/status)
checkd "nobody cannot connect to the socket (curl: no answer)" test "$code" = 000
nobody "$LAYERD" status --admin-socket "$SOCK" >"$T/nobody.out" 2>&1
rc=$?
checkd "nobody's layerd status exits 1: permission denied" \
  eval '[[ $rc == 1 ]] && grep -q "cannot reach the agent.*Permission denied" "$T/nobody.out"'

# Another user's listener at the socket path is not believed: nothing is sent to it.
mkdir -m 777 "$T/other"
nobody /usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(4); time.sleep(30)' "$T/other/s" &
OTHER=$!
PIDS+=("$OTHER")
wait_for 5 test -S "$T/other/s"
run other status --admin-socket "$T/other/s"
kill "$OTHER" 2>/dev/null
checkd "a listener run by nobody: exit 1, refused" \
  eval '[[ $rc == 1 ]] && grep -q "refusing the socket at \"$T/other/s\": its listener runs as uid 65534" "$T/other.err"'

# ---- live commands while a trickled blob downloads ------------------------------------------
LAYER=${BIG[2]}
checkd "the origin trickles test/big's layer" \
  rules "[{\"path\": \"/blobs/$LAYER\", \"method\": \"GET\", \"trickle_ms\": 100, \"trickle_bytes\": 16384}]"
curl -s --max-time 30 -o "$T/layer" -w '%{http_code}' "http://127.0.0.1:$PA/v2/test/big/blobs/$LAYER?ns=$REG" \
  >"$T/layer.code" &
PULL=$!
PIDS+=("$PULL")
sleep 0.5
before=$(grep -c "admin command=" "$LOG")
run live-stats cache stats --spec "$T/spec.yaml"
s1=$rc
run live-ls cache ls --spec "$T/spec.yaml"
s2=$rc
run live-verify cache verify --spec "$T/spec.yaml"
s3=$rc
checkd "the pull was still running during the commands" kill -0 "$PULL"
checkd "cache stats, ls and verify exit 0 during the pull" test "$s1 $s2 $s3" = "0 0 0"
checkd "the agent ran the three" test "$(grep -c "admin command=" "$LOG")" -eq $((before + 3))
checkd "verify checked the prefetched blobs" grep -qx "${#APP[@]} checked, 0 quarantined" "$T/live-verify.out"
wait_exit "$PULL" 30
checkd "the pull completed: 200 with the layer's bytes" \
  eval '[[ $(cat "$T/layer.code") == 200 && sha256:$(sha256sum "$T/layer" | cut -c1-64) == "$LAYER" ]]'
checkd "the layer is in the cache" wait_for 5 in_cache "$T/cache" "$LAYER"
rules '[]'

# ---- the same answers through the agent and offline ---------------------------------------------
# stats without the file system's free bytes, which other processes change.
stats_of() { grep -v '^filesystem_free_bytes ' "$T/$1.out"; }
run a-stats cache stats --spec "$T/spec.yaml"
run a-ls cache ls --spec "$T/spec.yaml"
run a-verify cache verify --spec "$T/spec.yaml"
run a-check cache check --spec "$T/spec.yaml"
a_check=$rc
run a-check-big cache check --spec "$T/spec.yaml" --platform linux/amd64 "$REG/test/app:v1" "$REG/test/nothing:v1"
a_check_big=$rc
run a-gc cache gc --spec "$T/spec.yaml"
checkd "cache check through the agent: the list is complete" \
  eval '[[ $a_check == 0 ]] && grep -q "^ok *$REG/test/app:v1 [a-z0-9/-]* blobs 3/3" "$T/a-check.out"'
checkd "cache check of named images: the missing one is MISSING, exit 1" \
  eval '[[ $a_check_big == 1 ]] && grep -q "^MISSING $REG/test/nothing:v1" "$T/a-check-big.out"'
checkd "gc through the agent evicts nothing under the limit" grep -q "^0 evicted (0 bytes); 5 blobs" "$T/a-gc.out"
checkd "prefetch --once: the agent runs the round" \
  eval 'run a-prefetch prefetch --once --spec "$T/spec.yaml" && grep -q "^1 images: 1 ok, 0 failed" "$T/a-prefetch.out"'
checkd "prefetch --once: progress lines on stderr" grep -q "test/app:v1 linux/amd64.*ok" "$T/a-prefetch.err"
checkd "the agent logged the operator's round" grep -q "prefetch round starting entries=1 by=admin" "$LOG"
run no-once prefetch --spec "$T/spec.yaml"
checkd "prefetch without --once while the agent runs: exit 2, says why" \
  eval '[[ $rc == 2 ]] && grep -q "runs a round every prefetch.interval" "$T/no-once.err"'

# ---- status -----------------------------------------------------------------------------------
# A failure for the endpoint's last error: a 503 from the origin for a blob.
MISSING=sha256:$(printf '%064d' 7)
rules "[{\"path\": \"/blobs/$MISSING\", \"status\": 503}]"
curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$PA/v2/test/app/blobs/$MISSING?ns=$REG"
rules '[]'
run status status --spec "$T/spec.yaml"
checkd "status exits 0 with the version, cache and endpoint" \
  eval '[[ $rc == 0 ]] && grep -q "^layerd .*, up " "$T/status.out" && grep -q "^  use *5 blobs" "$T/status.out" &&
        grep -q "$FX" "$T/status.out" && grep -Eq "breaker (closed|open|half-open)" "$T/status.out"'
checkd "status shows the endpoint's last error" grep -q "last error .*503" "$T/status.out"
checkd "status shows the prefetch rounds and the next" grep -q "^prefetch .*1 entries listed, [0-9]* rounds, next in [0-9]* s" "$T/status.out"
run status-json status --spec "$T/spec.yaml" --format json
checkd "status --format json parses and agrees with cache stats" /usr/bin/python3 - "$T/status-json.out" \
  "$(sed -n 's/^blobs //p' "$T/a-stats.out")" "$FX" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["cache"]["blobs"] == int(sys.argv[2]), s["cache"]
assert s["uptime_seconds"] >= 0 and s["version"]
assert s["cache"]["max_bytes"] == 10 * 1024**3
assert s["prefetch"]["rounds"] >= 1 and s["prefetch"]["last_round"]["ok"] == 1 and s["prefetch"]["listed"] == 1
assert 0 < s["prefetch"]["next_round_seconds"] <= 3600
assert s["prefetch"]["running"] is False and s["prefetch"]["round_images_done"] == 1 and s["prefetch"]["round_images"] == 1
assert s["downloads_in_flight"] == 0
e = [x for x in s["endpoints"] if x["endpoint"] == sys.argv[3]]
assert len(e) == 1 and e[0]["breaker"] in ("closed", "open", "half-open"), s["endpoints"]
assert "503" in e[0]["last_error"], e[0]
assert s["cache"]["hit_ratio"] is None or 0 <= s["cache"]["hit_ratio"] <= 1
PY

# ---- requests the API refuses ---------------------------------------------------------------------
# raw BYTES: what the agent answers on the socket to BYTES (its status line).
raw() {
  /usr/bin/python3 - "$SOCK" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
data = b""
try:  # the agent may answer and close before it read everything: a reset ends it
    s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
    while True:
        b = s.recv(65536)
        if not b: break
        data += b
except (socket.timeout, ConnectionError):
    pass
print(data.split(b"\r\n")[0].decode() if data else "nothing")
PY
}
checkd "a malformed request line: 400" \
  test "$(raw 'GET /v1/status garbage garbage\r\nHost: a\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
checkd "a header line without a colon: 400" \
  test "$(raw 'GET /v1/status HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
checkd "binary bytes for a method: 400" test "$(raw '\x00\x01\x02 / HTTP/1.1\r\nHost: a\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
checkd "a bare word: the connection is closed, nothing answered" test "$(raw 'garbage\r\n\r\n')" = "nothing"
checkd "a request body: 413" \
  test "$(raw 'POST /v1/cache/gc HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello')" = "HTTP/1.1 413 Content Too Large"
big=$(head -c 20000 /dev/zero | tr '\0' a)
checkd "20 KB of headers: 431" \
  test "$(raw "GET /v1/status HTTP/1.1\r\nHost: a\r\nX-Big: $big\r\n\r\n")" = "HTTP/1.1 431 Request Header Fields Too Large"
checkd "an unknown argument: 400" test "$(raw 'GET /v1/cache/ls?x=1 HTTP/1.1\r\nHost: a\r\n\r\n')" = "HTTP/1.1 400 Bad Request"
checkd "an unknown route: 404" test "$(raw 'GET /v2/ HTTP/1.1\r\nHost: a\r\n\r\n')" = "HTTP/1.1 404 Not Found"
checkd "a wrong method: 405" test "$(raw 'GET /v1/cache/gc HTTP/1.1\r\nHost: a\r\n\r\n')" = "HTTP/1.1 405 Method Not Allowed"
checkd "the agent serves on: status and the pull API" \
  eval 'run status2 status --spec "$T/spec.yaml" && [[ $(http GET "http://127.0.0.1:$PA/v2/") == 200 ]]'
curl -s --max-time 5 --unix-socket "$SOCK" -X POST http://admin/v1/cache/verify >"$T/verify.json"
checkd "a command's JSON answer: exit status, output, errors" /usr/bin/python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
assert v["exit_status"] == 0 and v["stdout"].endswith("5 checked, 0 quarantined\n") and v["stderr"] == "", v' "$T/verify.json"

# The held cache is still refused to an offline command.
run held cache stats --spec "$T/spec.yaml" --admin-socket ''
checkd "--admin-socket '': the offline command is refused the cache in use" \
  eval '[[ $rc == 1 ]] && grep -q "in use by another layerd process" "$T/held.err"'

stop "$LAYERD_PID"
checkd "the agent stops with status 0 and removes its socket" eval '[[ $status == 0 && ! -e $SOCK ]]'

run o-stats cache stats --spec "$T/spec.yaml"
run o-ls cache ls --spec "$T/spec.yaml"
run o-verify cache verify --spec "$T/spec.yaml"
run o-check cache check --spec "$T/spec.yaml"
run o-check-big cache check --spec "$T/spec.yaml" --platform linux/amd64 "$REG/test/app:v1" "$REG/test/nothing:v1"
run o-gc cache gc --spec "$T/spec.yaml"
checkd "offline cache stats: the same as the agent's" diff <(stats_of a-stats) <(stats_of o-stats)
checkd "offline cache ls: the same blobs and pins as the agent's" diff <(sort "$T/a-ls.out") <(sort "$T/o-ls.out")
checkd "offline cache verify: the same as the agent's" diff "$T/a-verify.out" "$T/o-verify.out"
checkd "offline cache check: the same as the agent's" diff "$T/a-check.out" "$T/o-check.out"
checkd "offline cache check of named images: the same" \
  eval 'diff "$T/a-check-big.out" "$T/o-check-big.out" && diff "$T/a-check-big.err" "$T/o-check-big.err"'
checkd "offline cache gc: the same" diff "$T/a-gc.out" "$T/o-gc.out"
checkd "the offline commands asked no agent" test ! -e "$SOCK"

run gone status --spec "$T/spec.yaml"
checkd "status without an agent: exit 1, says so" \
  eval '[[ $rc == 1 ]] && grep -q "no agent is running" "$T/gone.err"'

# ---- a socket left behind, the default path and the flag ---------------------------------------
checkd "a restarted agent" start_layerd
kill -KILL "$LAYERD_PID"; wait_exit "$LAYERD_PID" 5
checkd "a killed agent leaves its socket" test -S "$SOCK"
run stale cache stats --spec "$T/spec.yaml"
checkd "a stale socket: the command runs offline" eval '[[ $rc == 0 ]] && grep -qx "blobs 5" "$T/stale.out"'
checkd "the next agent replaces the stale socket" \
  eval 'start_layerd && wait_for 5 grep -q "admin API socket=" "$LOG" && run st status --spec "$T/spec.yaml"'
stop "$LAYERD_PID"
echo "This is not a socket" >"$SOCK"
layerd_serve "$LOG.2" "$T/spec.yaml"
checkd "a file that is no socket is left alone; the agent serves without the API" \
  eval 'wait_port "$PA" 10 && wait_for 5 grep -q "no admin API.*not a socket" "$LOG.2" && grep -q "This is not" "$SOCK"'
stop "$LAYERD_PID"
rm -f "$SOCK"
layerd_serve "$LOG.3" "$T/spec.yaml" --admin-socket "$T/run/other.sock"
checkd "--admin-socket overrides the spec" eval 'wait_port "$PA" 10 && wait_for 5 test -S "$T/run/other.sock"'
run flag cache ls --spec "$T/spec.yaml" --admin-socket "$T/run/other.sock"
checkd "commands reach it with the same flag" eval '[[ $rc == 0 ]] && grep -q "admin command=/v1/cache/ls" "$LOG.3"'
stop "$LAYERD_PID"
sed -i "/admin_socket:/d" "$T/spec.yaml"
layerd_serve "$LOG.4" "$T/spec.yaml"
checkd "by default the socket is CACHE_DIR/admin.sock" \
  eval 'wait_port "$PA" 10 && wait_for 5 test -S "$T/cache/admin.sock" && run def status --cache-dir "$T/cache"'
stop "$LAYERD_PID"
layerd_serve "$LOG.5" "$T/spec.yaml" --admin-socket ''
checkd "--admin-socket '': no socket" eval 'wait_port "$PA" 10 && sleep 0.3 && test ! -e "$T/cache/admin.sock"'
stop "$LAYERD_PID"
# A path that fits sun_path with a short name, its temporary bind path (.aXXXXXX/s) would not.
LONG=$T/l; while (( ${#LONG} < 100 )); do LONG+=x; done
LONG=${LONG:0:100}/a.sock
layerd_serve "$LOG.7" "$T/spec.yaml" --admin-socket "$LONG"
checkd "a ${#LONG}-byte socket path with a short name: bound, answers" \
  eval 'wait_port "$PA" 10 && wait_for 5 test -S "$LONG" && run long status --admin-socket "$LONG" && [[ $rc == 0 ]]'
stop "$LAYERD_PID"

# ---- images as units: cache rm and cache refresh ------------------------------------------------
# test/derived:v1 shares test/app's first layer and has a config and a layer of its own.
/usr/bin/python3 - "$T/app" "$T/derived" "${APP[0]}" <<'PY' || not_ok "test/derived is made"
import hashlib, json, os, sys
src, out, manifest = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out)
m = json.load(open(os.path.join(src, "blobs", "sha256", manifest.split(":")[1])))
def put(name, data):
    open(os.path.join(out, name), "wb").write(data)
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
config = dict(mediaType=m["config"]["mediaType"], **put("config", json.dumps({"architecture": "amd64", "os": "linux",
                                                                              "config": {"Env": ["DERIVED=1"]}}).encode()))
layer = dict(mediaType=m["layers"][0]["mediaType"], **put("layer", os.urandom(50000)))
m2 = {"schemaVersion": 2, "mediaType": m["mediaType"], "config": config, "layers": [m["layers"][0], layer]}
put("manifest", json.dumps(m2).encode())
PY
DER_CONFIG=$(put_blob "$T/derived/config") DER_LAYER=$(put_blob "$T/derived/layer")
DER=$(fixture_manifest "$FX" test/derived v1 "$T/derived/manifest")
checkd "the origin serves test/derived:v1" test -n "$DER" -a -n "$DER_CONFIG" -a -n "$DER_LAYER"
SPEC2=$T/spec2.yaml
write_spec "$SPEC2" "$PA" "$T/cache2" <<YAML
registries:
  "$REG":
    origin: $FX
YAML
# What containerd accepts: only an answer every client could get is recorded as the tag.
MT="application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
# pull REPO DIGESTS...: the manifest REPO:v1 and the blobs, through layerd; every answer 200.
pull() {
  local repo=$1 d c; shift
  c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$PA/v2/$repo/manifests/v1?ns=$REG")
  [[ $c == 200 ]] || return 1
  for d in "$@"; do
    c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PA/v2/$repo/blobs/$d?ns=$REG")
    [[ $c == 200 ]] || return 1
  done
}
layerd_serve "$LOG.6" "$SPEC2"
checkd "an agent on a second cache, without a prefetch list" eval 'wait_port "$PA" 10 && wait_for 5 test -S "$T/cache2/admin.sock"'
checkd "test/app:v1 and test/derived:v1 pulled through it" \
  eval 'pull test/app "${APP[@]:1}" && pull test/derived "$DER_CONFIG" "${APP[2]}" "$DER_LAYER"'
checkd "everything is cached" wait_for 5 in_cache "$T/cache2" "${APP[@]}" "$DER" "$DER_CONFIG" "$DER_LAYER"
asked() { fixture_requests "$FX" "/v2/test/app/manifests/v1" >"$T/asked"; wc -l <"$T/asked"; }
asked_before=$(asked)
run refresh cache refresh --spec "$SPEC2" "$REG/test/app:v1" "$REG/test/app@${APP[0]}"
checkd "cache refresh revalidates the tag: unchanged" \
  eval '[[ $rc == 0 ]] && grep -qx "$REG/test/app:v1 ${APP[0]} (unchanged)" "$T/refresh.out" &&
        grep -q "a digest never changes" "$T/refresh.out"'
checkd "the refresh asked the origin" test "$(asked)" -gt "$asked_before"
blob_path() { local h=${2#sha256:}; echo "$1/blobs/sha256/${h:0:2}/$h"; }
# test/app's manifest unreadable (a symlink loop: root reads through modes): what
# it refers to is unknown, so nothing is removed.
APPM=$(blob_path "$T/cache2" "${APP[0]}")
mv "$APPM" "$T/appm" && ln -s "$(basename "$APPM")" "$APPM"
run rm-unread cache rm --spec "$SPEC2" "$REG/test/derived:v1"
rm -f "$APPM" && mv "$T/appm" "$APPM"
checkd "cache rm with another image's manifest unreadable: exit 1, nothing removed" \
  eval '[[ $rc == 1 ]] && grep -q "layerd cache rm: Too many levels of symbolic links" "$T/rm-unread.err" &&
        in_cache "$T/cache2" "${APP[@]}" "$DER" "$DER_CONFIG" "$DER_LAYER"'
# A tag record that cannot be read (a loop again): the walk is not complete, nothing is removed.
REC=$(find "$T/cache2/tags" -path '*test/app/_tags/v1')
mv "$REC" "$T/apprec" && ln -s v1 "$REC"
run rm-unrec cache rm --spec "$SPEC2" "$REG/test/derived:v1"
rm -f "$REC" && mv "$T/apprec" "$REC"
checkd "cache rm with a tag record unreadable: exit 1, nothing removed" \
  eval '[[ $rc == 1 && -n $REC ]] && in_cache "$T/cache2" "${APP[@]}" "$DER" "$DER_CONFIG" "$DER_LAYER"'
# A socket (as a spec's fixed admin_socket two agents share) reaching the agent of
# another cache directory than --cache-dir names: refused unrun.
rms=$(grep -c "admin command=/v1/cache/rm" "$LOG.6")
run otherdir cache rm --cache-dir "$T/cache" --admin-socket "$T/cache2/admin.sock" "$REG/test/app:v1"
checkd "--cache-dir of another cache than the agent's: exit 1, refused, nothing removed" \
  eval '[[ $rc == 1 ]] && grep -q "serves another cache directory than \"$T/cache\": nothing was run" "$T/otherdir.err" &&
        in_cache "$T/cache2" "${APP[@]}" && [[ $(grep -c "admin command=/v1/cache/rm" "$LOG.6") == "$rms" ]]'
run samedir cache stats --spec "$SPEC2" --cache-dir "$T/cache2"
checkd "--cache-dir of the agent's own cache: answered" eval '[[ $rc == 0 ]] && grep -q "^blobs " "$T/samedir.out"'
run rm cache rm --spec "$SPEC2" "$REG/test/derived:v1"
checkd "cache rm through the agent: its record and 3 blobs of its own, the shared layer kept" \
  eval '[[ $rc == 0 ]] && grep -qx "removed $REG/test/derived:v1 (1 tag records)" "$T/rm.out" &&
        grep -q "^3 blobs removed ([0-9]* bytes); kept 1 other images use, 0 pinned$" "$T/rm.out" &&
        grep -q "admin command=/v1/cache/rm" "$LOG.6"'
checkd "test/derived's own blobs are gone" \
  eval 'not in_cache "$T/cache2" "$DER" && not in_cache "$T/cache2" "$DER_CONFIG" && not in_cache "$T/cache2" "$DER_LAYER"'
checkd "test/app's blobs are all there" in_cache "$T/cache2" "${APP[@]}"
run rm-none cache rm --spec "$SPEC2" "$REG/test/nothing:v1"
checkd "cache rm of an image not in the cache: exit 1, says so" \
  eval '[[ $rc == 1 ]] && grep -q "not in the cache: $REG/test/nothing:v1" "$T/rm-none.err"'
run rm-nodigest cache rm --spec "$SPEC2" "$REG/test/derived@$DER"
checkd "cache rm of a digest not in the cache: exit 1, says so" \
  eval '[[ $rc == 1 ]] && grep -q "not in the cache: $REG/test/derived@$DER" "$T/rm-nodigest.err" &&
        ! grep -q "^removed" "$T/rm-nodigest.out"'
# test/derived again, by digest only: no tag record, its layer shared with test/app.
pulld() {
  local c d
  c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$PA/v2/test/derived/manifests/$DER?ns=$REG")
  [[ $c == 200 ]] || return 1
  for d in "$DER_CONFIG" "${APP[2]}" "$DER_LAYER"; do
    c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PA/v2/test/derived/blobs/$d?ns=$REG")
    [[ $c == 200 ]] || return 1
  done
}
checkd "test/derived pulled by digest only" \
  eval 'pulld && wait_for 5 in_cache "$T/cache2" "$DER" "$DER_CONFIG" "$DER_LAYER" && ! find "$T/cache2/tags" -path "*test/derived/_tags/*" | grep -q .'
stop "$FIXTURE_PID"
checkd "the origin down: test/app:v1 still pulls whole from the cache" pull test/app "${APP[@]:1}"
code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$PA/v2/test/derived/manifests/v1?ns=$REG")
checkd "the origin down: test/derived:v1 is no longer served ($code)" test "$code" != 200
run refresh-down cache refresh --spec "$SPEC2" "$REG/test/app:v1"
checkd "cache refresh with the origin down: served stale, exit 1" \
  eval '[[ $rc == 1 ]] && grep -q "stale: no upstream answered" "$T/refresh-down.out"'
stop "$LAYERD_PID"
run rm-offline cache rm --spec "$SPEC2" "$REG/test/app:v1"
checkd "cache rm offline: test/app:v1, the layer test/derived (by digest only) uses kept" \
  eval '[[ $rc == 0 ]] && grep -q "^3 blobs removed ([0-9]* bytes); kept 1 other images use, 0 pinned$" "$T/rm-offline.out" &&
        not in_cache "$T/cache2" "${APP[0]}" && in_cache "$T/cache2" "${APP[2]}" "$DER" "$DER_CONFIG" "$DER_LAYER"'
run rm-digest cache rm --spec "$SPEC2" "$REG/test/derived@$DER"
checkd "cache rm offline by digest: the last image and all its blobs" \
  eval '[[ $rc == 0 ]] && grep -qx "removed $REG/test/derived@$DER (0 tag records)" "$T/rm-digest.out" &&
        grep -q "^4 blobs removed" "$T/rm-digest.out" && not in_cache "$T/cache2" "${APP[2]}" "$DER" "$DER_LAYER"'
run refresh-offline cache refresh --spec "$SPEC2" "$REG/test/app:v1"
checkd "cache refresh offline: exit 1, it needs the agent" \
  eval '[[ $rc == 1 ]] && grep -q "needs the running agent" "$T/refresh-offline.err"'
finish
