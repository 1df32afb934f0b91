#!/usr/bin/env bash
# Credentials that rotate, while `layerd serve` serves and without a SIGHUP:
#  a) a credentials_file laid out as a Kubernetes Secret volume (config.json ->
#     ..data/config.json, ..data -> a timestamped directory) updated by swapping
#     the ..data symlink: the old password revoked at the fixture (bearer mode),
#     the next pulls use the new one; a malformed update keeps the last good
#     credentials (one warning), a good one after it is used;
#  b) a credential_helper script whose password rotates (fixture in basic mode):
#     pulls keep working once its answer's lifetime is over; a mirror whose helper
#     hangs: the helper is killed at its timeout, the request fails over to the
#     origin, no process is left behind;
#  c) an identitytoken entry traded at the fixture's token realm as an OAuth2
#     refresh token (the fixture rotates it on every grant); a realm that takes
#     no POST makes the request end with a clear reason.
# Every pull is of a blob layerd has not cached, so it goes upstream.
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
PY=/usr/bin/python3
require_tools curl sha256sum base64 "$PY"

cred_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait_exit "$p" 3 || { kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; }; done
  cleanup
}
trap cred_cleanup EXIT

# In layerd's environment: a credential helper must not see it.
export CRED_TEST_LEAK=leaked
checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
HOST=127.0.0.1:$PF
checkd "a second fixture starts (no auth: an origin behind a mirror that needs some)" fixture_start open
FX2=http://127.0.0.1:$FIXTURE_PORT
LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fixture.log")

auth() { fixture_json PUT "$FX/_fixture/auth" "$1"; }
expire_tokens() { fixture_call POST "$FX/_fixture/expire_tokens"; }
# serve NAME YAML: a layerd of its own for a case (the registries in YAML); $L its URL.
L=
serve() {
  local p
  [[ -n $LAYERD_PID ]] && { kill -TERM "$LAYERD_PID"; wait_exit "$LAYERD_PID" 5; }
  p=$(free_port)
  L=http://127.0.0.1:$p
  LOG=$T/layerd-$1.log
  DIAG_FILES=("$LOG" "$T/fixture.log")
  write_spec "$T/$1.yaml" "$p" "$T/$1-cache" <<<"$2"
  layerd_serve "$LOG" "$T/$1.yaml"
  wait_port "$p" 10
}
# pull REGISTRY: GET of a blob new to layerd through it; 0 when its bytes came whole.
i=0
pull() {
  local d
  i=$((i + 1))
  d=$(random_file "$T/blob$i" 4096)
  put_blob "$T/blob$i" >/dev/null || return 1
  get "$L/v2/app/blobs/$d?ns=$1" "$T/got$i"
  [[ $code == 200 ]] && cmp -s "$T/blob$i" "$T/got$i"
}
# lines PATTERN: how many lines of the running case's log match PATTERN.
lines() { grep -c -- "$1" "$LOG"; }

# ---- a) a Secret volume's symlink swap ---------------------------------------------------
SEC=$T/secret
# secret VERSION JSON: a new timestamped directory holding JSON, and ..data swapped to it
# (a rename over the old link: how the kubelet's atomic writer updates a volume).
secret() {
  mkdir -p "$SEC/..$1" && printf '%s' "$2" >"$SEC/..$1/config.json" &&
    ln -sfn "..$1" "$SEC/..data_tmp" && mv -Tf "$SEC/..data_tmp" "$SEC/..data" &&
    { [[ -L $SEC/config.json ]] || ln -s ..data/config.json "$SEC/config.json"; }
}
dockercfg() { printf '{"auths": {"%s": {"auth": "%s"}}}' "$HOST" "$(basic_b64 "$1" "$2")"; }

