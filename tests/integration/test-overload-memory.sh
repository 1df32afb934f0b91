#!/usr/bin/env bash
# Issue 16, the memory budget: clients that ask for the largest allowed
# manifest and never read must not make layerd hold a copy each. A cached
# manifest is sent from the cache's file (sendfile), so 200 such clients, by
# digest and by tag, keep layerd's peak resident set (VmHWM) under 48 MiB.
# Before, each held a 4 MiB heap copy until read: 200 of them took it to
# 400-850 MiB. Also: layerd raises its open-file soft limit to the hard one at
# start (every connection, download and blob being sent takes a descriptor).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl "$PY"

CLIENTS=200
LIMIT_KIB=$((48 * 1024))

fixture_start fixture || { not_ok "upstream.py starts"; finish; exit 0; }
PF=$FIXTURE_PORT FX=http://127.0.0.1:$FIXTURE_PORT
# A manifest just under FALLBACK_MANIFEST_MAX (4 MiB), padded in an annotation.
"$PY" - "$T/big.json" <<'PY'
import json, sys
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 1},
     "layers": [], "annotations": {"pad": "x" * (4 * 1024 * 1024 - 1000)}}
open(sys.argv[1], "w").write(json.dumps(m))
PY
D=$(fixture_manifest "$FX" big/app v1 "$T/big.json")
PB=$(free_port)
cat >"$T/spec.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PB
  cache_dir: $T/cache
registries:
  "127.0.0.1:$PF":
    origin: $FX
YAML
# Started with a low soft limit, as a shell's 1024 or a unit's default.
HARD=$(ulimit -Hn)
SOFT=256
[[ $HARD == unlimited || $HARD -gt $SOFT ]] || SOFT=$HARD
ulimit -Sn "$SOFT"
layerd_serve "$T/layerd.log" "$T/spec.yaml"
ulimit -Sn "$HARD"
wait_port "$PB" 10 || { not_ok "layerd listens"; finish; exit 0; }
limit=$(sed -n 's/^Max open files *\([0-9a-z]*\) .*/\1/p' "/proc/$LAYERD_PID/limits")
want=$HARD; [[ $want == unlimited ]] && want=unlimited
check "the open-file soft limit went from $SOFT to the hard limit $HARD (now $limit)" test "$limit" = "$want"
check "the listening line says it (open_files=)" grep -qE "listening address=.* open_files=[0-9]+ " "$T/layerd.log"
NS="ns=127.0.0.1:$PF"
ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
code=$(curl -s -o "$T/got" -w '%{http_code}' --max-time 10 -H "$ACCEPT" "http://127.0.0.1:$PB/v2/big/app/manifests/v1?$NS")
check "the 4 MiB manifest through layerd: 200, whole (code=$code)" cmp -s "$T/got" "$T/big.json"

# hold REF ACCEPT: CLIENTS connections ask for REF with a tiny receive buffer and read
# nothing for 2 s; prints how many got an answer's first bytes (they all must:
# the head is sent before the body stalls).
hold() {
  "$PY" - "$PB" "$PF" "$CLIENTS" "$1" "$2" <<'PY'
import socket, sys, time
pb, pf, n, ref, accept = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
socks = []
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", pb))
    s.sendall(("GET /v2/big/app/manifests/%s?ns=127.0.0.1:%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Accept: %s\r\n\r\n" % (ref, pf, pb, accept)).encode())
    socks.append(s)
answered = 0
for s in socks:
    try:
        if s.recv(16).startswith(b"HTTP/1.1 200"):
            answered += 1
    except OSError:
        pass
time.sleep(2)
print(answered)
PY
}
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$LAYERD_PID/status"; }

got=$(hold "$D" application/vnd.oci.image.manifest.v1+json)
peak=$(hwm)
echo "# $CLIENTS non-reading clients by digest: $got answered, VmHWM ${peak} KiB"
check "$CLIENTS clients by digest all get the answer's head (got $got)" test "$got" -eq "$CLIENTS"
check "by digest: peak RSS ${peak} KiB < ${LIMIT_KIB} KiB" test "$peak" -lt "$LIMIT_KIB"

# An Accept that takes every manifest type: the tag's record answers (no upstream request each).
ALL='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json'
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Accept: $ALL" "http://127.0.0.1:$PB/v2/big/app/manifests/v1?$NS")
check "by tag with every manifest type accepted: 200 (code=$code), recorded" test "$code" = 200
got=$(hold v1 "$ALL")
peak=$(hwm)
echo "# $CLIENTS non-reading clients by tag: $got answered, VmHWM ${peak} KiB"
check "$CLIENTS clients by tag all get the answer's head (got $got)" test "$got" -eq "$CLIENTS"
check "by tag: peak RSS ${peak} KiB < ${LIMIT_KIB} KiB" test "$peak" -lt "$LIMIT_KIB"
code=$(http GET "http://127.0.0.1:$PB/v2/")
check "layerd still answers /v2/ (code=$code)" test "$code" = 200
finish
