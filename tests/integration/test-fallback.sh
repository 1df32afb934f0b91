#!/usr/bin/env bash
# `layerd fetch` walks a real endpoint chain: a central cache first, the
# origin last, with credentials, failover, circuit breakers and timeouts.
#
# The peers are real and private to this test, on free loopback ports:
#  - the origin, a docker-registry (distribution v2) that wants HTTP Basic auth
#    (htpasswd, bcrypt); skopeo pushes a generated image and a two-platform
#    OCI index to it;
#  - the central cache, a second docker-registry in proxy mode that holds the
#    origin's credentials, so layerd needs none for it;
#  - later, in the cache's place, a Python listener that accepts connections
#    into its backlog and never answers (a hung cache).
# The registry is named "127.0.0.1:$PO", its origin on that same port.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "skopeo runs as nobody through setpriv, which needs root"
for b in docker-registry skopeo setpriv curl "$PY"; do
  if ! command -v "$b" >/dev/null; then
    echo "1..0 # SKIP $b is not installed (make deps)"
    exit 0
  fi
done

PO=$(free_port)  # the origin
PP=$(free_port)  # the central cache, later the hung listener
USER_=tester
PASS=Orig1n-s3cret-$RANDOM$RANDOM
WRONG=Wr0ng-pa55-$RANDOM$RANDOM
ORIGIN=http://127.0.0.1:$PO
CACHE=http://127.0.0.1:$PP
R=127.0.0.1:$PO/test/app
NS="ns=127.0.0.1%3A$PO"  # containerd's ?ns= for mirrors, as layerd sends it

# ---- helpers -------------------------------------------------------------------------
LAST=  # the last fetch's output prefix, for diagnostics
diag() {
  local f
  for f in ${LAST:+"$LAST.out" "$LAST.err"} "$T/origin.log" "$T/cache.log"; do
    [[ -s $f ]] || continue
    echo "# --- last lines of $f"
    tail -n 12 "$f" | cut -c1-400 | sed 's/^/#   /'
  done >&2
}
# checkd DESCRIPTION COMMAND...: check, with the outputs and logs on stderr when it fails.
checkd() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; diag; fi; }

# fetch, field and answered: lib.sh.
# logged FILE MARK FIXED_STRING: the registry logged FIXED_STRING since MARK.
logged() { requests "$1" "$2" | grep -qF "$3"; }
# from_layerd FILE MARK: the registry's access-log lines for layerd's requests since MARK.
from_layerd() { requests "$1" "$2" | grep -F '"layerd/' || true; }
# statuses FILE MARK: the status codes of those, in order, on one line.
statuses() { from_layerd "$1" "$2" | sed -E 's/.* HTTP\/[0-9.]+" ([0-9]+) .*/\1/' | paste -sd' '; }
# refuses PORT: nothing accepts connections on 127.0.0.1:PORT.
refuses() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# count FIXED_STRING FILE: how many lines of FILE hold it.
count() { grep -cF "$1" "$2"; }

# spec FILE [CACHE_TIMEOUTS [CREDENTIALS_FILE]]: the registry 127.0.0.1:$PO with the
# chain [central cache, origin]; the origin listed to give it its credentials.
spec() {
  cat >"$1" <<YAML
version: 1
agent:
  cache_dir: $T/cache-dir
registries:
  "127.0.0.1:$PO":
    origin: $ORIGIN
    endpoints:
      - url: $CACHE
        ${2:+timeouts: $2}
      - url: $ORIGIN
        ${3:+credentials_file: $3}
YAML
}
# docker_config FILE PASSWORD: a docker config.json with $USER_:PASSWORD for the origin.
docker_config() {
  printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "$PO" "$(basic_b64 "$USER_" "$2")" >"$1"
}

