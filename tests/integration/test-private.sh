#!/usr/bin/env bash
# Private images through layerd (issue 17, pass-through of the client's
# credentials): a real containerd (`ctr content fetch --user`) pulls a private
# image through layerd from the fixture origin, which asks for Basic
# credentials for "team/" repositories only and serves each blob only under
# the repository it was pushed to (tests/fixtures/upstream.py: "private",
# "repos="). The containerd hosts file names an origin where nothing listens
# (127.0.0.1:$PD): a pull that succeeds went through layerd. What is proven:
# - cold: layerd challenges, containerd answers with the pull's credentials,
#   layerd fetches from the origin with them and caches everything;
# - warm: no blob is asked of the origin, at most one authorization check;
# - another client without or with wrong credentials gets 401 and not one byte
#   of the private manifest or blobs (checked on the bytes received);
# - GET /v2/<public>/blobs/<private digest> never gives the private bytes, also
#   after a restart of layerd;
# - a public repository of the same origin stays anonymous;
# - the kubelet's path: containerd's CRI PullImage with AuthConfig{username,
#   password} (empty server_address) through config_path, served from the
#   cache; without or with wrong credentials the pull fails;
# - a second origin with the token flow: the client's credentials go to its
#   realm, and a token got with them is never used for other credentials;
# - auth_passthrough turned off: what was recorded private stays closed;
# - with the origin stopped, inside auth_outage_grace, the cached image is served;
#   a public image that shares a private layer is served too (its manifest
#   confirmed the layer under its name);
# - no credential in the cache directory, in layerd's log or in /metrics.
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "containerd needs root"
require_tools containerd ctr curl

USER_OK=alice PASS_OK='s3cret-Pa55' PASS_BAD='wrong-pass'
PA=$(free_port) PD=$(free_port)
REG=127.0.0.1:$PD
DIAG_FILES=("$T/layerd.log" "$T/fx.log" "$T/ctrd/log")

