#!/usr/bin/env bash
# `layerd fetch` to HTTPS endpoints: the spec's tls settings (ca_file,
# client_cert/client_key, insecure_skip_verify), certificate failures that fail
# over, redirects (refused from https to http, followed from https to https),
# HTTP/2, and credentials for token realms on other hosts (never in clear text).
#
# The peers are private to this test, on free loopback ports, with a throwaway
# PKI made by openssl in $T: CA "ca" signs the servers' certificate (for IP
# 127.0.0.1), CA "client-ca" the client certificate layerd presents.
#  - S, S2: upstream.py over HTTPS; S redirects some paths to S2 or to H;
#  - M: upstream.py over HTTPS that requires a client certificate of client-ca;
#  - H: upstream.py over plain HTTP (a second endpoint, a redirect target, a realm);
#  - R: docker-registry over HTTPS, which speaks HTTP/2 (upstream.py cannot).
# Every case is a registry "reg.test" with its own spec, chain and repository,
# fetched by a `layerd fetch` of its own (no breaker state carries over).
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

require_tools openssl curl sha256sum /usr/bin/python3

# ---- a throwaway PKI ----------------------------------------------------------------
# ca NAME: a self-signed CA, $T/NAME.pem and its key $T/NAME.key.
ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=layerd test $1" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$T/$1.key" -out "$T/$1.pem" 2>>"$T/openssl.log"
}
# cert CA NAME EXTENSION...: a key $T/NAME.key and a certificate $T/NAME.pem signed by CA.
cert() {
  local ca=$1 name=$2; shift 2
  printf '%s\n' "$@" >"$T/$name.ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=layerd test $name" \
    -keyout "$T/$name.key" -out "$T/$name.csr" 2>>"$T/openssl.log" &&
    openssl x509 -req -days 2 -in "$T/$name.csr" -CA "$T/$ca.pem" -CAkey "$T/$ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -extfile "$T/$name.ext" -out "$T/$name.pem" 2>>"$T/openssl.log"
}
pki() {
  ca ca && ca client-ca &&
    cert ca server subjectAltName=IP:127.0.0.1 extendedKeyUsage=serverAuth &&
    cert client-ca client extendedKeyUsage=clientAuth &&
    cert ca rogue extendedKeyUsage=clientAuth &&  # right form, wrong CA for M
    cat "$T/client.pem" "$T/client.key" >"$T/client-and-key.pem"
}
check "openssl makes two CAs, a server and two client certificates" pki
# verifies CA CERT [VERIFY_OPTIONS...]: openssl verifies CERT against CA.
verifies() { openssl verify -CAfile "$T/$1.pem" "${@:3}" "$T/$2.pem" >>"$T/openssl.log" 2>&1; }
check "the server certificate verifies against ca, for IP 127.0.0.1" verifies ca server -verify_ip 127.0.0.1
check "the client certificate verifies against client-ca, not against ca" \
  eval 'verifies client-ca client && ! verifies ca client'

# ---- the fixtures ---------------------------------------------------------------------
# The control API of M, too, wants the client certificate (S, S2 ask for none).
FIXTURE_CURL=(--cacert "$T/ca.pem" --cert "$T/client.pem" --key "$T/client.key")
TLS=(--tls-cert "$T/server.pem" --tls-key "$T/server.key")
check "fixture S starts (HTTPS)" fixture_start s "${TLS[@]}"
S=https://127.0.0.1:$FIXTURE_PORT
check "fixture S2 starts (HTTPS)" fixture_start s2 "${TLS[@]}"
S2=https://127.0.0.1:$FIXTURE_PORT
check "fixture M starts (HTTPS, client certificate of client-ca required)" \
  fixture_start m "${TLS[@]}" --client-ca "$T/client-ca.pem"
M=https://127.0.0.1:$FIXTURE_PORT
check "fixture H starts (plain HTTP)" fixture_start h
H=http://127.0.0.1:$FIXTURE_PORT
DIAG_FILES=("$T/s.log" "$T/s2.log" "$T/m.log" "$T/h.log")

printf '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:%s", "size": 2}, "layers": [], "annotations": {"salt": "%s"}}' \
  "$(printf 'b%.0s' {1..64})" "$RANDOM$RANDOM" >"$T/manifest.json"