# chain_breaks CASE SPEC: three references in one process while the cache is
# broken. The first pays for the cache (its failure opens the cache's breaker)
# and then makes two requests to the origin: the 401 challenge, then with
# Basic credentials. The later ones skip the cache and send the credentials
# at once: one request each.
chain_breaks() {
  local c=$1 l
  mo=$(mark "$T/origin.log")
  fetch "$c" --spec "$2" "$R:v1" "$R@$MDIGEST" "$R:multi"
  checkd "$c cache, 3 references: exit 0" test "$rc" = 0
  for l in 1 2 3; do
    checkd "$c cache, reference $l: 200 from the origin" answered "$l" "$ORIGIN"
  done
  checkd "$c cache: the first request tried the cache, then the origin (requests=3)" test "$(field 1 requests)" = 3
  checkd "$c cache: the origin saw 401 then 200 for the first, 200 at once for the others" \
    test "$(statuses "$T/origin.log" "$mo")" = "401 200 200 200"
  checkd "$c cache: the later ones skipped the cache (requests=1, 1)" \
    test "$(field 2 requests),$(field 3 requests)" = 1,1
  checkd "$c cache: the failover line names the cache" \
    grep -qE "upstream failed, trying the next endpoint: .*endpoint=$CACHE reason=" "$LAST.err"
  checkd "$c cache: \"circuit open\" logged once, for the cache" \
    test "$(count "circuit open: ns=127.0.0.1:$PO endpoint=$CACHE " "$LAST.err").$(count "circuit open" "$LAST.err")" = 1.1
  echo "# $c cache: first=$(field 1 ms)ms later=$(field 2 ms)ms,$(field 3 ms)ms"
}

# ---- the origin, with auth, and the image ----------------------------------------------
# bcrypt ($2b$, what htpasswd -B writes) from Python's crypt module (there in
# Debian 12's Python 3.11, deprecated, gone in 3.13), at the lowest cost (2^4
# rounds): the registry checks the hash on every request.
$PY -W ignore -c 'import crypt, sys; print(sys.argv[1] + ":" + crypt.crypt(sys.argv[2], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))' \
  "$USER_" "$PASS" >"$T/htpasswd"
checkd "a bcrypt htpasswd entry is made" grep -qE "^$USER_:\\\$2b\\\$04\\\$" "$T/htpasswd"
registry origin "$PO" "auth:
  htpasswd:
    realm: layerd-test
    path: $T/htpasswd"
check "the origin listens" wait_port "$PO" 10
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$ORIGIN/v2/")
checkd "the origin wants credentials (401 without, over plain HTTP)" test "$code" = 401
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -u "$USER_:$PASS" "$ORIGIN/v2/")
checkd "the origin accepts the bcrypt password" test "$code" = 200

oci_layout "$T/layout" --index >"$T/digests"
check "the OCI layout is built" test $? -eq 0
mapfile -t D <"$T/digests"
MDIGEST=${D[0]} IDIGEST=${D[4]}
BLOBS=("${D[1]}" "${D[2]}" "${D[3]}")  # config, layer 0, layer 1
chmod -R a+rX "$T/layout"
skopeo_copy --dest-tls-verify=false --dest-creds "$USER_:$PASS" --preserve-digests \
  "oci:$T/layout:v1" "docker://$R:v1"
checkd "skopeo pushes the image with --dest-creds" test $? -eq 0
skopeo_copy --dest-tls-verify=false --dest-creds "$USER_:$PASS" --preserve-digests --all \
  "oci:$T/layout:multi" "docker://$R:multi"
checkd "skopeo pushes the two-platform index" test $? -eq 0
# head_digest TAG ACCEPT: the origin's Docker-Content-Digest for TAG.
head_digest() {
  curl -s --max-time 5 -I -u "$USER_:$PASS" -H "Accept: $2" "$ORIGIN/v2/test/app/manifests/$1" |
    tr -d '\r' | sed -n 's/^docker-content-digest: *//Ip'
}
ODIGEST=$(head_digest v1 application/vnd.oci.image.manifest.v1+json)
checkd "the origin serves v1 under the pushed manifest digest" test "$ODIGEST" = "$MDIGEST"
checkd "the origin serves multi under the pushed index digest" \
  test "$(head_digest multi application/vnd.oci.image.index.v1+json)" = "$IDIGEST"

# ---- the central cache: docker-registry in proxy mode, holding the credentials --------
# Not proxy.username/password: docker-registry 2.8 keeps those only for bearer
# token realms (it reads the origin's /v2/ challenge at start-up) and sends
# nothing to a Basic-auth origin, which then answers 401 to everything the
# cache asks. User info in remoteurl works: Go's HTTP client turns it into a
# Basic Authorization header on every request to the origin.
registry cache "$PP" "proxy:
  remoteurl: http://$USER_:$PASS@127.0.0.1:$PO"
CACHE_PID=$REGISTRY_PID
check "the central cache listens" wait_port "$PP" 10

