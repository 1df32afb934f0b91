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
#   after a restart of layerd, which prunes what the cache evicted from the
#   private-content table (a pruned layer fetched again is private again);
# - names that need credentials and have nothing stored are challenged without
#   a write to private-content (noted in memory for a minute);
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
# - tag lists (GET /v2/team/app/tags/list) as the manifests: without or with
#   wrong credentials 401 and never the list (not the one layerd remembers
#   either); with the right ones the origin's list, asked with them; with the
#   origin down, within auth_outage_grace, the list layerd remembers;
# - auth_passthrough off, with credentials of layerd's own: one check of the
#   origin per auth_verdict_ttl, not one per request;
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
push() { fixture_push "$1" "$2" "${3:-$FX}"; }
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
layerd_hosts "$T/hosts" "$REG"
layerd_hosts "$T/hosts" "$REG2"
containerd_start "$T/ctrd"
check "containerd starts" wait_for 20 ctrd_up

# blob_gets: the origin's blob GETs so far; checks: its /v2/ requests with a name.
blob_gets() { fixture_requests "$FX" '/blobs/' | grep -c '"method": "GET"'; }
checks_count() { fixture_requests "$FX" '^/v2/.+/(manifests|blobs)/' | wc -l; }

# ---- cold, warm, other clients (lib.sh) ----------------------------------------------------
private_cold "the origin"
private_warm "the origin"
private_others 2

# A repository layerd has never seen, asked for a blob first: the download meets the 401.
OTHER=$(random_file "$T/other.bin" 70000)
fixture_call PUT "$FX/_fixture/blob/$OTHER?repos=team/other" "$T/other.bin"
get "$(url "team/other/blobs/$OTHER")" "$T/other-anon"
checkd "unseen private repository, a blob first: 401 challenge, not its bytes" \
  eval 'challenged "$T/other-anon" && ! cmp -s "$T/other-anon" "$T/other.bin" && ((got < 1000))'
get "$(url "team/other/blobs/$OTHER")" "$T/other-good" -u "$USER_OK:$PASS_OK"
checkd "... with the credentials: its bytes" cmp -s "$T/other-good" "$T/other.bin"

# ---- tag lists --------------------------------------------------------------------------
# listed FILE: FILE holds team/app's tag list; tags_with USER PASS: the origin's
# tag list requests that carried USER:PASS; tags_asked: all of them.
listed() { grep -q '"tags": *\[ *"v1" *\]' "$1"; }
tags_with() {
  fixture_requests "$FX" '/team/app/tags/list' | grep -c "\"authorization\": \"Basic $(printf '%s:%s' "$1" "$2" | base64 -w0)\""
}
tags_asked() { fixture_requests "$FX" '/team/app/tags/list' | wc -l; }
get "$(url team/app/tags/list)" "$T/tags-anon"
checkd "tag list, no credentials: 401 challenge, not the list" eval 'challenged "$T/tags-anon" && ! listed "$T/tags-anon"'
get "$(url team/app/tags/list)" "$T/tags-bad" -u "$USER_OK:$PASS_BAD"
checkd "tag list, wrong credentials: 401 challenge, not the list" eval 'challenged "$T/tags-bad" && ! listed "$T/tags-bad"'
l=$(mark "$T/layerd.log")
get "$(url team/app/tags/list)" "$T/tags-good" -u "$USER_OK:$PASS_OK"
checkd "tag list, right credentials: the origin's list ($code)" eval '[[ $code == 200 ]] && listed "$T/tags-good"'
checkd "... asked of the origin with them, said in the log" \
  eval '(($(tags_with "$USER_OK" "$PASS_OK") >= 1)) &&
        since "$T/layerd.log" "$l" | grep -q "repo=team/app ref=tags/list status=200 .*auth=passthrough"'
n0=$(tags_asked)
get "$(url team/app/tags/list)" "$T/tags-good2" -u "$USER_OK:$PASS_OK"
checkd "tag list again within auth_verdict_ttl: from layerd's memory, not asked again" \
  eval '[[ $code == 200 ]] && listed "$T/tags-good2" && [[ $(tags_asked) == "$n0" ]]'