MD=sha256:$(sha256sum "$T/manifest.json" | cut -d' ' -f1)
# serve BASE REPOSITORY...: the fixture at BASE serves the manifest as REPOSITORY:v1.
serve() {
  local base=$1 r; shift
  for r in "$@"; do
    [[ $(fixture_manifest "$base" "$r" v1 "$T/manifest.json") == "$MD" ]] || return 1
  done
}
check "S serves the manifest" serve "$S" ca noca only skip redir-http realm-same realm-http realm-https
check "S2 serves the manifest" serve "$S2" redir-https
check "M serves the manifest" serve "$M" mtls mtls-combined mtls-none mtls-none-only mtls-rogue
check "H serves the manifest" serve "$H" noca mtls-none redir-http
check "S redirects redir-http to H and redir-https to S2 (307)" fixture_json PUT "$S/_fixture/rules" \
  "[{\"path\": \"^/v2/redir-http/\", \"redirect\": \"$H\"}, {\"path\": \"^/v2/redir-https/\", \"redirect\": \"$S2\"}]"

# ---- helpers --------------------------------------------------------------------------
# spec FILE ENDPOINT...: registry reg.test with exactly these endpoints (YAML flow
# mappings), in order; its origin the first.
spec() {
  local f=$1 e o=${2#*url: }; shift
  o=${o%%[,\}]*}
  {
    printf 'version: 1\nagent:\n  cache_dir: %s\nregistries:\n  reg.test:\n' "$T/cache"
    printf '    origin: %s\n    fallback_to_origin: false\n    endpoints:\n' "$o"
    for e in "$@"; do printf '      - %s\n' "$e"; done
  } >"$f"
}
# count BASE PATH_REGEX [STATUS]: how many requests the fixture at BASE logged for
# matching paths (with STATUS when given).
count() {
  fixture_requests "$1" "$2" | if [[ -n ${3:-} ]]; then grep -c "\"status\": $3}"; else wc -l; fi
}
# failover_reason ENDPOINT REGEX: the last fetch logged a failover from ENDPOINT
# whose reason matches REGEX.
failover_reason() {
  grep -E "upstream failed, trying the next endpoint: .* endpoint=$1 reason=\"[^\"]*($2)" "$LAST.err" >/dev/null
}
# unavailable REGEX: the last fetch answered 503, exit 1, with an error matching REGEX.
unavailable() {
  [[ $(field 1 status).$rc == 503.1 ]] && sed -n 1p "$LAST.out" | grep -qiE "error=\"[^\"]*($1)"
}
# not_logged FIXED_STRING: the last fetch did not log FIXED_STRING (its stderr
# was written; the TLS warning's text is asserted present in section 3).
not_logged() { absent -F -- "$1" "$LAST.err"; }
# none_at BASE PATH_REGEX: the fixture at BASE logged requests (its log reads
# as count expects), none of them for matching paths.
none_at() { (($(count "$1" '^/') > 0)) && test "$(count "$1" "$2")" = 0; }
# handshake_refused FIXTURE REGEX: the fixture logged a failed TLS handshake matching REGEX.
handshake_refused() { grep -qiE "^tls handshake failed: .*($2)" "$T/$1.log"; }
REF=reg.test
CERT_RE=certificate
CA=$T/ca.pem

# ---- 1. the endpoint's CA in tls.ca_file -------------------------------------------------
spec "$T/ca.yaml" "{url: $S, tls: {ca_file: $CA}}"
fetch ca --spec "$T/ca.yaml" "$REF/ca:v1"
checkd "ca_file: 200, verified, from $S" answered 1 "$S" "$MD"
checkd "ca_file: S answered the GET (200)" test "$(count "$S" '^/v2/ca/manifests/v1$' 200)" = 1
checkd "ca_file: no TLS warning" not_logged "TLS verification is OFF"

# ---- 2. no ca_file: the system trust store does not know the CA --------------------------
spec "$T/noca.yaml" "{url: $S}" "{url: $H}"
fetch noca --spec "$T/noca.yaml" "$REF/noca:v1"
checkd "no ca_file, then H: 200, verified, from H" answered 1 "$H" "$MD"
checkd "no ca_file: the failover from S names a certificate problem" failover_reason "$S" "$CERT_RE"
checkd "no ca_file: S saw a refused handshake (unknown CA) and no request" \
  eval 'handshake_refused s "unknown ca" && none_at "$S" "^/v2/noca/"'

spec "$T/only.yaml" "{url: $S}"
fetch only --spec "$T/only.yaml" "$REF/only:v1"
checkd "no ca_file, the only endpoint: 503, exit 1, a certificate error" unavailable "$CERT_RE"
checkd "no ca_file, the only endpoint: S saw no request" none_at "$S" '^/v2/only/'

# ---- 3. insecure_skip_verify ---------------------------------------------------------------
spec "$T/skip.yaml" "{url: $S, tls: {insecure_skip_verify: true}}"
fetch skip --spec "$T/skip.yaml" "$REF/skip:v1"
checkd "insecure_skip_verify without ca_file: 200, verified, from S" answered 1 "$S" "$MD"
checkd "insecure_skip_verify: a warning \"TLS verification is OFF\" naming ns and endpoint" \
  grep -qE "^<4>TLS verification is OFF: ns=reg.test endpoint=$S( |$)" "$LAST.err"

