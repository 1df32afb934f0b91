#!/usr/bin/env bash
# The private-content table on disk and over time (issue 17, agent/private.h),
# with curl against a layerd in front of the fixture origin, which asks for
# Basic credentials for the repositories its "private" list names and serves
# each blob only under the repository it was pushed to
# (tests/fixtures/upstream.py). What is proven:
# - a new entry is an append to the same file (its inode stays), and the
#   sentinel is written next to it;
# - a last line cut short (a crash during an append) is dropped at start-up,
#   and what the file names stays closed;
# - the file deleted with its sentinel left: layerd says so at start-up,
#   /metrics counts the cached blobs now private to an unknown repository,
#   GET /v2/<public>/blobs/<private digest> does not give the private bytes,
#   and the private repository with its credentials still reads its blobs;
# - a repository that turns private: its manifest, served from the cache to
#   credentials the origin accepted, records what it refers to, so its layer
#   cached while it was public is no longer served under another name.
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_tools curl /usr/bin/python3

USER_OK=alice PASS_OK='s3cret-Pa55'
PA=$(free_port)
DIAG_FILES=("$T/layerd.log" "$T/fx.log")

# ---- the origin: team/ private, later/app public for now -------------------------------------
fixture_start fx || { not_ok "fixture starts"; finish; exit 1; }
FX=http://127.0.0.1:$FIXTURE_PORT REG=127.0.0.1:$FIXTURE_PORT
auth() {
  fixture_json PUT "$FX/_fixture/auth" \
    "{\"mode\": \"basic\", \"user\": \"$USER_OK\", \"password\": \"$PASS_OK\", \"private\": [$1]}"
}
oci_layout "$T/priv" >"$T/priv.digests" && oci_layout "$T/later" >"$T/later.digests"
mapfile -t PRIV <"$T/priv.digests"
mapfile -t LATER <"$T/later.digests"
check "the origin serves a private image and one public for now" \
  eval 'auth "\"team/\"" && fixture_push "$T/priv" team/app "$FX" && fixture_push "$T/later" later/app "$FX"'

# tag_ttl 0s: each manifest by tag asks the origin (which is how layerd learns
# that later/app turned private).
write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
registries:
  "$REG":
    origin: $FX
    auth_verdict_ttl: 1s
    tag_ttl: 0s
YAML
start_layerd() {
  layerd_serve "$1" "$T/spec.yaml"
  DIAG_FILES+=("$1")
  wait_port "$PA"
}
check "layerd starts" start_layerd "$T/layerd.log"

# get_private PATH: GET /v2/PATH with the credentials, once more after layerd's
# first challenge (a name it did not know to be private yet).
get_private() {
  get "$(url "$1")" "$T/got" -u "$USER_OK:$PASS_OK"
  [[ $code == 401 ]] && get "$(url "$1")" "$T/got" -u "$USER_OK:$PASS_OK"
  [[ $code == 200 ]]
}
# pull_private REPO DIGESTS...: the manifest by tag and each blob, with the credentials.
pull_private() {
  local repo=$1 d; shift
  get_private "$repo/manifests/v1" || { echo "# $repo/manifests/v1: $code" >&2; return 1; }
  for d in "$@"; do
    get_private "$repo/blobs/$d" || { echo "# $repo/blobs/$d: $code" >&2; return 1; }
  done
}
# cross DIR DIGESTS...: GET /v2/pub/app/blobs/<digest> never gives the bytes of the layout DIR.
cross() {
  local dir=$1 d; shift
  for d in "$@"; do
    get "$(url "pub/app/blobs/$d")" "$T/cross"
    [[ $code != 200 ]] && not leaks "$T/cross" "$dir/blobs/sha256" || { echo "# pub/app/blobs/$d: $code" >&2; return 1; }
  done
}
TABLE=$T/cache/private-content SENTINEL=$T/cache/private-content.sentinel

# ---- appends -----------------------------------------------------------------------------------
checkd "the private image through layerd with the credentials" pull_private team/app "${PRIV[@]:1}"
checkd "the table and its sentinel are written" \
  eval 'grep -qP "^p\t${PRIV[2]}\t$REG\tteam/app$" "$TABLE" && test -s "$SENTINEL"'