get "$(url team/app/tags/list)" "$T/tags-anon2"
checkd "... while remembered, no credentials: 401, not the list" eval 'challenged "$T/tags-anon2" && ! listed "$T/tags-anon2"'
get "$(url team/app/tags/list)" "$T/tags-bad2" -u "$USER_OK:$PASS_BAD"
checkd "... wrong credentials: 401, not the list" eval 'challenged "$T/tags-bad2" && ! listed "$T/tags-bad2"'
get "$(url pub/app/tags/list)" "$T/tags-pub"
checkd "a public repository's tag list: anonymous, 200" eval '[[ $code == 200 ]] && grep -q v1 "$T/tags-pub"'

# Names that need credentials and have nothing stored: each is challenged, and
# none costs a write or room in private-content (any process can ask for them).
ghosts() {
  local i before after
  before=$(stat -c %s "$T/cache/private-content")
  for ((i = 1; i <= 20; i++)); do
    get "$(url "team/ghost$i/manifests/v1")" "$T/ghost"
    challenged "$T/ghost" || { echo "# team/ghost$i: $code" >&2; return 1; }
  done
  after=$(stat -c %s "$T/cache/private-content")
  [[ $before == "$after" ]] || { echo "# private-content: $before -> $after bytes" >&2; return 1; }
  ! grep -q ghost "$T/cache/private-content"
}
checkd "20 private names with nothing stored: challenged, private-content unchanged" ghosts

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
  fixture_requests "$FXB" '^/token' | grep -c "\"authorization\": \"Basic $(basic_b64 "$1" "$2")\""
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
# Tag lists through the token flow: the client's credentials toward the realm, a token of theirs to the origin.
get "$(url2 team/app/tags/list)" "$T/tags2-anon"
checkd "token flow: tag list, no credentials: 401, not the list" eval 'challenged "$T/tags2-anon" && ! listed "$T/tags2-anon"'
get "$(url2 team/app/tags/list)" "$T/tags2-bad" -u "$USER_OK:$PASS_BAD"
checkd "token flow: tag list, wrong credentials: 401, not the list" eval 'challenged "$T/tags2-bad" && ! listed "$T/tags2-bad"'
get "$(url2 team/app/tags/list)" "$T/tags2-good" -u "$USER_OK:$PASS_OK"
checkd "token flow: tag list, right credentials: the list, asked with a token" \
  eval '[[ $code == 200 ]] && listed "$T/tags2-good" &&
        fixture_requests "$FXB" "/team/app/tags/list" | grep "\"status\": 200" | grep -q "\"authorization\": \"Bearer "'

# ---- a restart of layerd -------------------------------------------------------------------
curl -s --max-time 5 "http://127.0.0.1:$PA/metrics" >"$T/metrics"  # checked below
stop "$LAYERD_PID"
# A layer evicted while layerd is down (its file removed, as eviction does):
# the restart drops it from the private-content table.
EVICTED=${PRIV[3]#sha256:}
recorded() { grep -qP "^p\t${PRIV[3]}\t" "$T/cache/private-content"; }
checkd "before the restart: the layer is recorded private" recorded
rm "$T/cache/blobs/sha256/${EVICTED:0:2}/$EVICTED"
layerd_serve "$T/layerd1.log" "$T/spec.yaml"
DIAG_FILES+=("$T/layerd1.log" "$T/layerd2.log")
check "layerd restarts" wait_port "$PA"
checkd "after a restart: the evicted layer's entries are pruned, the repository stays private" \
  eval 'not recorded && grep -qP "^r\t$REG\tteam/app$" "$T/cache/private-content" &&
        grep -q "private-content: dropped [1-9][0-9]* entries of digests no longer cached" "$T/layerd1.log"'
checkd "after a restart: /v2/pub/app/blobs/<private digest> still never the bytes (the pruned one too)" cross restart
get "$(url "team/app/blobs/${PRIV[2]}")" "$T/anon2"
checkd "after a restart: no credentials, still 401 and no bytes" eval 'challenged "$T/anon2" && no_leak "$T/anon2"'
get "$(url "team/app/blobs/${PRIV[3]}")" "$T/refetch" -u "$USER_OK:$PASS_OK"
checkd "the pruned layer fetched again with the credentials: its bytes, cached, recorded private again" \
  eval 'cmp -s "$T/refetch" "$T/priv/blobs/sha256/$EVICTED" && wait_for 5 in_cache "$T/cache" "${PRIV[3]}" && recorded'
checkd "... and under pub/app still never its bytes" cross refetched

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

# ---- auth_passthrough off, credentials of layerd's own: one check per auth_verdict_ttl ----------
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}' "$PF" "$(printf '%s:%s' "$USER_OK" "$PASS_OK" | base64 -w0)" \
  >"$T/own.json"