# ---- 4. a client certificate (M requires one of client-ca) ---------------------------------
spec "$T/mtls.yaml" "{url: $M, tls: {ca_file: $CA, client_cert: $T/client.pem, client_key: $T/client.key}}"
fetch mtls --spec "$T/mtls.yaml" "$REF/mtls:v1"
checkd "client_cert + client_key: 200, verified, from M" answered 1 "$M" "$MD"
checkd "client_cert + client_key: M answered the GET (200)" test "$(count "$M" '^/v2/mtls/' 200)" = 1

spec "$T/mtls-combined.yaml" "{url: $M, tls: {ca_file: $CA, client_cert: $T/client-and-key.pem}}"
fetch mtls-combined --spec "$T/mtls-combined.yaml" "$REF/mtls-combined:v1"
checkd "client_cert alone, the key in the same file: 200 from M" answered 1 "$M" "$MD"

spec "$T/mtls-none.yaml" "{url: $M, tls: {ca_file: $CA}}" "{url: $H}"
fetch mtls-none --spec "$T/mtls-none.yaml" "$REF/mtls-none:v1"
checkd "no client certificate, then H: 200 from H" answered 1 "$H" "$MD"
checkd "no client certificate: a failover from M is logged" failover_reason "$M" "."
checkd "no client certificate: M refused the handshake and saw no request" \
  eval 'handshake_refused m "did not return a certificate|certificate required" && none_at "$M" "^/v2/mtls-none/"'

spec "$T/mtls-none-only.yaml" "{url: $M, tls: {ca_file: $CA}}"
fetch mtls-none-only --spec "$T/mtls-none-only.yaml" "$REF/mtls-none-only:v1"
checkd "no client certificate, the only endpoint: 503, exit 1" unavailable "."

spec "$T/mtls-rogue.yaml" "{url: $M, tls: {ca_file: $CA, client_cert: $T/rogue.pem, client_key: $T/rogue.key}}"
fetch mtls-rogue --spec "$T/mtls-rogue.yaml" "$REF/mtls-rogue:v1"
checkd "a client certificate of another CA: 503, exit 1, M saw no request" \
  eval 'unavailable . && none_at "$M" "^/v2/mtls-rogue/"'

# ---- 5. redirects -----------------------------------------------------------------------------
spec "$T/redir-http.yaml" "{url: $S, tls: {ca_file: $CA}}" "{url: $H}"
fetch redir-http --spec "$T/redir-http.yaml" "$REF/redir-http:v1"
checkd "redirect https -> http: refused, the failover to H answers" answered 1 "$H" "$MD"
checkd "redirect https -> http: the failover reason says \"https to http\"" failover_reason "$S" "https to http"
checkd "redirect https -> http: S sent the 307; H saw only the failover's request" \
  test "$(count "$S" '^/v2/redir-http/' 307).$(count "$H" '^/v2/redir-http/')" = 1.1

# S2 has the same certificate, of the endpoint's ca_file, on another port: a
# registry that sends blobs to its own storage. containerd follows a redirect
# with the host's TLS settings (one http.Client per host), so the pull works there.
spec "$T/redir-https.yaml" "{url: $S, tls: {ca_file: $CA}}"
fetch redir-https --spec "$T/redir-https.yaml" "$REF/redir-https:v1"
checkd "redirect https -> https on another port (same CA): 200, verified, for S" answered 1 "$S" "$MD"
checkd "redirect https -> https: S2 answered the GET (200)" test "$(count "$S2" '^/v2/redir-https/' 200)" = 1

