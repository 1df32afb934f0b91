#!/usr/bin/env bash
# The metrics listener (issue 19, item 6): agent.metrics_listen and `serve
# --metrics-listen` serve /metrics, /healthz and /readyz and nothing else (the
# pull API's routes are 404 there and reach no upstream, other methods 405),
# without the pull API's Host rule, while the pull port answers as before; its
# /metrics is valid text exposition with latency histograms and per-registry
# hits and misses after some pulls; the Grafana dashboard's expressions name
# only metrics it exports; a flood of 200 connections on it fails no
# concurrent pull and takes nothing from the pull API's admission.
#
# Peers, on free loopback ports: upstream.py (the origin of registry
# "m.test:PORT") and one layerd whose pull API and metrics listener are on two
# ports; a second layerd for the command-line flag.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
CHECK=tests/integration/check-prometheus.py
DASHBOARD=packaging/grafana/layerd.json
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl sha256sum cmp "$PY"

LOG=$T/layerd.log
DIAG_FILES=("$LOG" "$T/fixture.log")

checkd "the fixture upstream starts" fixture_start fixture
PF=$FIXTURE_PORT
FX=http://127.0.0.1:$PF
REG=m.test:$PF
PL=$(free_port)
PM=$(free_port)
P=http://127.0.0.1:$PL
M=http://127.0.0.1:$PM
write_spec "$T/spec.yaml" "$PL" "$T/cache" <<YAML
  metrics_listen: 127.0.0.1:$PM
registries:
  "$REG":
    origin: $FX
YAML
checkd "the spec with agent.metrics_listen is valid" valid_spec "$T/spec.yaml"
layerd_serve "$LOG" "$T/spec.yaml"
L=$LAYERD_PID
checkd "layerd listens on the pull port" wait_port "$PL" 10
checkd "layerd listens on the metrics port" wait_port "$PM" 10
checkd "layerd logs the metrics listener" wait_for 5 grep -qF "metrics listener address=127.0.0.1 port=$PM" "$LOG"

# ---- what the metrics listener serves --------------------------------------------------
status_is() { [[ $(http "$1" "$2") == "$3" ]]; }
check "metrics port: GET /healthz is 200 ok" eval 'status_is GET "$M/healthz" 200 && grep -qx ok "$T/body"'
check "metrics port: GET /readyz is 200 ready (once the index is complete)" wait_for 10 status_is GET "$M/readyz" 200
metrics_ok() {
  [[ $(http GET "$M/metrics") == 200 ]] && [[ $(header Content-Type) == "text/plain; version=0.0.4" ]] &&
    grep -q '^layerd_request_duration_seconds_bucket{' "$T/body"
}
check "metrics port: GET /metrics is 200 Prometheus text with the latency histograms" metrics_ok
check "metrics port: HEAD /metrics is 200" eval '[[ $(httpx "$M/metrics" -I) == 200 ]]'
# A scraper names the node as it likes: no Host rule here. The pull port keeps its own.
check "metrics port: /metrics with a foreign Host is 200 (no Host rule)" \
  eval '[[ $(httpx "$M/metrics" -H "Host: prometheus.example:9580") == 200 ]]'
check "metrics port: /readyz with no Host header (HTTP/1.0) is 200" \
  eval '[[ $(httpx "$M/readyz" -0 -H "Host:") == 200 ]]'
check "pull port: /metrics with a foreign Host is still 400 (its rule is unchanged)" \
  eval '[[ $(httpx "$P/metrics" -H "Host: prometheus.example:9580") == 400 ]]'

# Every route of the pull API (and anything else) is 404, and nothing goes upstream.
fixture_call POST "$FX/_fixture/reset"
D0=sha256:$(printf x | sha256sum | cut -d' ' -f1)
refused=0
for path in "/v2/" "/v2" "/v2/lib/app/manifests/v1?ns=$REG" "/v2/lib/app/manifests/$D0?ns=$REG" \
  "/v2/lib/app/blobs/$D0?ns=$REG" "/v2/lib/app/tags/list?ns=$REG" "/v2/$REG/lib/app/manifests/v1" \
  "/metrics/" "/metricsx" "/healthz/../v2/" "/" "/favicon.ico"; do
  c=$(httpx "$M$path" --path-as-is)
  if [[ $c == 404 ]]; then refused=$((refused + 1)); else echo "# $path: $c" >&2; fi
done
check "metrics port: the pull API's routes and other paths are 404 (12 of 12)" test "$refused" -eq 12
check "metrics port: HEAD of a manifest is 404 too" eval '[[ $(httpx "$M/v2/lib/app/manifests/v1?ns=$REG" -I) == 404 ]]'
upstream_seen() { fixture_requests "$FX" | grep -c . || true; }
check "those requests reached no upstream (the fixture logged none)" test "$(upstream_seen)" -eq 0
methods=0
for m in POST PUT DELETE PATCH OPTIONS; do
  [[ $(http "$m" "$M/metrics") == 405 && $(header Allow) == "GET, HEAD" ]] && methods=$((methods + 1))