case_a() {
  auth '{"mode": "bearer", "user": "u", "password": "pw-one", "token_ttl": 300}'
  secret v1 "$(dockercfg u pw-one)"
  checkd "a: layerd serves with the Secret volume's config.json" serve a "registries:
  \"reg.test:$PF\":
    origin: $FX
    endpoints: [{url: $FX, credentials_file: $SEC/config.json}]"
  checkd "a: a pull with the first password" pull "reg.test:$PF"

  # The password changes at the registry (the old one revoked, its tokens too), then in the Secret.
  auth '{"mode": "bearer", "user": "u", "password": "pw-two", "token_ttl": 300}'
  expire_tokens
  secret v2 "$(dockercfg u pw-two)"
  sleep 1.2  # the file is looked at once a second at most
  checkd "a: after the symlink swap, a pull with the new password, no SIGHUP" pull "reg.test:$PF"
  checkd "a: ... and one line says the credentials were updated" test "$(lines 'credentials updated: ns=reg.test')" = 1
  check "a: ... naming the file, never a password" \
    eval "grep -q 'credentials updated: .*$SEC/config.json: new credentials in use' '$LOG' && absent -e pw-one -e pw-two '$LOG'"

  # A malformed update: the last good credentials stay, said once.
  secret v3 '{"auths": {'
  sleep 1.2
  expire_tokens
  checkd "a: a malformed update: pulls go on with the last good credentials" pull "reg.test:$PF"
  sleep 1.2
  expire_tokens
  checkd "a: ... again" pull "reg.test:$PF"
  checkd "a: ... and one warning says so, once" test "$(lines 'credentials not refreshed: ns=reg.test.*not valid JSON; the last good credentials stay in use')" = 1

  # Good again, with a third password.
  auth '{"mode": "bearer", "user": "u", "password": "pw-three", "token_ttl": 300}'
  expire_tokens
  secret v4 "$(dockercfg u pw-three)"
  sleep 1.2
  checkd "a: a good update after it: pulls with the third password" pull "reg.test:$PF"
  check "a: ... said in a second 'updated' line" test "$(lines 'credentials updated: ns=reg.test')" = 2
  check "a: the fixture saw no 401 from /token after the first pull's" \
    test "$(fixture_requests "$FX" '^/token' | grep -c '"status": 401')" = 0
}

# ---- b) a credential helper ----------------------------------------------------------------
case_b() {
  auth '{"mode": "basic", "user": "u", "password": "helper-one"}'
  printf 'helper-one' >"$T/helper-password"
  cat >"$T/helper" <<SH
#!/bin/sh
# docker-credential-test: answers the password in $T/helper-password.
[ "\$1" = get ] || exit 3
read -r server
echo "\$server \${CRED_TEST_LEAK:-clean}" >>"$T/helper-runs"
sleep 61 >/dev/null 2>&1 &  # left behind, as a careless wrapper script does
printf '{"ServerURL": "%s", "Username": "u", "Secret": "%s"}' "\$server" "\$(cat "$T/helper-password")"
SH
  cat >"$T/hang-helper" <<SH
#!/bin/sh
sleep 60
SH
  # layerd as a subreaper (as PID 1 in the image is a reaper): what its helpers leave behind
  # becomes its child, and a zombie unless layerd reaps it.
  cat >"$T/layerd-subreaper" <<PY
#!/usr/bin/env python3
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("prctl: errno %d" % ctypes.get_errno())
os.execv("$(realpath "$LAYERD")", ["layerd"] + sys.argv[1:])
PY
  chmod +x "$T/helper" "$T/hang-helper" "$T/layerd-subreaper"
  LAYERD=$T/layerd-subreaper checkd "b: layerd serves with a credential helper (lifetime 4s) and a hanging one (timeout 1s)" serve b "registries:
  \"reg.test:$PF\":
    origin: $FX
    endpoints: [{url: $FX, credential_helper: {command: $T/helper, lifetime: 4s, timeout: 5s}}]
  \"hang.test:$PF\":
    origin: $FX2
    endpoints: [{url: $FX, credential_helper: {command: $T/hang-helper, timeout: 1s}}]"
  checkd "b: a pull with the helper's password" pull "reg.test:$PF"
  check "b: ... what the helper left running in its group was killed" \
    test -z "$(ps -e -o args= | grep -Fx 'sleep 61')"
  checkd "b: ... the helper was asked for $HOST, with a clean environment" \
    eval "[[ \$(cat '$T/helper-runs') == '$HOST clean' ]]"
  pull "reg.test:$PF" && pull "reg.test:$PF"
  check "b: two more pulls within its lifetime: the helper is not run again" test "$(wc -l <"$T/helper-runs")" = 1

  auth '{"mode": "basic", "user": "u", "password": "helper-two"}'
  printf 'helper-two' >"$T/helper-password"
  sleep 4.2
  checkd "b: the password rotated: once the lifetime is over a pull works with the new one" pull "reg.test:$PF"
  check "b: ... the helper ran a second time" test "$(wc -l <"$T/helper-runs")" = 2
  check "b: ... said in a line (as the first answer was), no password in the log" \
    eval "[[ \$(grep -c 'credentials updated: ns=reg.test' '$LOG') == 2 ]] && absent -e helper-one -e helper-two '$LOG'"

  # The mirror's helper hangs: killed at 1 s, the mirror asked without credentials says 401,
  # the request goes on to the origin (FX2, open), which has the blob too.
  local t0 left
  t0=$(now_ms)
  i=$((i + 1))
  D=$(random_file "$T/blob$i" 4096)
  put_blob "$T/blob$i" >/dev/null
  fixture_call PUT "$FX2/_fixture/blob/$D" "$T/blob$i"
  get "$L/v2/app/blobs/$D?ns=hang.test:$PF" "$T/got$i"
  checkd "b: a hanging helper: the request fails over to the origin, served whole within 4 s ($ms ms)" \
    eval "[[ $code == 200 ]] && cmp -s '$T/blob$i' '$T/got$i' && (($(now_ms) - t0 < 4000))"
  check "b: ... after the mirror's 401 without credentials" \
    grep -q "not on this endpoint, trying the next: ns=hang.test:$PF .*endpoint=$FX reason=\"HTTP 401\"" "$LOG"
  check "b: ... the helper was killed at its timeout, said in a warning" \
    grep -q "credentials not refreshed: ns=hang.test:$PF .*reason=\"$T/hang-helper: credential helper killed after 1000 ms; none to use\"" "$LOG"
  left=$(ps -e -o stat=,args= | grep -F -e "$T/hang-helper" -e 'sleep 60' | grep -v grep)
  check "b: ... nothing of it is left running" test -z "$left"
  check "b: ... and layerd has no zombie child" \
    test -z "$(ps --ppid "$LAYERD_PID" -o stat= | grep Z)"
}