# ---- 6. HTTP/2 --------------------------------------------------------------------------------
# upstream.py offers only http/1.1 in ALPN (the cases above); docker-registry
# (Go's net/http) offers h2 over TLS, and logs the protocol of each request.
if command -v docker-registry >/dev/null; then
  PR=$(free_port)
  R=https://127.0.0.1:$PR
  REGISTRY_HTTP_TLS_CERTIFICATE=$T/server.pem REGISTRY_HTTP_TLS_KEY=$T/server.key registry r "$PR"
  check "docker-registry listens over HTTPS" wait_port "$PR" 10
  head -c 100000 /dev/urandom >"$T/blob"
  BD=sha256:$(sha256sum "$T/blob" | cut -d' ' -f1)
  # push_blob: a monolithic upload of $T/blob to R's repository "h2".
  push_blob() {
    local loc
    loc=$(curl -s --max-time 5 --cacert "$CA" -X POST -o /dev/null -D - "$R/v2/h2/blobs/uploads/" |
      tr -d '\r' | sed -n 's/^location: *//Ip')
    [[ -n $loc ]] && test "$(curl -s --max-time 5 --cacert "$CA" -X PUT --data-binary "@$T/blob" \
      -H 'Content-Type: application/octet-stream' -o /dev/null -w '%{http_code}' "$loc&digest=$BD")" = 201
  }
  check "a blob is pushed to docker-registry" push_blob
  spec "$T/h2.yaml" "{url: $R, tls: {ca_file: $CA}}"
  m=$(mark "$T/r.log")
  fetch h2 --spec "$T/h2.yaml" --blob "$BD" "$REF/h2:v1"
  DIAG_FILES+=("$T/r.log")
  checkd "HTTP/2 endpoint: the blob, 200, verified, from R" answered 1 "$R" "$BD"
  checkd "HTTP/2 endpoint: R logged layerd's GET as HTTP/2.0" \
    eval 'since "$T/r.log" "$m" | grep -F "\"GET /v2/h2/blobs/$BD HTTP/2.0\" 200 " | grep -qF "\"layerd/"'
  unset 'DIAG_FILES[-1]'
else
  skip "HTTP/2 endpoint" "docker-registry is not installed; upstream.py cannot speak h2"
fi

# ---- 7. token realms on other hosts ------------------------------------------------------------
USER_=tester PASS=Tls-s3cret-$RANDOM$RANDOM
B64=$(basic_b64 "$USER_" "$PASS")
printf '{"auths": {"127.0.0.1:%s": {"auth": "%s"}}}\n' "${S##*:}" "$B64" >"$T/config.json"
spec "$T/realm.yaml" "{url: $S, tls: {ca_file: $CA}, credentials_file: $T/config.json}"

# The control: S's own realm (https, the same host) gets the credentials.
check "S wants a bearer token of its own realm, issued for Basic credentials" fixture_json PUT "$S/_fixture/auth" \
  "{\"mode\": \"bearer\", \"user\": \"$USER_\", \"password\": \"$PASS\"}"
fetch realm-same --spec "$T/realm.yaml" "$REF/realm-same:v1"
checkd "realm on S itself: 200 from S" answered 1 "$S" "$MD"
checkd "realm on S itself: its /token saw the Basic credentials" \
  eval 'fixture_requests "$S" "^/token" | grep -qF "\"authorization\": \"Basic $B64\""'

# H's /token wants the same credentials; layerd must not send them in clear text.
check "S names H's /token (plain HTTP, another host:port) as its realm" fixture_json PUT "$S/_fixture/auth" \
  "{\"mode\": \"bearer\", \"user\": \"$USER_\", \"password\": \"$PASS\", \"realm\": \"$H/token\"}"
check "H's /token wants Basic credentials" fixture_json PUT "$H/_fixture/auth" \
  "{\"mode\": \"none\", \"user\": \"$USER_\", \"password\": \"$PASS\"}"
fetch realm-http --spec "$T/realm.yaml" "$REF/realm-http:v1"
checkd "realm over plain HTTP: layerd asked H's /token" test "$(count "$H" '^/token')" -ge 1
checkd "realm over plain HTTP: no Authorization header reached H" \
  eval '! fixture_requests "$H" | grep -qiF -e "\"authorization\"" -e "$B64" -e "$PASS"'
checkd "realm over plain HTTP: no token, so 401, exit 1" test "$(field 1 status).$rc" = 401.1

# Over HTTPS another host may have them. S2's certificate is of the endpoint's
# ca_file; containerd asks a host's realm with the host's TLS settings. S2's
# tokens do not open S: only what S2 received counts.
check "S names S2's /token (HTTPS, another host:port, the same CA) as its realm" fixture_json PUT "$S/_fixture/auth" \
  "{\"mode\": \"bearer\", \"user\": \"$USER_\", \"password\": \"$PASS\", \"realm\": \"$S2/token\"}"
check "S2's /token wants Basic credentials" fixture_json PUT "$S2/_fixture/auth" \
  "{\"mode\": \"none\", \"user\": \"$USER_\", \"password\": \"$PASS\"}"
fetch realm-https --spec "$T/realm.yaml" "$REF/realm-https:v1"
checkd "realm over HTTPS on another port (same CA): its /token got the Basic credentials" \
  eval 'fixture_requests "$S2" "^/token" | grep -qF "\"authorization\": \"Basic $B64\""'

# ---- nothing secret in layerd's output ---------------------------------------------------------
# Exit 1 of grep: every file read, none holds a secret (a missing one is exit 2).
secrets_absent() { absent -F -e "$PASS" -e "$B64" -e "$(cat "$T/client.key")" "$T"/*.out "$T"/*.err; }
check "no password, credentials or client key in any fetch's output" secrets_absent

finish