docker_config "$T/config.json" "$PASS"
spec "$T/spec.yaml" "" "$T/config.json"

# ---- 1. every fetch is served by the central cache ---------------------------------------
mc=$(mark "$T/cache.log"); mo=$(mark "$T/origin.log")
fetch tag --spec "$T/spec.yaml" "$R:v1"
checkd "manifest by tag: 200, verified, from the central cache" answered 1 "$CACHE" "$MDIGEST"
checkd "manifest by tag: exit 0, one request" test "$rc.$(field 1 requests)" = 0.1
checkd "the cache logged the tag request with ?$NS" \
  logged "$T/cache.log" "$mc" "\"GET /v2/test/app/manifests/v1?$NS HTTP/1.1\" 200"
fetch digest --spec "$T/spec.yaml" "$R@$MDIGEST"
checkd "manifest by digest: 200, verified, from the central cache" answered 1 "$CACHE" "$MDIGEST"
checkd "the cache logged the digest request with ?$NS" \
  logged "$T/cache.log" "$mc" "\"GET /v2/test/app/manifests/$MDIGEST?$NS HTTP/1.1\" 200"
for i in 0 1 2; do
  fetch "blob$i" --spec "$T/spec.yaml" --blob "${BLOBS[$i]}" "$R:v1"
  checkd "blob $i (${BLOBS[$i]:7:12}): 200, verified, from the central cache" answered 1 "$CACHE" "${BLOBS[$i]}"
  checkd "blob $i: exit 0" test "$rc" = 0
  checkd "the cache logged blob $i with ?$NS" \
    logged "$T/cache.log" "$mc" "\"GET /v2/test/app/blobs/${BLOBS[$i]}?$NS HTTP/1.1\" 200"
done
fetch head --spec "$T/spec.yaml" --head "$R:v1"
checkd "--head by tag: 200 from the central cache, the origin's Docker-Content-Digest" \
  answered 1 "$CACHE" "$ODIGEST" -
checkd "the cache logged the HEAD with ?$NS" \
  logged "$T/cache.log" "$mc" "\"HEAD /v2/test/app/manifests/v1?$NS HTTP/1.1\" 200"
fetch index --spec "$T/spec.yaml" "$R:multi"
checkd "the index by tag, default Accept: the index digest, from the central cache" answered 1 "$CACHE" "$IDIGEST"
checkd "... with the OCI index media type" \
  test "$(field 1 media_type)" = application/vnd.oci.image.index.v1+json
fetch index-digest --spec "$T/spec.yaml" "$R@$IDIGEST" "$R@${D[5]}"
checkd "the index by digest, from the central cache" answered 1 "$CACHE" "$IDIGEST"
checkd "the arm64 manifest by digest, from the central cache" answered 2 "$CACHE" "${D[5]}"
checkd "layerd itself sent nothing to the origin while the cache answered" \
  test -z "$(from_layerd "$T/origin.log" "$mo")"
checkd "the cache fetched from the origin with its credentials" \
  logged "$T/origin.log" "$mo" "\"GET /v2/test/app/blobs/${BLOBS[1]} HTTP/1.1\" 200"
# distribution refuses an OCI index to a client that does not accept one (404
# MANIFEST_UNKNOWN, on the cache and on the origin alike); the last endpoint's
# answer is final.
fetch index-accept --spec "$T/spec.yaml" --accept application/vnd.oci.image.manifest.v1+json "$R:multi"
checkd "the index by tag, Accept: OCI manifest only: 404 (distribution's answer), exit 1" \
  test "$(field 1 status).$(field 1 endpoint).$rc" = "404.$ORIGIN.1"
checkd "... after the cache's 404 and a failover to the origin" \
  grep -qE "not on this endpoint, trying the next: .*ref=multi endpoint=$CACHE reason=\"HTTP 404\"" "$LAST.err"

# ---- 2. the cache stopped (its port refuses): the origin, with credentials ---------------
kill "$CACHE_PID"
wait_exit "$CACHE_PID" 10
checkd "the central cache is stopped and its port refuses" refuses "$PP"
mo=$(mark "$T/origin.log")
fetch down-tag --spec "$T/spec.yaml" "$R:v1"
checkd "cache down, manifest by tag: 200, verified, from the origin" answered 1 "$ORIGIN" "$MDIGEST"
checkd "cache down: stderr has the failover line naming the cache" \
  grep -qE "upstream failed, trying the next endpoint: .*endpoint=$CACHE reason=" "$LAST.err"