done
check "metrics port: POST, PUT, DELETE, PATCH, OPTIONS are 405 with Allow: GET, HEAD" test "$methods" -eq 5

# The pull port answers as it did.
check "pull port: GET /v2/ is 200" eval '[[ $(http GET "$P/v2/") == 200 ]]'
check "pull port: GET /healthz and /readyz are 200" eval '[[ $(http GET "$P/healthz") == 200 && $(http GET "$P/readyz") == 200 ]]'
check "pull port: GET /metrics is 200, without the listener's own counters" \
  eval '[[ $(http GET "$P/metrics") == 200 ]] && grep -q "^layerd_requests_total" "$T/body" && absent "^layerd_metrics_listener_" "$T/body"'
check "pull port: an unknown path is 404 with the distribution error body" \
  eval '[[ $(http GET "$P/nothing") == 404 ]] && grep -q "\"errors\"" "$T/body"'
check "pull port: POST is 405" eval '[[ $(http POST "$P/v2/") == 405 ]]'

# ---- pulls, then the text ---------------------------------------------------------------
B1=$(random_file "$T/b1" 65536)
B2=$(random_file "$T/b2" 300000)
B3=$(random_file "$T/b3" 200000)
for f in b1 b2 b3; do put_blob "$T/$f" >/dev/null; done
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":65536},"layers":[]}' "$B1" >"$T/manifest.json"
fixture_manifest "$FX" lib/app v1 "$T/manifest.json" >/dev/null
url() { echo "$P/v2/lib/app/$1?ns=$REG"; }
pulls=0
get "$(url manifests/v1)" "$T/m1" && [[ $code == 200 ]] && pulls=$((pulls + 1))      # miss
get "$(url manifests/v1)" "$T/m1" && [[ $code == 200 ]] && pulls=$((pulls + 1))      # hit (tag record fresh)
get "$(url "blobs/$B1")" "$T/g1" && [[ $code == 200 ]] && cmp -s "$T/g1" "$T/b1" && pulls=$((pulls + 1))  # miss
get "$(url "blobs/$B1")" "$T/g1" && [[ $code == 200 ]] && cmp -s "$T/g1" "$T/b1" && pulls=$((pulls + 1))  # hit
get "$(url tags/list)" "$T/t1" && [[ $code == 200 ]] && pulls=$((pulls + 1))
get "$(url manifests/nope)" "$T/n1" && [[ $code == 404 ]] && pulls=$((pulls + 1))   # error
# The registry as the client spelled it (ns is case-insensitive) is counted as the spec names it.
get "$P/v2/lib/app/blobs/$B1?ns=${REG^^}" "$T/g2" && [[ $code == 200 ]] && pulls=$((pulls + 1))  # hit
check "seven pull API requests answered (manifest miss and hit, blob miss and two hits, tags, a 404)" test "$pulls" -eq 7

curl -s --max-time 5 -o "$T/metrics.txt" "$M/metrics"
check "the metrics listener's /metrics is valid exposition (strict: HELP/TYPE once, groups, buckets, +Inf == _count)" \
  $PY "$CHECK" exposition "$T/metrics.txt"
value() { awk -v k="$1" '$1 == k { print $2 }' "$T/metrics.txt"; }
count() { value "layerd_request_duration_seconds_count{route=\"$1\",cache=\"$2\"}"; }
at_least() { [[ -n $1 ]] && awk -v v="$1" -v n="$2" 'BEGIN { exit !(v >= n) }'; }
check "histogram: a manifest miss and a manifest hit" eval 'at_least "$(count manifest miss)" 1 && at_least "$(count manifest hit)" 1'
check "histogram: a blob miss and a blob hit" eval 'at_least "$(count blob miss)" 1 && at_least "$(count blob hit)" 1'
check "histogram: a tag list (miss) and an error (the 404 manifest)" \
  eval 'at_least "$(count tags miss)" 1 && at_least "$(count manifest error)" 1'
check "histogram: the blob hit took under 1 s (le=\"1\" counts it)" \
  at_least "$(value "layerd_request_duration_seconds_bucket{route=\"blob\",cache=\"hit\",le=\"1\"}")" 1
check "per registry: 3 hits and 2 misses for $REG, under the spec's spelling only" \
  eval 'at_least "$(value "layerd_registry_hits_total{registry=\"$REG\"}")" 3 &&
        at_least "$(value "layerd_registry_misses_total{registry=\"$REG\"}")" 2 &&
        [[ $(grep -c "^layerd_registry_hits_total{" "$T/metrics.txt") == 1 ]]'
check "the listener's own counters are in its /metrics" grep -q '^layerd_metrics_listener_requests_total{status="404"} [1-9]' "$T/metrics.txt"
dashboard_ok() { $PY "$CHECK" dashboard "$DASHBOARD" "$T/metrics.txt" >&2; }
check "every expression of $DASHBOARD names only metrics of this /metrics" dashboard_ok
# The checkers catch what they are for: a metric layerd does not export, a histogram whose +Inf is not _count.
sed 's/layerd_registry_misses_total/layerd_registry_misses/' "$DASHBOARD" >"$T/bad-dashboard.json"
check "the dashboard check refuses a metric layerd does not export" \
  eval '! $PY "$CHECK" dashboard "$T/bad-dashboard.json" "$T/metrics.txt" >"$T/bad.out" && grep -q "^layerd_registry_misses (in" "$T/bad.out"'