OTHER=$(random_file "$T/other.bin" 70000)
fixture_call PUT "$FX/_fixture/blob/$OTHER?repos=team/other" "$T/other.bin"
ino0=$(stat -c %i "$TABLE") size0=$(stat -c %s "$TABLE")
appended() {
  local line
  line=$(printf 'r\t%s\tteam/other\np\t%s\t%s\tteam/other\n' "$REG" "$OTHER" "$REG")
  [[ $(stat -c %i "$TABLE") == "$ino0" ]] && (($(stat -c %s "$TABLE") == size0 + ${#line} + 1)) &&
    [[ $(tail -n 2 "$TABLE") == "$line" ]]
}
checkd "another private blob: its entries appended to the same file (inode $ino0)" \
  eval 'get_private "team/other/blobs/$OTHER" && cmp -s "$T/got" "$T/other.bin" && appended'
checkd "GET /v2/pub/app/blobs/<private digest>: never the private bytes" cross "$T/priv" "${PRIV[@]:1}"

# ---- a crash during an append ------------------------------------------------------------------
stop "$LAYERD_PID"
printf 'p\tsha256:%s\t127.0.0' "${PRIV[2]#sha256:}" >>"$TABLE"
check "a last line cut short: layerd starts" start_layerd "$T/layerd-torn.log"
checkd "... says it dropped it" grep -q "private-content: its last line was cut short" "$T/layerd-torn.log"
checkd "... and what the file names stays closed" cross "$T/priv" "${PRIV[@]:1}"

# ---- the table deleted, its sentinel left -------------------------------------------------------
stop "$LAYERD_PID"
rm "$TABLE"
check "the table deleted: layerd starts" start_layerd "$T/layerd-lost.log"
checkd "... and says so at start-up, as an error" \
  grep -q "^<3>.*the private-content table was deleted, its sentinel is there" "$T/layerd-lost.log"
lost_count() {
  curl -s --max-time 5 "http://127.0.0.1:$PA/metrics" | sed -n 's/^layerd_private_lost //p'
}
checkd "... /metrics counts the cached blobs it made private to an unknown repository" \
  eval '(($(lost_count) >= ${#PRIV[@]}))'
checkd "... GET /v2/pub/app/blobs/<private digest>: not the private bytes" cross "$T/priv" "${PRIV[@]:1}"
checkd "... the private repository with its credentials reads its layer (the origin confirms it)" \
  eval 'get_private "team/app/blobs/${PRIV[2]}" && cmp -s "$T/got" "$T/priv/blobs/sha256/${PRIV[2]#sha256:}"'
stop "$LAYERD_PID"
check "a restart after that: layerd starts" start_layerd "$T/layerd-after.log"
checkd "... the table is not lost any more, and still closed" \
  eval 'absent "table was deleted" "$T/layerd-after.log" && cross "$T/priv" "${PRIV[@]:1}"'

# ---- a repository that turns private -----------------------------------------------------------
pull_public() {
  local d
  get "$(url later/app/manifests/v1)" "$T/got" && [[ $code == 200 ]] || return 1
  for d in "${LATER[@]:1}"; do
    get "$(url "later/app/blobs/$d")" "$T/got" && [[ $code == 200 ]] || return 1
  done
}
checkd "later/app while public: pulled anonymously, cached" \
  eval 'pull_public && in_cache "$T/cache" "${LATER[@]}" && absent -F "later/app" "$TABLE"'
check "later/app turns private at the origin" auth '"team/", "later/"'
checkd "its manifest, from the cache, to the credentials: what it refers to is recorded private" \
  eval 'pull_private later/app && grep -qP "^p\t${LATER[2]}\t$REG\tlater/app$" "$TABLE" &&
        grep -qP "^p\t${LATER[0]}\t$REG\tlater/app$" "$TABLE"'
checkd "... so its layer cached while public is not served under pub/app" cross "$T/later" "${LATER[@]:1}"

stop "$LAYERD_PID"
finish