fetch down-digest --spec "$T/spec.yaml" "$R@$MDIGEST"
checkd "cache down, manifest by digest: from the origin" answered 1 "$ORIGIN" "$MDIGEST"
for i in 0 1 2; do
  fetch "down-blob$i" --spec "$T/spec.yaml" --blob "${BLOBS[$i]}" "$R:v1"
  checkd "cache down, blob $i: 200, verified, from the origin" answered 1 "$ORIGIN" "${BLOBS[$i]}"
done
fetch down-head --spec "$T/spec.yaml" --head "$R:v1"
checkd "cache down, --head: the origin's digest" answered 1 "$ORIGIN" "$ODIGEST" -
checkd "the origin logged layerd's authenticated requests (200, no ?ns=)" \
  logged "$T/origin.log" "$mo" "\"GET /v2/test/app/manifests/v1 HTTP/1.1\" 200"

chain_breaks refused "$T/spec.yaml"

# ---- 3. a hung cache: accepts connections, never answers; response timeout 1s ------------
$PY - "$PP" 30 >"$T/hung.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)  # the kernel completes handshakes into the backlog; nobody accepts
time.sleep(int(sys.argv[2]))
PY
HUNG_PID=$!; PIDS+=("$HUNG_PID")
checkd "the hung listener takes the cache's port" wait_port "$PP" 10
spec "$T/spec-hung.yaml" "{response: 1s}" "$T/config.json"
chain_breaks hung "$T/spec-hung.yaml"
checkd "hung cache: the first request paid the response timeout (ms >= 900)" test "$(field 1 ms)" -ge 900
checkd "hung cache: the cache failed for want of a response" \
  grep -qE "circuit open: .*endpoint=$CACHE .*reason=\"no response" "$LAST.err"
kill "$HUNG_PID"
wait_exit "$HUNG_PID" 10
checkd "the hung listener is stopped and the port refuses" refuses "$PP"

# ---- 4. credentials that do not work, or are missing --------------------------------------
docker_config "$T/wrong.json" "$WRONG"
spec "$T/spec-wrong.yaml" "" "$T/wrong.json"
mo=$(mark "$T/origin.log")
fetch wrong --spec "$T/spec-wrong.yaml" --log-level debug "$R:v1"
checkd "wrong password: status=401 from the origin, exit 1" \
  test "$(field 1 status).$(field 1 endpoint).$rc" = "401.$ORIGIN.1"
checkd "wrong password: the origin saw the challenge, then the rejected credentials (401 401)" \
  test "$(statuses "$T/origin.log" "$mo")" = "401 401"
secret_absent() {
  local s
  for s in "$WRONG" "$PASS" "$(basic_b64 "$USER_" "$WRONG")"; do
    grep -qF -- "$s" "$LAST.out" "$LAST.err" && return 1
  done
  return 0
}
checkd "wrong password: no password (nor its base64) in stdout or stderr, at debug level" secret_absent

cat >"$T/spec-anon.yaml" <<YAML
registries:
  "127.0.0.1:$PO":
    origin: $ORIGIN
YAML
fetch anon --spec "$T/spec-anon.yaml" "$R:v1"
checkd "no credentials for an origin that wants them: status=401, exit 1" \
  test "$(field 1 status).$rc" = 401.1

spec "$T/spec-missing.yaml" "" "$T/no-such-config.json"
fetch missing --spec "$T/spec-missing.yaml" "$R:v1"
checkd "a missing credentials_file: exit 2" test "$rc" = 2
checkd "... with an error naming the file" grep -qF "$T/no-such-config.json" "$LAST.err"
checkd "... and no request line" test ! -s "$LAST.out"

# ---- 5. a registry the spec does not name: refused, and no request leaves ------------------
# localhost:$PO is the origin's port under a name the spec does not have.
mo=$(mark "$T/origin.log")
fetch unknown --spec "$T/spec.yaml" "localhost:$PO/test/app:v1"
checkd "a registry not in the spec: exit 2" test "$rc" = 2
checkd "... saying that the spec does not mirror it" \
  grep -qF "registry localhost:$PO is not mirrored by the spec" "$LAST.out"
checkd "... and the origin saw no request" test -z "$(requests "$T/origin.log" "$mo")"

finish
