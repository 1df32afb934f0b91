#!/usr/bin/env bash
# The client's credentials, passed through (issue 17), are wiped after use:
# after pulls by blob with a distinctive password through layerd (Basic to
# one origin, the token flow to another) and the connections left idle
# (layerd's upstream ones stay in libcurl's cache, a client's in
# libmicrohttpd's), layerd's writable memory
# (/proc/PID/maps rw regions, read through /proc/PID/mem) holds neither the
# password nor the base64 "user:password" of the Basic header. Copies that
# were layerd's own (agent/clientauth.c), libmicrohttpd's (the request's
# header in its connection buffer) and libcurl's (its request buffers, its
# handle and cached connection) would all be found. A verdict keeps a salted
# hash only, which matches neither. A control needle from the spec (the
# registry's name) must be found: the scan reads what it should.
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

require_root "reading another process's memory needs root"
require_tools curl

USER_OK=wipe-user PASS_OK="wipe-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
B64=$(basic_b64 "$USER_OK" "$PASS_OK")
PA=$(free_port) PD=$(free_port) PD2=$(free_port)
REG=127.0.0.1:$PD REG2=127.0.0.1:$PD2
DIAG_FILES=("$T/layerd.log" "$T/fx.log" "$T/fxb.log")

# origin BASE MODE: team/ private (MODE basic or bearer), two blobs under team/app.
origin() {
  fixture_json PUT "$1/_fixture/auth" \
    "{\"mode\": \"$2\", \"user\": \"$USER_OK\", \"password\": \"$PASS_OK\", \"private\": [\"team/\"]}" &&
    fixture_call PUT "$1/_fixture/blob/$B1?repos=team/app" "$T/b1" &&
    fixture_call PUT "$1/_fixture/blob/$B2?repos=team/app" "$T/b2"
}
B1=$(random_file "$T/b1" 300000) B2=$(random_file "$T/b2" 70000)
fixture_start fx || { not_ok "fixture starts"; finish; exit 1; }
PF=$FIXTURE_PORT
check "the Basic origin serves team/app privately" origin "http://127.0.0.1:$PF" basic
fixture_start fxb || { not_ok "second fixture starts"; finish; exit 1; }
PB=$FIXTURE_PORT
check "the token-flow origin serves it too" origin "http://127.0.0.1:$PB" bearer

write_spec "$T/spec.yaml" "$PA" "$T/cache" <<YAML
registries:
  "$REG":
    origin: http://127.0.0.1:$PF
  "$REG2":
    origin: http://127.0.0.1:$PB
YAML
layerd_serve "$T/layerd.log" "$T/spec.yaml"
check "layerd starts" wait_port "$PA"

# pulled REG DIGEST FILE: the blob through layerd with the credentials, byte for
# byte; asked again after a 401 challenge, as a client does (a repository not
# yet known private is first asked of the origin without them).
pulled() {
  get "http://127.0.0.1:$PA/v2/team/app/blobs/$2?ns=$1" "$T/got" -u "$USER_OK:$PASS_OK"
  [[ $code == 401 ]] && get "http://127.0.0.1:$PA/v2/team/app/blobs/$2?ns=$1" "$T/got" -u "$USER_OK:$PASS_OK"
  [[ $code == 200 ]] && cmp -s "$T/got" "$3"
}
check "Basic origin: a private blob pulled with the client's credentials" pulled "$REG" "$B1" "$T/b1"
check "... and another (the cached verdict or a new check)" pulled "$REG" "$B2" "$T/b2"
check "token flow: a private blob pulled with the client's credentials" pulled "$REG2" "$B1" "$T/b1"
check "... and another" pulled "$REG2" "$B2" "$T/b2"
check "the pulls were passed through" grep -q "auth=passthrough" "$T/layerd.log"

# A client that keeps its connection open, idle, after two requests on it:
# libmicrohttpd keeps that connection's buffer (the last request's headers).
/usr/bin/python3 - "$PA" "$REG" "$B2" "$B64" "$T/held" <<'PY' &
import http.client, sys, time
port, reg, digest, b64, ready = sys.argv[1:]
c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
codes = []
for _ in range(2):
    c.request("GET", f"/v2/team/app/blobs/{digest}?ns={reg}", headers={"Authorization": "Basic " + b64})
    r = c.getresponse()
    r.read()
    codes.append(str(r.status))
open(ready, "w").write(" ".join(codes))
time.sleep(20)
PY
HELD=$!
PIDS+=("$HELD")
check "a client holds a kept-alive connection after two pulls with the credentials" \
  eval 'wait_for 10 test -s "$T/held" && [[ $(cat "$T/held") == "200 200" ]]'

# scan PID NEEDLE...: for each NEEDLE, how many times it is in PID's writable memory.
scan() {
  /usr/bin/python3 - "$@" <<'PY'
import re, sys
pid, needles = sys.argv[1], [n.encode() for n in sys.argv[2:]]
hits = [0] * len(needles)
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        f = line.split()
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        if f[1][:2] != "rw" or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
            continue
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except OSError:
            continue
        for i, n in enumerate(needles):
            hits[i] += data.count(n)
print(" ".join(map(str, hits)))
PY
}
sleep 1 # the clients gone, layerd's requests completed, its upstream connections idle
read -r control pass b64 < <(scan "$LAYERD_PID" "127.0.0.1:$PD" "$PASS_OK" "$B64")
check "the scan reads layerd's memory (the registry's name found ${control:-?} times)" test "${control:-0}" -gt 0
check "the password is nowhere in layerd's writable memory (${pass:-?} copies)" test "${pass:-1}" = 0
check "nor the Basic header's base64 user:password (${b64:-?} copies)" test "${b64:-1}" = 0

stop "$HELD"
stop "$LAYERD_PID"
finish