# ---- the origin: team/app private, pub/app public ----------------------------------------
fixture_start fx || { not_ok "fixture starts"; finish; exit 1; }
PF=$FIXTURE_PORT FX=http://127.0.0.1:$FIXTURE_PORT FX_PID=$FIXTURE_PID
# push DIR REPO [BASE]: the OCI layout's blobs under REPO only, its manifest as REPO:v1.
push() {
  local d f base=${3:-$FX}
  for d in $(tail -n +2 "$1.digests"); do
    f=$1/blobs/sha256/${d#sha256:}
    fixture_call PUT "$base/_fixture/blob/$d?repos=$2" "$f" || return 1
  done
  d=$(head -n 1 "$1.digests")
  [[ $(fixture_manifest "$base" "$2" v1 "$1/blobs/sha256/${d#sha256:}") == "$d" ]]
}
# origin_content BASE MODE: team/ private (MODE basic or bearer), the two images pushed.
origin_content() {
  fixture_json PUT "$1/_fixture/auth" \
    "{\"mode\": \"$2\", \"user\": \"$USER_OK\", \"password\": \"$PASS_OK\", \"private\": [\"team/\"]}" &&
    push "$T/priv" team/app "$1" && push "$T/pub" pub/app "$1"
}
oci_layout "$T/priv" >"$T/priv.digests" && oci_layout "$T/pub" >"$T/pub.digests"
mapfile -t PRIV <"$T/priv.digests"
mapfile -t PUB <"$T/pub.digests"
check "the origin serves a private and a public image" origin_content "$FX" basic
# A second origin with the token flow: the client's credentials go to its realm.
fixture_start fxb || { not_ok "second fixture starts"; finish; exit 1; }
PB=$FIXTURE_PORT FXB=http://127.0.0.1:$FIXTURE_PORT PD2=$(free_port)
REG2=127.0.0.1:$PD2
DIAG_FILES+=("$T/fxb.log")
check "the token-flow origin serves them too" origin_content "$FXB" bearer

# ---- layerd, and containerd pointed at it ----------------------------------------------
write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
registries:
  "$REG":
    origin: http://127.0.0.1:$PF
    auth_verdict_ttl: 1s
  "$REG2":
    origin: http://127.0.0.1:$PB
YAML
layerd_serve "$T/layerd.log" "$T/spec.yaml"
check "layerd starts" wait_port "$PA"
mkdir -p "$T/hosts/$REG"
cat >"$T/hosts/$REG/hosts.toml" <<TOML
server = "http://$REG"
[host."http://127.0.0.1:$PA"]
  capabilities = ["pull", "resolve"]
TOML
mkdir -p "$T/hosts/$REG2"
sed "s/$REG/$REG2/" "$T/hosts/$REG/hosts.toml" >"$T/hosts/$REG2/hosts.toml"
containerd_start "$T/ctrd"
check "containerd starts" wait_for 20 ctrd_up

# blob_gets: the origin's blob GETs so far; checks: its /v2/ requests with a name.
blob_gets() { fixture_requests "$FX" '/blobs/' | grep -c '"method": "GET"'; }
checks_count() { fixture_requests "$FX" '^/v2/.+/(manifests|blobs)/' | wc -l; }
# leaks FILE: FILE holds 32 bytes in a row of any private blob or manifest.
leaks() {
  /usr/bin/python3 - "$1" "$T/priv/blobs/sha256" <<'PY'
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
no_leak() { not leaks "$1"; }
url() { echo "http://127.0.0.1:$PA/v2/$1?ns=$REG"; }
challenged() { [[ $code == 401 ]] && grep -qi '^WWW-Authenticate: Basic realm="layerd"' "$1.headers"; }
fetch_all() { local ns=$1; shift; ctr_fetch "$ns" "$T/hosts" "$REG/$1" "${@:2}"; }

# ---- cold --------------------------------------------------------------------------------
fetch_all cold team/app:v1 --user "$USER_OK:$PASS_OK"
checkd "cold: ctr --user pulls the private image through layerd" test "$rc" = 0
checkd "cold: every blob of it is in containerd's store" ctr_has cold "${PRIV[@]}"
checkd "cold: layerd challenged, then passed the credentials through" \
  eval 'grep -q "repo=team/app .*status=401 .*auth=challenge" "$T/layerd.log" &&
        grep -q "repo=team/app .*status=200 .*auth=passthrough" "$T/layerd.log"'
checkd "cold: every blob is in layerd's cache" wait_for 5 in_cache "$T/cache" "${PRIV[@]}"
cold_gets=$(blob_gets)
checkd "cold: each blob was asked of the origin once ($cold_gets GETs for $((${#PRIV[@]} - 1)))" \
  test "$cold_gets" = $((${#PRIV[@]} - 1))

# ---- warm --------------------------------------------------------------------------------
sleep 1.2  # past auth_verdict_ttl: the warm pull asks the origin once
c0=$(checks_count)
fetch_all warm team/app:v1 --user "$USER_OK:$PASS_OK"
checkd "warm: ctr --user pulls it again" test "$rc" = 0
checkd "warm: every blob in containerd's store" ctr_has warm "${PRIV[@]}"
checkd "warm: no blob GET reached the origin" test "$(blob_gets)" = "$cold_gets"
c1=$(checks_count)
checkd "warm: at most one authorization check reached the origin ($((c1 - c0)))" test $((c1 - c0)) -le 1
checkd "warm: the log says verdict hits" grep -q "repo=team/app .*cache=hit .*auth=passthrough verdict=verdict-hit" "$T/layerd.log"

# ---- other clients: no credentials, wrong ones --------------------------------------------
for d in "${PRIV[@]}"; do
  kind=blobs; [[ $d == "${PRIV[0]}" ]] && kind=manifests
  get "$(url "team/app/$kind/$d")" "$T/anon"
  checkd "no credentials: 401 challenge for $kind/${d:7:12}" challenged "$T/anon"
  checkd "no credentials: not a byte of $kind/${d:7:12}" no_leak "$T/anon"
  get "$(url "team/app/$kind/$d")" "$T/bad" -u "$USER_OK:$PASS_BAD"
  checkd "wrong credentials: 401 for $kind/${d:7:12}" challenged "$T/bad"
  checkd "wrong credentials: not a byte of $kind/${d:7:12}" no_leak "$T/bad"
done
get "$(url team/app/manifests/v1)" "$T/anon-tag"
checkd "no credentials: 401 for the tag, no bytes" eval 'challenged "$T/anon-tag" && no_leak "$T/anon-tag"'
get "$(url team/app/manifests/v1)" "$T/bad-tag" -u "$USER_OK:$PASS_BAD"
checkd "wrong credentials: 401 for the tag, no bytes" eval 'challenged "$T/bad-tag" && no_leak "$T/bad-tag"'
get "$(url "team/app/blobs/${PRIV[2]}")" "$T/good" -u "$USER_OK:$PASS_OK"
checkd "right credentials (curl): the layer's bytes" cmp -s "$T/good" "$T/priv/blobs/sha256/${PRIV[2]#sha256:}"

# A repository layerd has never seen, asked for a blob first: the download meets the 401.
OTHER=$(random_file "$T/other.bin" 70000)
fixture_call PUT "$FX/_fixture/blob/$OTHER?repos=team/other" "$T/other.bin"
get "$(url "team/other/blobs/$OTHER")" "$T/other-anon"
checkd "unseen private repository, a blob first: 401 challenge, not its bytes" \
  eval 'challenged "$T/other-anon" && ! cmp -s "$T/other-anon" "$T/other.bin" && ((got < 1000))'
get "$(url "team/other/blobs/$OTHER")" "$T/other-good" -u "$USER_OK:$PASS_OK"
checkd "... with the credentials: its bytes" cmp -s "$T/other-good" "$T/other.bin"

# ---- another repository's name ------------------------------------------------------------
cross() {
  local tag=$1 d; shift
  for d in "${PRIV[@]:1}"; do
    get "$(url "pub/app/blobs/$d")" "$T/cross" "$@"
    [[ $code != 200 ]] && no_leak "$T/cross" || { echo "# $tag: pub/app/blobs/$d: $code" >&2; return 1; }
  done
}
checkd "GET /v2/pub/app/blobs/<private digest>: never the private bytes" cross anon
checkd "... not with the private repository's credentials either" cross creds -u "$USER_OK:$PASS_OK"

# ---- a public repository of the same origin ------------------------------------------------
fetch_all pub pub/app:v1
checkd "public: ctr pulls without credentials" test "$rc" = 0
checkd "public: every blob" ctr_has pub "${PUB[@]}"
checkd "public: never challenged" absent "repo=pub/app .*auth=challenge" "$T/layerd.log"

# ---- the kubelet's path: CRI PullImage with AuthConfig{username, password} ----------------------
# containerd's CRI plugin reads the hosts directory through config_path; the
# credentials come in the request, with an empty server_address (docs/agent.md).
CLIENT=$(realpath "$(dirname "$0")/cri/client.py")
cri() {
  LAST=$T/cri-$1; shift
  timeout 90 /usr/bin/python3 "$CLIENT" --socket "$SOCK" "$@" >"$LAST.out" 2>"$LAST.err"
  rc=$?
}
cri_up() { timeout 10 /usr/bin/python3 "$CLIENT" --socket "$SOCK" --timeout 2 status 127.0.0.1:1/none:v0 >/dev/null 2>&1; [[ $? == 1 ]]; }
if command -v protoc >/dev/null && /usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null; then
  CTR_SOCK=$SOCK
  containerd_cri_start "$T/cri" '[plugins."io.containerd.grpc.v1.cri".registry]' "  config_path = \"$T/hosts\""
  DIAG_FILES+=("$T/cri/log")
  checkd "CRI: containerd's image service answers" wait_for 20 cri_up
  g0=$(blob_gets) l=$(mark "$T/layerd.log")
  cri pull --user "$USER_OK:$PASS_OK" pull "$REG/team/app:v1"
  checkd "CRI: PullImage with the pull secret's credentials succeeds through layerd" test "$rc" = 0
  checkd "CRI: the image id is the config's digest" test "$(cat "$LAST.out")" = "${PRIV[1]}"
  checkd "CRI: layerd challenged and passed the credentials through" \
    eval 'since "$T/layerd.log" "$l" | grep -q "repo=team/app .*status=401 .*auth=challenge" &&
          since "$T/layerd.log" "$l" | grep -q "repo=team/app .*status=200 .*auth=passthrough"'
  checkd "CRI: served from layerd's cache, no blob GET at the origin" test "$(blob_gets)" = "$g0"
  cri rm remove "$REG/team/app:v1"
  l=$(mark "$T/layerd.log")
  cri anon pull "$REG/team/app:v1"
  checkd "CRI: PullImage without credentials fails (layerd challenges, the server is down)" test "$rc" = 3
  cri bad --user "$USER_OK:$PASS_BAD" pull "$REG/team/app:v1"
  checkd "CRI: PullImage with wrong credentials fails" test "$rc" = 3
  checkd "CRI: layerd answered both with 401 only" \
    eval 'since "$T/layerd.log" "$l" | grep -q "repo=team/app .*status=401" &&
          since "$T/layerd.log" "$l" | absent "repo=team/app .*status=200"'
  checkd "CRI: ... and the image is not there" eval 'cri st status "$REG/team/app:v1"; test "$rc" = 1'
  stop "$CONTAINERD_PID"
  SOCK=$CTR_SOCK
else
  not_ok "CRI: protoc and python3-grpcio are installed (make deps)"
fi

# ---- an origin with the token flow --------------------------------------------------------------
url2() { echo "http://127.0.0.1:$PA/v2/$1?ns=$REG2"; }
ctr_fetch bearer "$T/hosts" "$REG2/team/app:v1" --user "$USER_OK:$PASS_OK"
checkd "token flow: ctr --user pulls the private image through layerd" test "$rc" = 0
checkd "token flow: every blob" ctr_has bearer "${PRIV[@]}"
tokens_with() {
  fixture_requests "$FXB" '^/token' | grep -c "\"authorization\": \"Basic $(printf '%s:%s' "$1" "$2" | base64 -w0)\""
}
checkd "token flow: the client's credentials went to the origin's token realm" test "$(tokens_with "$USER_OK" "$PASS_OK")" -ge 1
checkd "token flow: every blob is in layerd's cache" in_cache "$T/cache" "${PRIV[@]}"
t0=$(fixture_requests "$FXB" '^/token' | wc -l)
get "$(url2 "team/app/blobs/${PRIV[2]}")" "$T/bearer-bad" -u "$USER_OK:$PASS_BAD"
checkd "token flow: wrong credentials right after: 401, no bytes" eval 'challenged "$T/bearer-bad" && no_leak "$T/bearer-bad"'
checkd "token flow: ... after a token request of their own (the good token is not theirs)" \
  test "$(tokens_with "$USER_OK" "$PASS_BAD")" -ge 1
get "$(url2 "team/app/blobs/${PRIV[2]}")" "$T/bearer-anon"
checkd "token flow: no credentials: 401, no bytes" eval 'challenged "$T/bearer-anon" && no_leak "$T/bearer-anon"'
get "$(url2 "pub/app/blobs/${PRIV[2]}")" "$T/bearer-cross"
checkd "token flow: the private layer under pub/app: not served" eval '[[ $code != 200 ]] && no_leak "$T/bearer-cross"'

# ---- a restart of layerd -------------------------------------------------------------------
curl -s --max-time 5 "http://127.0.0.1:$PA/metrics" >"$T/metrics"  # checked below
stop "$LAYERD_PID"
layerd_serve "$T/layerd1.log" "$T/spec.yaml"
DIAG_FILES+=("$T/layerd1.log" "$T/layerd2.log")
check "layerd restarts" wait_port "$PA"
checkd "after a restart: /v2/pub/app/blobs/<private digest> still never the bytes" cross restart
get "$(url "team/app/blobs/${PRIV[2]}")" "$T/anon2"
checkd "after a restart: no credentials, still 401 and no bytes" eval 'challenged "$T/anon2" && no_leak "$T/anon2"'

# ---- auth_passthrough turned off: what was private stays closed --------------------------------
sed 's/auth_verdict_ttl: 1s/auth_verdict_ttl: 1s\n    auth_passthrough: false/' "$T/spec.yaml" >"$T/spec-off.yaml"
stop "$LAYERD_PID"
layerd_serve "$T/layerd-off.log" "$T/spec-off.yaml"
DIAG_FILES+=("$T/layerd-off.log")
check "layerd restarts with auth_passthrough: false" wait_port "$PA"
off_closed() {
  local d
  for d in "${PRIV[@]:1}"; do
    get "$(url "team/app/blobs/$d")" "$T/off" "$@"
    [[ $code != 200 && $code != 401 ]] && no_leak "$T/off" || { echo "# team/app/blobs/$d: $code" >&2; return 1; }
  done
  get "$(url team/app/manifests/v1)" "$T/off" "$@"
  [[ $code != 200 ]] && no_leak "$T/off"
}
checkd "passthrough off: the cached private image is not served, no challenge" off_closed
checkd "passthrough off: nor to the right credentials (they are not used)" off_closed -u "$USER_OK:$PASS_OK"
stop "$LAYERD_PID"
layerd_serve "$T/layerd2.log" "$T/spec.yaml"
check "layerd restarts with pass-through" wait_port "$PA"

# ---- secrets stay out ------------------------------------------------------------------------
b64=$(printf '%s:%s' "$USER_OK" "$PASS_OK" | base64 -w0)
checkd "no credential in layerd's cache directory" \
  eval 'absent -r -e "$PASS_OK" -e "$b64" "$T/cache" && grep -q "team/app" "$T/cache/private-content"'
checkd "no credential in layerd's log" \
  eval 'absent -e "$PASS_OK" -e "$PASS_BAD" -e "$b64" "$T"/layerd*.log && grep -q auth=passthrough "$T/layerd.log"'
checkd "no credential in /metrics, the counters are there" \
  eval 'absent -e "$PASS_OK" -e "$b64" "$T/metrics" && grep -q "^layerd_auth_challenges_total [1-9]" "$T/metrics"'

# ---- the origin down, inside auth_outage_grace -------------------------------------------------
fetch_all grace-warmup team/app:v1 --user "$USER_OK:$PASS_OK"  # a verdict for the new layerd
checkd "after the restart: ctr --user pulls (a new verdict)" test "$rc" = 0
# A public image that shares the private layer: its manifest, fetched while the
# origin is up, confirms the layer under its name (containerd, which has the
# layer already, never asks for it there before the outage).
/usr/bin/python3 - "$T/priv/blobs/sha256/${PRIV[0]#sha256:}" "$T/pub/blobs/sha256/${PUB[0]#sha256:}" >"$T/shared.json" <<'PY'
import json, sys
priv, pub = (json.load(open(f)) for f in sys.argv[1:3])
pub["layers"] = [priv["layers"][0]]
print(json.dumps(pub))
PY
shared_up() {
  fixture_call PUT "$FX/_fixture/blob/${PRIV[2]}?repos=team/app,pub/shared" "$T/priv/blobs/sha256/${PRIV[2]#sha256:}" &&
    fixture_call PUT "$FX/_fixture/blob/${PUB[1]}?repos=pub/app,pub/shared" "$T/pub/blobs/sha256/${PUB[1]#sha256:}" &&
    fixture_manifest "$FX" pub/shared v1 "$T/shared.json" >/dev/null
}
check "the origin serves pub/shared, a public image with the private layer" shared_up
get "$(url pub/shared/manifests/v1)" "$T/shared-m"
checkd "pub/shared: its manifest without credentials" cmp -s "$T/shared-m" "$T/shared.json"
stop "$FX_PID"
get "$(url "pub/shared/blobs/${PRIV[2]}")" "$T/shared-l"
checkd "origin down: the public image's shared layer is served from the cache ($code)" \
  cmp -s "$T/shared-l" "$T/priv/blobs/sha256/${PRIV[2]#sha256:}"
get "$(url "pub/app/blobs/${PRIV[2]}")" "$T/shared-x"
checkd "origin down: ... but not under pub/app, which does not have it" eval '[[ $code != 200 ]] && no_leak "$T/shared-x"'
sleep 1.2  # the verdict is past auth_verdict_ttl: the origin would be asked
fetch_all grace team/app:v1 --user "$USER_OK:$PASS_OK"
checkd "origin down: ctr --user pulls the cached private image" test "$rc" = 0
checkd "origin down: every blob" ctr_has grace "${PRIV[@]}"
checkd "origin down: the log says so" grep -q "within auth_outage_grace" "$T/layerd2.log"
get "$(url "team/app/blobs/${PRIV[2]}")" "$T/anon3"
checkd "origin down: no credentials, still 401 and no bytes" eval 'challenged "$T/anon3" && no_leak "$T/anon3"'
get "$(url "team/app/blobs/${PRIV[2]}")" "$T/bad3" -u "$USER_OK:$PASS_BAD"
checkd "origin down: wrong credentials, no bytes" eval '[[ $code != 200 ]] && no_leak "$T/bad3"'

stop "$LAYERD_PID"
finish
