#!/usr/bin/env bash
# Issue 16, "where layerd goes", through `layerd serve` on loopback only:
#  - the pull API refuses (400) a request whose Host is neither a loopback name
#    or address nor the address the connection arrived on: a page in a browser
#    on the node that rebinds its own name to 127.0.0.1 sends its own name;
#    what containerd, skopeo and podman send (127.0.0.1:PORT, localhost:PORT),
#    and HTTP/1.0 without Host, are answered;
#  - redirects and token realms between loopback addresses (the endpoint is on
#    loopback itself: the same class) still work, by address and by a name that
#    resolves there. A public endpoint redirected to loopback cannot be had on
#    loopback: that decision is unit tested (tests/unit/fallback/test-addr.c).
. "$(dirname "$0")/lib.sh"

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
for b in curl /usr/bin/python3; do
  if ! command -v "$b" >/dev/null; then
    echo "1..0 # SKIP $b is not installed (make deps)"
    exit 0
  fi
done

LOG=$T/layerd.log
diag() {
  local f
  for f in "$LOG" "$T/u1.log" "$T/u2.log" "$T/body"; do
    [[ -s $f ]] || continue
    echo "# --- last lines of $f"
    tail -n 8 "$f" | cut -c1-300 | sed 's/^/#   /'
  done >&2
}
checkd() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; diag; fi; }

checkd "fixture U1 (the endpoint) starts" fixture_start u1
P1=$FIXTURE_PORT
U1=http://127.0.0.1:$P1
checkd "fixture U2 (where U1 redirects) starts" fixture_start u2
P2=$FIXTURE_PORT
U2=http://127.0.0.1:$P2

PL=$(free_port)
L=http://127.0.0.1:$PL
cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PL
  cache_dir: $T/cache
registries:
  "r1.test:$P1":
    origin: $U1
  "r2.test:$P1":
    origin: $U1
YAML
valid_spec() { "$LAYERD" check-config "$1" >/dev/null; }
checkd "the spec is valid" valid_spec "$T/spec.yaml"
layerd_serve "$LOG" "$T/spec.yaml"
checkd "layerd listens" wait_port "$PL" 10

# code HOST_HEADER_ARGS... : the status of GET /v2/ with those curl options.
code() { curl -s --max-time 5 -o "$T/body" -w '%{http_code}' "$@" "$L/v2/"; }

# ---- 1. Host ---------------------------------------------------------------------------
c=$(code -H "Host: evil.example")
checkd "Host: evil.example -> 400 (got $c)" test "$c" = 400
checkd "... with a distribution error body naming Host" grep -q '"code":"DENIED".*Host' "$T/body"
c=$(code -H "Host: evil.example:$PL")
checkd "Host: evil.example:$PL -> 400 (got $c)" test "$c" = 400
c=$(code -H "Host: 10.1.2.3:$PL")
checkd "Host: 10.1.2.3:$PL (not the address it arrived on) -> 400 (got $c)" test "$c" = 400
c=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "Host: evil.example" "$L/v2/r1.test/app/manifests/v1?ns=r1.test:$P1")
checkd "Host: evil.example on a manifest route -> 400 (got $c)" test "$c" = 400
c=$(code -H "Host: 127.0.0.1:$PL")
checkd "Host: 127.0.0.1:$PL -> 200 (got $c)" test "$c" = 200
c=$(code -H "Host: localhost:$PL")
checkd "Host: localhost:$PL -> 200 (got $c)" test "$c" = 200
c=$(code -H "Host: [::1]:$PL")
checkd "Host: [::1]:$PL -> 200 (got $c)" test "$c" = 200
c=$(code -H "Host: 127.0.0.2")
checkd "Host: 127.0.0.2 (loopback, no port) -> 200 (got $c)" test "$c" = 200
c=$(code --http1.0 -H "Host:")
checkd "HTTP/1.0 without Host -> 200 (got $c)" test "$c" = 200
checkd "the refusal is logged with its reason" \
  wait_for 5 grep -q 'status=400 .*reason="Host is neither' "$LOG"

# ---- 2. redirects and realms on loopback (same class) still work -----------------------
# new_blob NAME: a fresh 4 KiB blob in $T/NAME (each case its own: the cache is content-addressed); prints its digest.
new_blob() { head -c 4096 /dev/urandom >"$T/$1" && echo "sha256:$(sha256sum "$T/$1" | cut -d' ' -f1)"; }
d1=$(new_blob b1)
d2=$(new_blob b2)
d3=$(new_blob b3)
checkd "U2 holds blobs 1 and 2" eval 'fixture_call PUT "$U2/_fixture/blob/$d1" "$T/b1" && fixture_call PUT "$U2/_fixture/blob/$d2" "$T/b2"'
# By address, then by a name (localhost) that libcurl resolves: both are loopback.
checkd "U1 redirects r1's blobs to U2 by address, r2's by name" fixture_json PUT "$U1/_fixture/rules" \
  "[{\"path\": \"^/v2/r1/\", \"redirect\": \"$U2\"}, {\"path\": \"^/v2/r2/\", \"redirect\": \"http://localhost:$P2\"}]"
# pull NS REPO DIGEST FILE: GET the blob through layerd; 200 and the file's bytes.
pull() {
  local c
  c=$(curl -s --max-time 10 -o "$T/got" -w '%{http_code}' "$L/v2/$2/blobs/$3?ns=$1")
  [[ $c == 200 ]] && cmp -s "$4" "$T/got"
}
checkd "r1: blob through a redirect to $U2: 200, its bytes" pull "r1.test:$P1" r1/app "$d1" "$T/b1"
checkd "r2: blob through a redirect to http://localhost:$P2: 200, its bytes" pull "r2.test:$P1" r2/app "$d2" "$T/b2"
checkd "U2 served both redirected GETs" \
  test "$(fixture_requests "$U2" "/blobs/" | grep -c '"GET"')" = 2

# A token realm on another origin (localhost instead of 127.0.0.1) of the same server.
checkd "U1 wants a bearer token from realm http://localhost:$P1/token" fixture_json PUT "$U1/_fixture/auth" \
  "{\"mode\": \"bearer\", \"realm\": \"http://localhost:$P1/token\"}"
checkd "U1 drops its redirect rules and holds blob 3" \
  eval 'fixture_json PUT "$U1/_fixture/rules" "[]" && fixture_call PUT "$U1/_fixture/blob/$d3" "$T/b3"'
checkd "blob through the token realm on localhost: 200, its bytes" pull "r1.test:$P1" r1/app "$d3" "$T/b3"
checkd "the realm issued a token" test "$(fixture_requests "$U1" '^/token' | wc -l)" -ge 1

stop "$LAYERD_PID"
checkd "no refused redirect or realm was logged" absent -E '(redirect to|token realm) [^ ]+ refused' "$LOG"
finish