# ---- c) an identity token as an OAuth2 refresh token -----------------------------------------
case_c() {
  fixture_call POST "$FX/_fixture/reset"  # an empty log; auth again after it
  auth '{"mode": "bearer", "user": "u", "password": "never-used", "refresh_token": "refresh-one", "rotate_refresh": true, "token_ttl": 300}'
  printf '{"auths": {"%s": {"auth": "%s", "identitytoken": "refresh-one"}}}' "$HOST" "$(basic_b64 u "")" >"$T/idtoken.json"
  checkd "c: layerd serves with an identitytoken entry" serve c "registries:
  \"reg.test:$PF\":
    origin: $FX
    endpoints: [{url: $FX, credentials_file: $T/idtoken.json}]"
  checkd "c: a pull: the refresh token is traded for an access token" pull "reg.test:$PF"
  check "c: ... by a POST to the realm, no GET of /token" \
    eval "[[ \$(fixture_requests '$FX' '^/token' | grep -c '\"method\": \"POST\".*\"status\": 200') == 1 &&
            \$(fixture_requests '$FX' '^/token' | grep -c '\"method\": \"GET\"') == 0 ]]"
  check "c: ... without Basic credentials" \
    eval "! fixture_requests '$FX' '^/token' | grep -qi '\"authorization\"'"
  expire_tokens
  checkd "c: tokens expired: a pull trades the refresh token the realm rotated to" pull "reg.test:$PF"
  check "c: ... (two grants, both answered 200)" \
    test "$(fixture_requests "$FX" '^/token' | grep -c '"method": "POST".*"status": 200')" = 2

  auth '{"mode": "bearer", "user": "u", "password": "never-used", "token_ttl": 300}'
  expire_tokens
  pull "reg.test:$PF"
  checkd "c: a realm that takes no POST: the pull ends (HTTP $code)" test "$code" != 200
  check "c: ... with the reason in the log" \
    grep -q "credentials not refreshed: ns=reg.test:$PF .*reason=\"token endpoint: HTTP 405 to the OAuth2 POST: the realm takes no refresh tokens" "$LOG"
  check "c: ... no refresh token in the log" absent -e refresh-one "$LOG"
}

case_a
case_b
case_c
finish