awk '/^layerd_request_duration_seconds_count\{route="blob",cache="hit"\}/ { $2 = $2 + 1 } { print }' "$T/metrics.txt" >"$T/bad-metrics.txt"
check "the exposition check refuses a histogram whose +Inf bucket is not its _count" \
  eval '! $PY "$CHECK" exposition "$T/bad-metrics.txt" >"$T/bad.out" && grep -q "is not the +Inf bucket" "$T/bad.out"'

# ---- a flood of connections on the metrics port ---------------------------------------
# 200 connections at once, each sending half a request head and holding it
# for 4 s, while pulls go on: a cached blob, an uncached one (upstream), a manifest.
$PY - "$PM" >"$T/flood.out" 2>&1 <<'PY' &
import socket, sys, time
socks = []
for i in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    except OSError:
        pass
print("connected", len(socks), flush=True)
time.sleep(4)
for s in socks:
    s.close()
PY
FLOOD=$!
PIDS+=("$FLOOD")
wait_for 10 grep -q connected "$T/flood.out"
during=0
get "$(url "blobs/$B1")" "$T/f1" && [[ $code == 200 ]] && cmp -s "$T/f1" "$T/b1" && during=$((during + 1))
get "$(url "blobs/$B2")" "$T/f2" && [[ $code == 200 ]] && cmp -s "$T/f2" "$T/b2" && during=$((during + 1))
get "$(url manifests/v1)" "$T/f3" && [[ $code == 200 ]] && during=$((during + 1))
get "$(url "blobs/$B3")" "$T/f4" && [[ $code == 200 ]] && cmp -s "$T/f4" "$T/b3" && during=$((during + 1))
flooding() { kill -0 "$FLOOD" 2>/dev/null; }
check "during the flood ($(cat "$T/flood.out")): 4 of 4 pulls complete with the right bytes" test "$during" -eq 4
check "the pulls ran while the flood held its connections" flooding
wait_exit "$FLOOD" 15
check "after the flood the metrics listener answers again" wait_for 15 status_is GET "$M/healthz" 200
curl -s --max-time 5 -o "$T/after.txt" "$P/metrics"
check "the flood took nothing from the pull API's admission (no connection refused or shed)" \
  eval 'grep -qx "layerd_connections_closed_total{reason=\"refused\"} 0" "$T/after.txt" &&
        grep -qx "layerd_connections_closed_total{reason=\"shed\"} 0" "$T/after.txt"'
check "the flood's refused connections are not logged above debug" \
  eval 'absent "metrics listener: libmicrohttpd" "$LOG" && grep -q "^<6>request " "$LOG"'

# ---- the command-line flag --------------------------------------------------------------
PL2=$(free_port)
PM2=$(free_port)
"$LAYERD" serve --spec "$T/spec.yaml" --listen "127.0.0.1:$PL2" --cache-dir "$T/cache2" \
  --metrics-listen "127.0.0.1:$PM2" >"$T/layerd2.log" 2>&1 &
L2=$!
PIDS+=("$L2")
check "--metrics-listen overrides agent.metrics_listen: listens on the flag's port" wait_port "$PM2" 10
check "... and serves /healthz there" eval '[[ $(http GET "http://127.0.0.1:$PM2/healthz") == 200 ]]'
stop "$L2"
check "the second layerd stops cleanly" test "$status" = 0
usage() { "$LAYERD" serve --metrics-listen "$1" >"$T/usage.out" 2>&1; (($? == 2)) && grep -qF -- "--metrics-listen: not an ADDR:PORT address" "$T/usage.out"; }
check "--metrics-listen 0.0.0.0 (no port) is a usage error" usage 0.0.0.0
check "--metrics-listen fd00::1 (no port) is a usage error" usage fd00::1
if $PY -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
  PM3=$(free_port)
  PL3=$(free_port)
  "$LAYERD" serve --spec "$T/spec.yaml" --listen "127.0.0.1:$PL3" --cache-dir "$T/cache3" \
    --metrics-listen "::1:$PM3" >"$T/layerd3.log" 2>&1 &
  L3=$!
  PIDS+=("$L3")
  v6_ok() { [[ $(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://[::1]:$PM3/healthz") == 200 ]]; }
  check "--metrics-listen ::1:PORT (an IPv6 address without brackets, as \$(HOST_IP):PORT gives) serves on [::1]" \
    wait_for 10 v6_ok
  stop "$L3"
else
  skip "--metrics-listen with an unbracketed IPv6 address" "unsupported: no IPv6 loopback here"
fi

stop "$L"
check "layerd stops cleanly on SIGTERM with the metrics listener running" test "$status" = 0
finish