sed "s|auth_passthrough: false|auth_passthrough: false\n    endpoints: [{url: http://127.0.0.1:$PF, credentials_file: $T/own.json}]|" \
  "$T/spec-off.yaml" >"$T/spec-own.yaml"
layerd_serve "$T/layerd-own.log" "$T/spec-own.yaml"
DIAG_FILES+=("$T/layerd-own.log")
check "layerd restarts with auth_passthrough: false and credentials of its own" wait_port "$PA"
# own_checks: the origin's answered HEADs of team/app (one check each, whatever 401 came first).
own_checks() { fixture_requests "$FX" '^/v2/team/app/' | grep '"method": "HEAD"' | grep -c '"status": 200'; }
own_served() {
  local d
  for d in "$@"; do
    get "$(url "team/app/blobs/$d")" "$T/own"
    cmp -s "$T/own" "$T/priv/blobs/sha256/${d#sha256:}" || { echo "# team/app/blobs/$d: $code" >&2; return 1; }
  done
}
c0=$(own_checks)
checkd "passthrough off, layerd's own credentials: the private image is served" own_served "${PRIV[@]:1}"
checkd "... with one check of the origin for its $((${#PRIV[@]} - 1)) blobs ($(($(own_checks) - c0)))" \
  test $(($(own_checks) - c0)) = 1
sleep 1.2  # past auth_verdict_ttl
checkd "... past auth_verdict_ttl, checked once more" eval 'own_served "${PRIV[@]:1}" && [[ $(($(own_checks) - c0)) == 2 ]]'
stop "$LAYERD_PID"
layerd_serve "$T/layerd2.log" "$T/spec.yaml"
check "layerd restarts with pass-through" wait_port "$PA"

# ---- secrets stay out ------------------------------------------------------------------------
b64=$(basic_b64 "$USER_OK" "$PASS_OK")
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
get "$(url team/app/tags/list)" "$T/tags-up" -u "$USER_OK:$PASS_OK"
checkd "the origin up: the tag list with the credentials" eval '[[ $code == 200 ]] && listed "$T/tags-up"'
stop "$FX_PID"
get "$(url "pub/shared/blobs/${PRIV[2]}")" "$T/shared-l"
checkd "origin down: the public image's shared layer is served from the cache ($code)" \
  cmp -s "$T/shared-l" "$T/priv/blobs/sha256/${PRIV[2]#sha256:}"
get "$(url "pub/app/blobs/${PRIV[2]}")" "$T/shared-x"
checkd "origin down: ... but not under pub/app, which does not have it" eval '[[ $code != 200 ]] && no_leak "$T/shared-x"'
private_grace "$T/layerd2.log" 2
get "$(url team/app/tags/list)" "$T/tags-down" -u "$USER_OK:$PASS_OK"
checkd "origin down: the remembered tag list, within auth_outage_grace ($code)" \
  eval '[[ $code == 200 ]] && listed "$T/tags-down"'
get "$(url team/app/tags/list)" "$T/tags-down-anon"
checkd "origin down: no credentials, 401 and not the list" eval 'challenged "$T/tags-down-anon" && ! listed "$T/tags-down-anon"'
get "$(url team/app/tags/list)" "$T/tags-down-bad" -u "$USER_OK:$PASS_BAD"
checkd "origin down: wrong credentials, not the list ($code)" eval '[[ $code != 200 ]] && ! listed "$T/tags-down-bad"'

stop "$LAYERD_PID"
finish
