#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make bench` (issue 7): layerd side by side with Debian's docker-registry
# (distribution v2: as the origin serving from its file system, and in proxy
# mode as a pull-through cache), nginx serving the same bytes as static files
# with sendfile, and containerd pulling directly, all on 127.0.0.1. Prints one
# table and writes it, with the machine's facts, to bench/results.md
# (BENCH_OUT). bench/README.md says what each row measures.
#
# Every peer is a private instance on a free port with its files in one temp
# dir; each is stopped by PID at exit, every wait is bounded, and the whole
# run stops starting new sections once BENCH_BUDGET seconds are spent.
#
# Helpers (free_port, wait_port, registry, skopeo_copy, containerd_start,
# hung_listener, ...) come from the integration tests' lib.sh.
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
export LAYERD=${LAYERD:-$ROOT/layerd}
. "$ROOT/tests/integration/lib.sh"
set +e

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

BIGREAD=${BIGREAD:-$ROOT/build/release/bench/bigread}
HLOAD=${HLOAD:-$ROOT/build/release/bench/hload}
ABUSE=${ABUSE:-$ROOT/build/release/bench/abuse}
STARTUP=${STARTUP:-$ROOT/build/release/bench/cache-startup}
RSSFLOOR=${RSSFLOOR:-$ROOT/build/release/bench/rssfloor}
OUT=${BENCH_OUT:-$BENCH/results.md}
BLOBS=${BENCH_BLOBS:-100000}         # cache-startup's store size
BLOB_MIB=${BENCH_BLOB_MIB:-1024}     # the cache-hit throughput blob
RUNS=${BENCH_RUNS:-5}                # interleaved throughput runs per server and client
IMAGE_MIB=${BENCH_IMAGE_MIB:-500}    # the cold-pull image, in BENCH_LAYERS equal layers
LAYERS=${BENCH_LAYERS:-5}
PULL_RUNS=${BENCH_PULL_RUNS:-7}      # timed pulls per way of pulling (medians of noisy ~4 s pulls)
FANIN=${BENCH_FANIN:-16}             # concurrent pulls of one cold image
FANIN_MIB=${BENCH_FANIN_MIB:-100}    # its size (also in BENCH_LAYERS layers)
WRK_S=${BENCH_WRK_SECONDS:-3}        # each wrk run
PROFILE=${BENCH_PROFILE:-1}          # perf profiles of layerd's hot paths
BUDGET=${BENCH_BUDGET:-900}          # seconds; sections after it are skipped, with a note
ABUSE_IDLE=${BENCH_ABUSE_IDLE:-5000}       # abuse: idle keep-alive connections held
ABUSE_SLOW=${BENCH_ABUSE_SLOW:-100}        # abuse: slowloris connections held
ABUSE_CLIENTS=${BENCH_ABUSE_CLIENTS:-200}  # abuse: non-reading manifest clients, abandoned downloads
ABUSE_PULL_RUNS=${BENCH_ABUSE_PULL_RUNS:-5}  # abuse: pulls with and without the load, each (3 left the median within noise)
CLUSTER_NODES=${BENCH_CLUSTER_NODES:-16}  # cluster: layerd instances behind one central cache
CLUSTER_MIB=${BENCH_CLUSTER_MIB:-64}      # cluster: the image they pull (in BENCH_LAYERS layers)
CPULL=${CPULL:-$ROOT/build/release/bench/cpull}
SECTIONS="peers ${BENCH_SECTIONS:-startup throughput manifests pulls fanin failover abuse cluster}"  # which to run

# A copy of the binary: a rebuild of ./layerd during the run neither changes
# what is measured nor leaves perf without symbols ("layerd (deleted)").
cp "$LAYERD" "$T/layerd" || exit 1
LAYERD=$T/layerd
R=$T/results.txt  # KEY VALUE lines, rendered by report.py
bench_status=0    # the exit status: 1 only when cache-startup fails; never because of a number
: >"$R"
put() { echo "$*" >>"$R"; }
note() { echo "bench: $*" >&2; put note "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# section KEY NAME: announces a section; false when KEY is not in
# BENCH_SECTIONS or the budget is spent.
section() {
  local key=$1; shift
  [[ " $SECTIONS " == *" $key "* ]] || return 1
  if ((SECONDS > BUDGET)); then
    note "skipped \"$1\": the ${BUDGET} s budget was spent (BENCH_BUDGET)"
    return 1
  fi
  echo "bench: [$((SECONDS))s] $1" >&2
  put "load_at [${SECONDS}s] $1: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Stop everything this run started: SIGTERM, a bounded wait, then SIGKILL.
bench_cleanup() {
  local p deadline=$((SECONDS + 15))
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "bench: kept $T (BENCH_KEEP=1)" >&2; else rm -rf "$T"; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: stops one process of ours, bounded (SIGKILL after 10 s).
stop_pid() {
  [[ -n ${1:-} ]] || return 0
  stop "$1" 10 || { kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
}
# hwm PID: "VmHWM VmRSS RssAnon RssFile" in KiB from /proc: the peak and the
# current resident set, and what of the current one is anonymous memory and
# what is mapped files (the shared libraries, mostly).
hwm() {
  awk '/^VmHWM:/ { h = $2 } /^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
    END { print h + 0, r + 0, a + 0, f + 0 }' "/proc/$1/status" 2>/dev/null
}

# ---- machine facts -------------------------------------------------------------------------
put fact_date "$(date -u '+%Y-%m-%d %H:%M UTC')"
put fact_cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
put fact_cores "$(nproc)"
put fact_ram "$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
put fact_kernel "$(uname -r)"
put fact_virt "$(systemd-detect-virt 2>/dev/null || echo unknown)"
put fact_tmp "$(df -h --output=source,fstype,size,avail "$T" | tail -n 1 | tr -s ' ')"
put fact_load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
put ver_layerd "$("$LAYERD" version 2>&1 | head -n 1)"
put ver_tree "$(git -C "$ROOT" describe --tags --always --dirty 2>/dev/null || echo unknown)"
put ver_microhttpd "$("$LAYERD" version 2>&1 | sed -n 's/^libmicrohttpd //p')"
put ver_registry "$(docker-registry --version 2>&1 | awk '{ print $NF }')"
put ver_nginx "$(nginx -v 2>&1 | sed 's/.*nginx\///')"
put ver_containerd "$(containerd --version 2>&1 | awk '{ print $3 }')"
put ver_wrk "$(wrk -v 2>&1 | head -n 1 | awk '{ print $2 }')"
put ver_curl "$(curl --version | head -n 1 | awk '{ print $2 }')"
put ver_perf "$(perf --version 2>/dev/null | awk '{ print $3 }')"

# ---- sizes that fit the disk ---------------------------------------------------------------
# Disk: the blob twice (origin + layerd's cache; nginx shares the origin's
# file by a hard link), the image 4 times (layout, origin, layerd's cache,
# containerd), the fan-in image 5 times, the cluster image once per node and
# 3 times more (layout, origin, central cache), and 1 GiB of slack.
avail_mib=$(($(df -k --output=avail "$T" | tail -n 1) / 1024))
need_mib=$((2 * BLOB_MIB + 4 * IMAGE_MIB + 5 * FANIN_MIB + (CLUSTER_NODES + 3) * CLUSTER_MIB + 1024))
if ((avail_mib < need_mib)); then
  scale=$((avail_mib * 100 / need_mib))
  BLOB_MIB=$((BLOB_MIB * scale / 100)); IMAGE_MIB=$((IMAGE_MIB * scale / 100)); FANIN_MIB=$((FANIN_MIB * scale / 100))
  CLUSTER_MIB=$((CLUSTER_MIB * scale / 100))
  note "only $avail_mib MiB free under $T (want $need_mib): sizes scaled to ${scale}%"
fi
((BLOB_MIB >= 16 && IMAGE_MIB >= LAYERS && FANIN_MIB >= LAYERS)) || { echo "bench: not enough disk under $T" >&2; exit 1; }
put size_blob_mib "$BLOB_MIB"
put size_image_mib "$IMAGE_MIB"
put size_layers "$LAYERS"
put size_fanin_mib "$FANIN_MIB"
put size_fanin "$FANIN"
put size_runs "$RUNS"
put size_pull_runs "$PULL_RUNS"
put size_wrk_s "$WRK_S"

# ---- 0. cache start-up (bench/cache-startup.c, issue 4) -------------------------------------
if section startup "cache start-up, $BLOBS blobs"; then
  timeout 300 "$STARTUP" "$T/startup" "$BLOBS" >"$T/startup.out" 2>&1
  rc=$?
  cat "$T/startup.out" >&2
  rm -rf "$T/startup"
  if ((rc != 0)); then
    note "cache-startup failed (exit $rc): the store could not be built, or it miscounted"
    bench_status=1
  else
    put startup_blobs "$BLOBS"
    # "  serving, warm   5   min median max" and "  index built, cold ...": startup KIND_STATE MIN MEDIAN MAX
    awk '/^  (serving|index built), (warm|cold) / {
      print "startup", ($1 == "serving," ? "serving" : "index") "_" $(NF - 4), $(NF - 2), $(NF - 1), $NF }' \
      "$T/startup.out" >>"$R"
    grep -q 'not measured' "$T/startup.out" && note "cache-startup: $(grep -m1 'not measured' "$T/startup.out" | tr -s ' ')"
  fi
fi

# ---- peers ---------------------------------------------------------------------------------
chmod 711 "$T"
PO=$(free_port)  # the origin: docker-registry serving from its file system
PP=$(free_port)  # docker-registry in proxy mode, a pull-through cache of the origin
PN=$(free_port)  # nginx, static files
ORIGIN=http://127.0.0.1:$PO
REG=127.0.0.1:$PO
# containerd's manifest Accept header: layerd records a tag only for a client that takes every kind.
ACCEPT="application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
NSQ="ns=127.0.0.1%3A$PO"

section peers "peers and content" || exit 1
registry origin "$PO"
wait_port "$PO" 15 || { echo "bench: the origin docker-registry does not listen" >&2; diag_tail "$T/origin.log"; exit 1; }

# nginx: a private instance, its own prefix and config, never the packaged service.
# nginx_temp_paths DIR: the lines of its http block that keep every temp file under DIR/tmp.
nginx_temp_paths() { local k; for k in client_body proxy fastcgi uwsgi scgi; do echo "  ${k}_temp_path $1/tmp/$k;"; done; }
# nginx_conf_head DIR: a config's start up to the http block's first lines: its
# PID file, logs and temp files under DIR, 1024 connections a worker, sendfile.
nginx_conf_head() {
  printf 'worker_processes auto;\npid %s/nginx.pid;\nerror_log %s/logs/error.log;\nevents { worker_connections 1024; }\n' "$1" "$1"
  printf 'http {\n  access_log %s/logs/access.log;\n' "$1"
  nginx_temp_paths "$1"
  echo "  sendfile on;"
}
NG=$T/nginx
mkdir -p "$NG/root/v2/bench/app/manifests" "$NG/tmp" "$NG/logs"
cat >"$NG/nginx.conf" <<NGINX
$(nginx_conf_head "$NG")
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/vnd.oci.image.manifest.v1+json;
  server {
    listen 127.0.0.1:$PN;
    root $NG/root;
  }
}
NGINX
nginx -p "$NG" -c "$NG/nginx.conf" -g 'daemon off;' >"$NG/logs/stderr" 2>&1 &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_port "$PN" 10 || { echo "bench: nginx does not listen" >&2; diag_tail "$NG/logs/stderr" "$NG/logs/error.log"; exit 1; }

containerd_start "$T/ctrd"
CTRD_PID=${PIDS[-1]}
wait_for 30 ctrd_up || { echo "bench: containerd does not answer" >&2; diag_tail "$T/ctrd/log"; exit 1; }

# Content: the pull image (bench/app:v1), the fan-in image (bench/fan:v1),
# pushed with skopeo; the throughput blob is laid into the origin's storage
# (distribution's file-system layout) by a rename, and hard-linked for nginx.
# layer_sizes MIB: LAYERS equal layer sizes in bytes, into the array SIZES.
layer_sizes() { local i; SIZES=(); for ((i = 0; i < LAYERS; i++)); do SIZES+=($(($1 * 1048576 / LAYERS))); done; }
t0=$(now_ms)
layer_sizes "$IMAGE_MIB"; APP_SIZES=("${SIZES[@]}")
layer_sizes "$FANIN_MIB"; FAN_SIZES=("${SIZES[@]}")
/usr/bin/python3 "$BENCH/mkimage.py" image "$T/app" v1 "${APP_SIZES[@]}" >"$T/app.digests" &&
  /usr/bin/python3 "$BENCH/mkimage.py" image "$T/fan" v1 "${FAN_SIZES[@]}" >"$T/fan.digests" &&
  /usr/bin/python3 "$BENCH/mkimage.py" blob "$T/blob" $((BLOB_MIB * 1048576)) >"$T/blob.digest" ||
  { echo "bench: cannot make the test content" >&2; exit 1; }
mapfile -t APP <"$T/app.digests"
mapfile -t FAN <"$T/fan.digests"
BLOB=$(cat "$T/blob.digest")
chmod -R a+rX "$T/app" "$T/fan"
skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/app:v1" "docker://$REG/bench/app:v1" &&
  skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/fan:v1" "docker://$REG/bench/fan:v1" ||
  { echo "bench: skopeo cannot push to the origin" >&2; diag_tail "$T/skopeo.log"; exit 1; }
rm -rf "$T/app" "$T/fan"  # the origin has them now
h=${BLOB#sha256:}
V2=$T/origin-data/docker/registry/v2
mkdir -p "$V2/blobs/sha256/${h:0:2}/$h" "$V2/repositories/bench/app/_layers/sha256/$h"
mv "$T/blob" "$V2/blobs/sha256/${h:0:2}/$h/data"
printf '%s' "$BLOB" >"$V2/repositories/bench/app/_layers/sha256/$h/link"
ln "$V2/blobs/sha256/${h:0:2}/$h/data" "$NG/root/blob" 2>/dev/null || cp "$V2/blobs/sha256/${h:0:2}/$h/data" "$NG/root/blob"
MDIGEST=${APP[0]}
MFILE=$V2/blobs/sha256/${MDIGEST:7:2}/${MDIGEST#sha256:}/data
cp "$MFILE" "$NG/root/v2/bench/app/manifests/v1"
cp "$MFILE" "$NG/root/v2/bench/app/manifests/$MDIGEST"
chmod -R a+rX "$NG/root"
put manifest_bytes "$(stat -c %s "$MFILE")"
put setup_ms $(($(now_ms) - t0))
code=$(curl -s -o /dev/null -w '%{http_code}' -r 0-0 "$ORIGIN/v2/bench/app/blobs/$BLOB")
[[ $code == 206 || $code == 200 ]] || { echo "bench: the origin does not serve the blob ($code)" >&2; exit 1; }

# ---- page cache ----------------------------------------------------------------------------
# bench/pagecache.py: new data into the page cache, into never-used (or
# given-back) memory and over existing pages. On a VM whose host takes freed
# memory back, the first is several times slower, and a caching server pays it
# for every cold blob it stores (read the cold-pull row with it).
put fact_pagecache "$(timeout 120 /usr/bin/python3 "$BENCH/pagecache.py" "$T" 512 || echo FAIL)"

# ---- layerd ----------------------------------------------------------------------------
LAYERD_PORT='' LAYERD_LOG=''
# layerd_start NAME CACHE_DIR [REGISTRY ORIGIN]: `layerd serve` on a free port;
# the registry 127.0.0.1:$PO from its origin (or REGISTRY from ORIGIN), tags
# trusted for an hour (so that manifests by tag are cache hits, as they are
# within tag_ttl). PID in $LAYERD_PID.
layerd_start() {
  local reg=${3:-$REG} origin=${4:-$ORIGIN}
  LAYERD_PORT=$(free_port)
  LAYERD_LOG=$T/$1.log
  cat >"$T/$1.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$LAYERD_PORT
  cache_dir: $2
  default_registry: "$reg"
registries:
  "$reg":
    origin: $origin
    tag_ttl: 1h
YAML
  layerd_serve "$LAYERD_LOG" "$T/$1.yaml"
  wait_port "$LAYERD_PORT" 15 || { echo "bench: layerd $1 does not listen" >&2; diag_tail "$LAYERD_LOG"; exit 1; }
  rm -rf "$T/hosts-$1"
  "$LAYERD" hosts --spec "$T/$1.yaml" --dir "$T/hosts-$1" --listen "127.0.0.1:$LAYERD_PORT" >/dev/null ||
    { echo "bench: layerd hosts failed" >&2; exit 1; }
}
# hosts_plain DIR SERVER_PORT: a hosts dir in which $REG is served by 127.0.0.1:SERVER_PORT alone.
hosts_plain() {
  mkdir -p "$1/$REG"
  printf 'server = "%s"\n\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$ORIGIN" "$2" >"$1/$REG/hosts.toml"
}
hosts_plain "$T/hosts-direct" "$PO"

# ---- 1. cache-hit blob throughput ----------------------------------------------------------
# curl_mbs URL: MB/s (10^6 bytes) of one GET with curl (16 KiB writes), or FAIL.
curl_mbs() {
  curl -s --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}\n' "$1" |
    awk -v want=$((BLOB_MIB * 1048576)) '$1 == 200 && $2 == want { printf "%.1f\n", $3 / 1e6; next } { print "FAIL" }'
}
# big_mbs PORT PATH: MB/s of one GET with bigread (1 MiB recv buffer), or FAIL.
big_mbs() { timeout 120 "$BIGREAD" "$1" "$2" 2>>"$T/bigread.err" | sed -n 's/.*mb_s=\([0-9.]*\).*/\1/p' | grep . || echo FAIL; }

if section throughput "cache-hit blob throughput, ${BLOB_MIB} MiB x $RUNS"; then
  layerd_start blob "$T/cache-blob"
  L_BLOB=$LAYERD_PID
  BPATH=/v2/bench/app/blobs/$BLOB
  # The cold GET fills layerd's cache from the origin (single flight, digest
  # verified); bigread also says how long the last byte was held back.
  put cold_blob "$(timeout 300 "$BIGREAD" "$LAYERD_PORT" "$BPATH?$NSQ" 2>>"$T/bigread.err")"
  # The commit (fsync, rename) may end after the response: wait for it, and
  # for the file's writeback, before the cache-hit runs.
  wait_for 120 in_cache "$T/cache-blob" "$BLOB" || note "the blob is not in layerd's cache 120 s after the cold GET"
  timeout 120 sync "$T/cache-blob/blobs/sha256/${h:0:2}/$h" 2>/dev/null
  # Page cache: one untimed read of each file first.
  cat "$T/cache-blob/blobs/sha256/${h:0:2}/$h" >/dev/null 2>&1
  cat "$NG/root/blob" >/dev/null
  for ((i = 1; i <= RUNS; i++)); do
    put tp_curl_layerd "$(curl_mbs "http://127.0.0.1:$LAYERD_PORT$BPATH?$NSQ")"
    put tp_big_layerd "$(big_mbs "$LAYERD_PORT" "$BPATH?$NSQ")"
    put tp_curl_registry "$(curl_mbs "$ORIGIN$BPATH")"
    put tp_big_registry "$(big_mbs "$PO" "$BPATH")"
    put tp_curl_nginx "$(curl_mbs "http://127.0.0.1:$PN/blob")"
    put tp_big_nginx "$(big_mbs "$PN" /blob)"
  done
  if ((PROFILE)); then
    timeout 30 perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$L_BLOB" -o "$T/perf-blob.data" -- sleep 6 \
      >"$T/perf-blob.out" 2>&1 &
    perf_pid=$!
    sleep 0.5
    for ((i = 0; i < 12 && SECONDS < BUDGET + 60; i++)); do
      big_mbs "$LAYERD_PORT" "$BPATH?$NSQ" >/dev/null
      kill -0 "$perf_pid" 2>/dev/null || break
    done
    wait_exit "$perf_pid" 30
  fi
  # Warm layerd's manifest and tag caches for section 2 (these are misses).
  for ref in v1 "$MDIGEST"; do
    curl -s --max-time 10 -o /dev/null -H "Accept: $ACCEPT" "http://127.0.0.1:$LAYERD_PORT/v2/bench/app/manifests/$ref?$NSQ"
  done
  if ((PROFILE)); then
    # Where a cold GET's CPU time goes: a second layerd with an empty cache.
    layerd_start cold "$T/cache-cold"
    timeout 60 perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$LAYERD_PID" -o "$T/perf-cold.data" \
      >"$T/perf-cold.out" 2>&1 &
    perf_pid=$!
    sleep 0.5
    put cold_blob_profiled "$(timeout 300 "$BIGREAD" "$LAYERD_PORT" "$BPATH?$NSQ" 2>>"$T/bigread.err")"
    kill -INT "$perf_pid" 2>/dev/null
    wait_exit "$perf_pid" 30
    stop_pid "$LAYERD_PID"
    rm -rf "$T/cache-cold"
  fi
  stop_pid "$L_BLOB"
  rm -f "$T/cache-blob/blobs/sha256/${h:0:2}/$h"  # 1 GiB less on disk; manifests stay
fi

# ---- 2. small requests: cached manifests with wrk ------------------------------------------
if section manifests "cached manifests, wrk ${WRK_S}s runs"; then
  registry proxy "$PP" "proxy:
  remoteurl: $ORIGIN"
  PROXY_PID=$REGISTRY_PID
  wait_port "$PP" 15 || { echo "bench: the proxy docker-registry does not listen" >&2; diag_tail "$T/proxy.log"; exit 1; }
  # A fresh layerd on the cache that section 1 filled: its idle size first.
  layerd_start manifests "$T/cache-blob"
  L_MAN=$LAYERD_PID
  sleep 2
  put rss_layerd_idle "$(hwm "$L_MAN")"
  put rss_floor "$("$RSSFLOOR" 2>/dev/null)"  # Debian's libcurl linked and initialised, nothing else
  put rss_registry_idle "$(hwm "$PROXY_PID")"
  # The proxy caches a manifest by digest on first GET; by tag it asks the origin every time.
  for ref in v1 "$MDIGEST"; do
    curl -s --max-time 10 -o /dev/null -H "Accept: $ACCEPT" "http://127.0.0.1:$PP/v2/bench/app/manifests/$ref"
  done
  declare -A port=([layerd]=$LAYERD_PORT [registry]=$PP [nginx]=$PN)
  declare -A path=(  # @REF@: the tag or the digest
    [layerd]="/v2/bench/app/manifests/@REF@?$NSQ"
    [registry]="/v2/bench/app/manifests/@REF@"
    [nginx]="/v2/bench/app/manifests/@REF@"
  )
  # Every server answers each request kind 200 before it is measured.
  for s in layerd registry nginx; do
    for ref in v1 "$MDIGEST"; do
      for m in GET HEAD; do
        opt=(); [[ $m == HEAD ]] && opt=(-I)
        c=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "${opt[@]}" -H "Accept: $ACCEPT" \
          "http://127.0.0.1:${port[$s]}${path[$s]/@REF@/$ref}")
        [[ $c == 200 ]] || note "$s $m manifest ${ref:0:20}: status $c before the load runs"
      done
    done
  done
  mark_layerd=$(mark "$LAYERD_LOG")
  # load SERVER METHOD REF_KIND CONNECTIONS [SECONDS [CLIENT]]: one closed-loop
  # run; prints "requests=N rps=R p50_ms=X p99_ms=Y errors=N non2xx=N". GET with
  # wrk; HEAD with bench/hload (Debian's wrk 4.1 never completes a HEAD request).
  load() {
    local s=$1 m=$2 k=$3 c=$4 d=${5:-$WRK_S} client=${6:-} ref=v1 u line
    [[ $k == digest ]] && ref=$MDIGEST
    u=${path[$s]/@REF@/$ref}
    [[ -z $client ]] && { client=wrk; [[ $m == HEAD ]] && client=hload; }
    if [[ $client == wrk ]]; then
      line=$(BENCH_METHOD=$m timeout $((d + 15)) wrk -t1 -c"$c" -d"${d}s" --timeout 5s -s "$BENCH/wrk.lua" \
        "http://127.0.0.1:${port[$s]}$u" 2>&1 | grep '^RESULT ')
    else
      line=$(timeout $((d + 15)) "$HLOAD" "${port[$s]}" "$u" "$m" "$c" "$d" "Accept: $ACCEPT" "User-Agent: hload" |
        grep '^RESULT ')
    fi
    echo "${line#RESULT }"
  }
  for s in layerd registry nginx; do load "$s" GET digest 32 1 >/dev/null; done  # warm-up
  for k in tag digest; do
    for m in HEAD GET; do
      for c in 1 32 256; do
        for s in layerd registry nginx; do
          put "wrk $s $m $k $c $(load "$s" "$m" "$k" "$c")"
        done
      done
    done
  done
  # The two clients side by side on one cell, so that HEAD and GET rows can be compared.
  for s in layerd registry nginx; do put "wrk $s GET-hload digest 32 $(load "$s" GET digest 32 "$WRK_S" hload)"; done
  put rss_layerd_wrk "$(hwm "$L_MAN")"
  put rss_registry_wrk "$(hwm "$PROXY_PID")"
  put layerd_manifest_outcomes "$(since "$LAYERD_LOG" "$mark_layerd" | sed -n 's/^<6>request .* cache=\([a-z-]*\).*/\1/p' |
    sort | uniq -c | awk '{ printf "%s%s=%s", sep, $2, $1; sep = "," }')"
  if ((PROFILE)); then
    timeout 30 perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$L_MAN" -o "$T/perf-manifest.data" -- sleep 5 \
      >"$T/perf-manifest.out" 2>&1 &
    perf_pid=$!
    sleep 0.3
    load layerd GET digest 32 5 >/dev/null
    wait_exit "$perf_pid" 30
    timeout 30 perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$L_MAN" -o "$T/perf-manifest-tag.data" \
      -- sleep 5 >"$T/perf-manifest-tag.out" 2>&1 &
    perf_pid=$!
    sleep 0.3
    load layerd GET tag 32 5 >/dev/null
    wait_exit "$perf_pid" 30
  fi
  stop_pid "$L_MAN"
fi

# ---- 3. cold and warm pulls with containerd ------------------------------------------------
# pull_ms NAMESPACE HOSTS_DIR REF [SERVER_PID]: `ctr content fetch` of REF;
# prints its wall time in ms, or FAIL (also when it takes longer than
# PULL_TIMEOUT seconds, 300 unless set). The CPU time (1/100 s) that ctr,
# containerd and the server (when given) spent on it goes to $T/cpu-NAMESPACE
# as "CTR,CONTAINERD,SERVER": on 2 cores a pull is CPU-bound, and this says who used it.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
pull_ms() {
  local t0 rc c0 s0=0 out
  c0=$(ticks "$CTRD_PID"); [[ -n ${4:-} ]] && s0=$(ticks "$4")
  t0=$(now_ms)
  # `times` in the shell that waited for ctr (in a pipe or $(...) it is a new process, its children's times 0)
  (timeout "${PULL_TIMEOUT:-300}" ctr -a "$SOCK" -n "$1" content fetch --hosts-dir "$2" "$3" >"$T/fetch-$1.out" 2>"$T/fetch-$1.err"
    rc=$?; times >"$T/times-$1"; exit $rc)
  rc=$?
  out=$(tail -n 1 "$T/times-$1" 2>/dev/null)
  local ms=$(($(now_ms) - t0))
  # times: "0m1.230s 0m0.450s", the children's user and system time
  local ctr_ticks
  ctr_ticks=$(echo "$out" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] } printf "%d", n * 100 }')
  echo "$ctr_ticks,$(($(ticks "$CTRD_PID") - c0)),$([[ -n ${4:-} ]] && echo $(($(ticks "$4") - s0)) || echo 0)" >"$T/cpu-$1"
  if ((rc == 0)); then echo "$ms"; else echo FAIL; fi
}
# upstream_sums REPO: from access-log lines on stdin, "REQUESTS BLOB_GETS BLOB_BYTES"
# (API requests of any kind; GETs of bench/REPO's blobs and the body bytes they sent).
upstream_sums() {
  awk -v repo="$1" '{ n++ }
    index($0, "\"GET /v2/bench/" repo "/blobs/") && match($0, /HTTP\/[0-9.]+" [0-9]+ [0-9]+/) {
      split(substr($0, RSTART, RLENGTH), f, " "); b++; s += f[3] }
    END { printf "%d %d %d\n", n, b, s }'
}
APP_REF=$REG/bench/app:v1
FAN_REF=$REG/bench/fan:v1
# pull_settle [keep]: the same disk state before every timed pull: the last
# cold layerd and nginx stopped and their caches removed (unless "keep": the
# warm pulls read that cache), then the writeback that removal and the pulls
# before left (ext4 with discard, 30 s dirty expiry) flushed, bounded, and 1 s.
pull_settle() {
  if [[ ${1:-} != keep ]]; then
    stop_pid "$L_PULL"; stop_pid "$PNC_PID"; L_PULL= PNC_PID=
    rm -rf "$T/cache-pull" "$T/pull-nginx"
  fi
  timeout 60 sync
  sleep 1
}
# cpu_stat: the machine's "BUSY IDLE" ticks from /proc/stat (user + nice +
# system + irq + softirq; idle + iowait).
cpu_stat() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $5 + $6; exit }' /proc/stat; }
CLK_TCK=$(getconf CLK_TCK)
# pull_timed KEY NAMESPACE HOSTS_DIR [SERVER_PID]: pull_ms of the pull image,
# put as KEY, and the machine's busy and idle CPU seconds over it as KEY_stat.
pull_timed() {
  local a b r
  a=($(cpu_stat)); r=$(pull_ms "$2" "$3" "$APP_REF" "${4:-}"); b=($(cpu_stat))
  put "$1" "$r"
  put "$1_stat" "$(awk -v b=$((b[0] - a[0])) -v i=$((b[1] - a[1])) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f %.2f\n", b / hz, i / hz }')"
}
# pull_nginx_start: nginx with proxy_cache in front of the origin on $PNC, a
# fresh empty cache, proxy_cache_lock on and nginx's default buffering (as the
# cluster's central cache); its hosts dir $T/hosts-pnginx, PID in $PNC_PID.
PNC_PID=
pull_nginx_start() {
  local d=$T/pull-nginx
  PNC=$(free_port)
  mkdir -p "$d/tmp" "$d/logs" "$d/cache"
  cat >"$d/nginx.conf" <<NGINX
$(nginx_conf_head "$d")
  proxy_cache_path $d/cache levels=1:2 keys_zone=pull:16m max_size=4g inactive=1h use_temp_path=off;
  proxy_cache pull;
  proxy_cache_valid 200 206 1h;
  proxy_cache_lock on;
  proxy_http_version 1.1;
  server { listen 127.0.0.1:$PNC; location / { proxy_pass http://127.0.0.1:$PO; } }
}
NGINX
  nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/logs/stderr" 2>&1 &
  PNC_PID=$!
  PIDS+=("$PNC_PID")
  rm -rf "$T/hosts-pnginx"
  hosts_plain "$T/hosts-pnginx" "$PNC"
  wait_port "$PNC" 10 || { note "pulls: nginx proxy_cache did not listen: $(tail -n 2 "$d/logs/error.log" | tr '\n' ' ')"; return 1; }
}
# pull_profile NAME HOSTS_DIR [LAYERD_PID]: one untimed pull under a
# system-wide perf record (cpu-clock, 499 Hz, no call graphs); "PROFILE
# pull-NAME ..." lines: the samples by process (layerd: every thread of its
# PID, whatever their names), idle (swapper) and, given layerd, its top
# functions by self time.
pull_profile() {
  local f=$T/perf-pull-$1.data perf_pid
  timeout 120 perf record -q -a -e cpu-clock -F 499 -o "$f" >"$T/perf-pull-$1.out" 2>&1 &
  perf_pid=$!
  sleep 0.5
  put "profiled_pull_$1" "$(pull_ms "prof$1" "$2" "$APP_REF" "${3:-}")"
  kill -INT "$perf_pid" 2>/dev/null
  wait_exit "$perf_pid" 30
  [[ -s $f ]] || return 0
  {
    echo "PROFILE pull-$1 procs"
    # perf script: "COMM PID " a sample; the name alone for every other process.
    timeout 120 perf script -i "$f" -F comm,pid 2>/dev/null | awk -v l="${3:--1}" -v c="$CTRD_PID" -v hz=499 '
      { pid = $NF; comm = $0; sub(/[ \t]*[0-9]+[ \t]*$/, "", comm); sub(/^[ \t]+/, "", comm); n++
        k = pid == 0 ? "idle (swapper)" : pid == l ? "layerd (all threads)" : pid == c ? "containerd" : comm
        s[k]++ }
      END { for (k in s) printf "  %5.1f%%  %6.2f CPU-s  %s\n", 100 * s[k] / n, s[k] / hz, k }' | sort -rn | head -n 10
    if [[ -n ${3:-} ]]; then
      echo "PROFILE pull-$1 dso"  # "PID IP (DSO)" a sample
      timeout 120 perf script -i "$f" -F pid,ip,dso 2>/dev/null | awk -v l="$3" '$1 == l { d = $NF; gsub(/[()]/, "", d)
        sub(/.*\//, "", d); s[d]++; n++ } END { for (d in s) printf "  %5.1f%%  %s\n", 100 * s[d] / n, d }' | sort -rn | head -n 6
      echo "PROFILE pull-$1 self"
      timeout 120 perf report -i "$f" --pid "$3" --percentage relative --no-children --sort dso,sym --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | head -n 12
    fi
    echo "PROFILE pull-$1 samples $(timeout 60 perf script -i "$f" -F pid 2>/dev/null | wc -l)"
  } >>"$R"
}
if section pulls "pulls of a ${IMAGE_MIB} MiB image, $PULL_RUNS runs"; then
  hosts_plain "$T/hosts-proxy" "$PP"
  if [[ -z ${PROXY_PID:-} ]]; then  # the manifests section did not run
    registry proxy "$PP" "proxy:
  remoteurl: $ORIGIN"
    PROXY_PID=$REGISTRY_PID
    wait_port "$PP" 15 || note "the proxy docker-registry does not listen"
  fi
  # Untimed: puts the blobs into containerd's on-disk store once, so that every
  # timed pull (each into a fresh namespace: containerd downloads everything
  # again) finds the store in the same state.
  r=$(pull_ms warmup "$T/hosts-direct" "$APP_REF"); [[ $r == FAIL ]] && note "warm-up pull failed"
  L_PULL=
  pull_settle
  mo=$(mark "$T/origin.log")
  pull_timed pull_proxy_cold pcold "$T/hosts-proxy"
  put proxy_cold_upstream "$(requests "$T/origin.log" "$mo" | upstream_sums app)"
  for ((i = 1; i <= PULL_RUNS; i++)); do
    pull_settle
    pull_timed pull_direct "direct$i" "$T/hosts-direct"
    put pull_cpu_direct "$(cat "$T/cpu-direct$i")"
    pull_settle
    if pull_nginx_start; then
      pull_timed pull_nginx_cold "ncold$i" "$T/hosts-pnginx"
    fi
    pull_settle
    layerd_start "pull$i" "$T/cache-pull"
    L_PULL=$LAYERD_PID
    pull_timed pull_layerd_cold "lcold$i" "$T/hosts-pull$i" "$L_PULL"
    put pull_cpu_layerd_cold "$(cat "$T/cpu-lcold$i")"
    # when the last blob was in layerd's cache, from its start of the pull: the
    # longest "downloaded ... ms=" (every download starts within ms of the pull)
    put pull_cold_cached_ms "$(sed -n 's/^<6>downloaded .* bytes=\([0-9]*\) ms=\([0-9]*\) .*/\1 \2/p' "$LAYERD_LOG" |
      awk '$1 > 1048576 && $2 > m { m = $2 } END { print m + 0 }')"
  done
  for ((i = 1; i <= PULL_RUNS; i++)); do
    pull_settle keep
    pull_timed pull_layerd_warm "lwarm$i" "$T/hosts-pull$PULL_RUNS"
    pull_settle keep
    pull_timed pull_proxy_warm "pwarm$i" "$T/hosts-proxy"
  done
  if ((PROFILE)); then
    pull_settle
    pull_profile direct "$T/hosts-direct"
    pull_settle
    layerd_start pullprof "$T/cache-pull"
    L_PULL=$LAYERD_PID
    pull_profile layerd "$T/hosts-pullprof" "$L_PULL"
  fi
  pull_settle
fi

# ---- 4. fan-in: concurrent cold pulls of one image -----------------------------------------
# fanin PREFIX HOSTS_DIR SERVER_PID: FANIN concurrent pulls of the fan-in image,
# each into its own namespace; records total ms, failures, upstream requests and
# bytes (the origin's access log) and the server's peak RSS.
fanin() {
  local prefix=$1 dir=$2 pid=$3 i t0 mo jobs=() failed=0
  mo=$(mark "$T/origin.log")
  t0=$(now_ms)
  for ((i = 1; i <= FANIN; i++)); do
    (r=$(pull_ms "$prefix$i" "$dir" "$FAN_REF"); echo "$r" >"$T/fanin-$prefix$i.ms") &
    jobs+=("$!")
  done
  for i in "${jobs[@]}"; do wait_exit "$i" 330 || { kill "$i" 2>/dev/null; failed=$((failed + 1)); }; done
  put "fanin_ms_$prefix" $(($(now_ms) - t0))
  for ((i = 1; i <= FANIN; i++)); do [[ $(cat "$T/fanin-$prefix$i.ms" 2>/dev/null) =~ ^[0-9]+$ ]] || failed=$((failed + 1)); done
  put "fanin_failed_$prefix" "$failed"
  sleep 1  # the access log line of a request is written when it ends
  requests "$T/origin.log" "$mo" >"$T/fanin-$prefix.upstream"
  put "fanin_upstream_$prefix" "$(upstream_sums fan <"$T/fanin-$prefix.upstream")"
  put "rss_fanin_$prefix" "$(hwm "$pid")"
}
# mem_streams: what a follower and a download cost layerd (issue 20), from its
# anonymous memory (RssAnon) in fresh processes in front of the fixture
# (tests/fixtures/upstream.py): once with 64 clients that never read following
# one download of a 16 MiB blob (their blocks full), once with 16 downloads in
# flight (the fixture trickles 128 KiB every 50 ms), each followed by one such
# client. Records "mem_follower KIB" and "mem_download KIB".
mem_streams() {
  local i n=64 m=16 ns a0 a1 b0 b1 D=()
  fixture_start memfx || { note "the memory fixture did not start"; return; }
  FX=http://127.0.0.1:$FIXTURE_PORT ns=127.0.0.1:$FIXTURE_PORT
  for ((i = 0; i <= m; i++)); do
    head -c $((16 << 20)) /dev/urandom >"$T/memblob"
    D[i]=$(put_blob "$T/memblob") || { note "the memory fixture took no blob"; stop_pid "$FIXTURE_PID"; return; }
  done
  rm -f "$T/memblob"
  layerd_start memf "$T/cache-memf" "$ns" "$FX"
  a0=$(hwm "$LAYERD_PID" | cut -d' ' -f3)
  "$ABUSE" stall "$LAYERD_PORT" "$n" 3 "/v2/bench/mem/blobs/${D[0]}?ns=$ns" >"$T/memf.out" 2>&1 &
  local ap=$!
  sleep 2.5
  a1=$(hwm "$LAYERD_PID" | cut -d' ' -f3)
  wait_exit "$ap" 10
  stop_pid "$LAYERD_PID"; rm -rf "$T/cache-memf"
  rules '[{"path": "/blobs/", "method": "GET", "trickle_ms": 50, "trickle_bytes": 131072}]' ||
    note "the memory fixture took no trickle rule"
  layerd_start memd "$T/cache-memd" "$ns" "$FX"
  b0=$(hwm "$LAYERD_PID" | cut -d' ' -f3)
  local aps=()
  for ((i = 1; i <= m; i++)); do
    "$ABUSE" stall "$LAYERD_PORT" 1 3 "/v2/bench/mem/blobs/${D[i]}?ns=$ns" >"$T/memd$i.out" 2>&1 &
    aps+=("$!")
  done
  sleep 2.5
  b1=$(hwm "$LAYERD_PID" | cut -d' ' -f3)
  for i in "${aps[@]}"; do wait_exit "$i" 10; done
  stop_pid "$LAYERD_PID"; rm -rf "$T/cache-memd"
  stop_pid "$FIXTURE_PID"
  local f=$(((a1 - a0) / n))
  put mem_follower "$f $n $(grep -o 'heads_200=[0-9]*' "$T/memf.out")"
  put mem_download "$(((b1 - b0) / m - f)) $m $(cat "$T"/memd*.out | grep -c 'heads_200=1')"
}
if section fanin "fan-in: $FANIN concurrent cold pulls of ${FANIN_MIB} MiB"; then
  fan_blob_bytes=0
  for d in "${FAN[@]:1}"; do
    fan_blob_bytes=$((fan_blob_bytes + $(stat -c %s "$V2/blobs/sha256/${d:7:2}/${d#sha256:}/data")))
  done
  put fanin_blob_bytes "$fan_blob_bytes"
  put fanin_blobs $((${#FAN[@]} - 1))
  layerd_start fanin "$T/cache-fanin"
  L_FAN=$LAYERD_PID
  fanin layerd "$T/hosts-fanin" "$L_FAN"
  stop_pid "$L_FAN"; rm -rf "$T/cache-fanin"
  stop_pid "${PROXY_PID:-}"
  PF=$(free_port)
  registry proxyfan "$PF" "proxy:
  remoteurl: $ORIGIN"
  PROXYF_PID=$REGISTRY_PID
  if wait_port "$PF" 15; then
    hosts_plain "$T/hosts-proxyfan" "$PF"
    fanin registry "$T/hosts-proxyfan" "$PROXYF_PID"
  else
    note "the fan-in proxy docker-registry did not listen"
  fi
  stop_pid "$PROXYF_PID"; rm -rf "$T/proxyfan-data"
  mem_streams
fi

# ---- 5. failover: the first endpoint refuses or never accepts ------------------------------
# failover NAME [DEAD_URL]: `layerd fetch` of the tag 101 times in one process
# through [DEAD_URL, origin] (or the origin alone); records each request's ms.
failover() {
  local name=$1 dead=${2:-} refs=() i
  {
    printf 'version: 1\nregistries:\n  "%s":\n    origin: %s\n' "$REG" "$ORIGIN"
    if [[ -n $dead ]]; then
      printf '    endpoints:\n      - url: %s\n        timeouts: {connect: 2s, response: 2s}\n      - %s\n' "$dead" "$ORIGIN"
    fi
  } >"$T/failover-$name.yaml"
  for ((i = 0; i < 101; i++)); do refs+=("$APP_REF"); done
  timeout 120 "$LAYERD" fetch --spec "$T/failover-$name.yaml" --log-level warning "${refs[@]}" \
    >"$T/failover-$name.out" 2>"$T/failover-$name.err"
  put "failover_ms_$name" "$(sed -n 's/.* status=200 .* ms=\([0-9]*\).*/\1/p' "$T/failover-$name.out" | paste -sd' ')"
  put "failover_notok_$name" "$(grep -vc ' status=200 ' "$T/failover-$name.out")"
  put "failover_endpoints_$name" "$(sed -n 's/.* endpoint=\([^ ]*\) .*/\1/p' "$T/failover-$name.out" | sort | uniq -c |
    awk '{ printf "%s%s×%s", sep, $1, $2; sep = ", " }')"
}
if section failover "failover, 101 manifest requests"; then
  failover direct
  failover refused "http://127.0.0.1:$(free_port)"
  PH=$(free_port)
  hung_listener "$PH" 300
  wait_port "$PH" 10 || note "the hung listener did not start"
  failover blackholed "http://127.0.0.1:$PH"
  # The same through `layerd serve`, requests spread over 4 s so that the
  # circuit breaker's back-off (1 s at first) ends in between: tag_ttl 0s makes
  # every HEAD by tag a revalidation upstream, through [blackholed, origin].
  # serve_loop PORT OUT: HEAD by tag every 50 ms for 4 s; "CODE SECONDS" lines in OUT.
  serve_loop() {
    local t_end=$((SECONDS + 4))
    while ((SECONDS < t_end)); do
      curl -s --max-time 10 -o /dev/null -I -H "Accept: $ACCEPT" -w '%{http_code} %{time_total}\n' \
        "http://127.0.0.1:$1/v2/bench/app/manifests/v1?$NSQ"
      sleep 0.05
    done >"$2"
  }
  # The baseline: the same loop through a layerd whose only endpoint is the origin.
  PF=$(free_port)
  cat >"$T/failover-base.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PF
  cache_dir: $T/cache-failover-base
registries:
  "$REG":
    origin: $ORIGIN
    tag_ttl: 0s
YAML
  layerd_serve "$T/failover-base.log" "$T/failover-base.yaml"
  L_FAIL=$LAYERD_PID
  if wait_port "$PF" 15; then
    serve_loop "$PF" "$T/failover-base.out"
    put failover_serve_base_ms "$(awk '$1 == 200 { printf "%s%.1f", sep, $2 * 1000; sep = " " }' "$T/failover-base.out")"
  fi
  stop_pid "$L_FAIL"
  PF=$(free_port)
  cat >"$T/failover-serve.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$PF
  cache_dir: $T/cache-failover
registries:
  "$REG":
    origin: $ORIGIN
    tag_ttl: 0s
    endpoints:
      - url: http://127.0.0.1:$PH
        timeouts: {connect: 2s, response: 2s}
      - $ORIGIN
YAML
  layerd_serve "$T/failover-serve.log" "$T/failover-serve.yaml"
  L_FAIL=$LAYERD_PID
  if wait_port "$PF" 15; then
    serve_loop "$PF" "$T/failover-serve.out"
    put failover_serve_ms "$(awk '$1 == 200 { printf "%s%.1f", sep, $2 * 1000; sep = " " }' "$T/failover-serve.out")"
    put failover_serve_notok "$(awk '$1 != 200' "$T/failover-serve.out" | wc -l)"
  else
    note "layerd serve for the failover run did not listen"
  fi
  stop_pid "$L_FAIL"
  stop_pid "$HUNG_PID"
fi

# ---- 6. abuse: idle and slow connections, non-reading and abandoning clients (issue 16) ----
# bench/abuse plays what any local process can do to a server on 127.0.0.1;
# layerd, nginx serving static files and nginx with proxy_cache in front of the
# same origin are measured under it, each where it applies (bench/README.md,
# "Abuse"). The numbers are reported, whatever they are: nothing here fails
# the run, and every wait is bounded (a server that never answers shows as
# timeouts and FAIL).
ABUSE_K=100  # fresh requests per path in the latency rows
# tf PID...: "THREADS FDS" summed over the processes PID...
tf() {
  local p t=0 f=0 x
  for p in "$@"; do
    x=$(awk '/^Threads:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
    t=$((t + ${x:-0}))
    f=$((f + $(ls "/proc/$p/fd" 2>/dev/null | wc -l)))
  done
  echo "$t $f"
}
# nginx_procs PID: the nginx master PID and its children (workers, cache helpers).
nginx_procs() { echo "$1"; ps -o pid= --ppid "$1" 2>/dev/null; }
# nginx_workers PID: the worker processes of the nginx master PID.
nginx_workers() { ps -o pid=,args= --ppid "$1" 2>/dev/null | awk '/worker process/ { print $1 }'; }
# abuse_nginx_start: a private nginx for this section, a fresh one per phase
# (so that a phase's peak RSS, threads and descriptors are its own), sized for
# the load as an operator facing it would size it (worker_connections,
# worker_rlimit_nofile; the bench's other nginx keeps 1024 connections a
# worker), its timeouts nginx's defaults (client_header_timeout 60 s,
# keepalive_timeout 75 s). Three servers: static files from $AN/root on $PAS,
# proxy_cache in front of the origin on $PAC, and in front of the trickling
# fixture on $PAF. The last sends an answer's head at once (postpone_output 0):
# by default nginx holds it until 1,460 body bytes are there, and the fixture
# trickles; the abandoning clients wait for the head. Its PID in $AN_PID;
# false unless all three listen.
abuse_nginx_start() {
  local nofile
  nofile=$(ulimit -Hn); [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
  mkdir -p "$AN/tmp" "$AN/logs" "$AN/cache"
  cat >"$AN/nginx.conf" <<NGINX
worker_processes auto;
worker_rlimit_nofile $nofile;
pid $AN/nginx.pid;
error_log $AN/logs/error.log;
events { worker_connections $((nofile / 2)); }
http {
  access_log off;
$(nginx_temp_paths "$AN")
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  proxy_cache_path $AN/cache levels=1:2 keys_zone=abuse:16m max_size=4g inactive=1h use_temp_path=off;
  proxy_cache abuse;
  proxy_cache_valid 200 206 1h;
  proxy_cache_lock on;
  proxy_http_version 1.1;
  server { listen 127.0.0.1:$PAS; root $AN/root; }
  server { listen 127.0.0.1:$PAC; location / { proxy_pass http://127.0.0.1:$PO; } }
  server { listen 127.0.0.1:$PAF; postpone_output 0; location / { proxy_pass http://127.0.0.1:$PF; } }
}
NGINX
  nginx -p "$AN" -c "$AN/nginx.conf" -g 'daemon off;' >"$AN/logs/stderr" 2>&1 &
  AN_PID=$!
  PIDS+=("$AN_PID")
  wait_port "$PAS" 10 && wait_port "$PAC" 10 && wait_port "$PAF" 10 ||
    { note "abuse: nginx did not listen: $(tail -n 2 "$AN/logs/error.log" "$AN/logs/stderr" 2>/dev/null | tr '\n' ' ')"; return 1; }
}
# abuse_latency SERVER PORT BLOB_PATH: ABUSE_K fresh GETs of /v2/ and of
# BLOB_PATH (a cached blob), first with nothing else open ("quiet"), then while
# ABUSE_IDLE idle and ABUSE_SLOW slowloris connections are held ("loaded").
abuse_latency() {
  local s=$1 port=$2 blob=$3 out=$T/abuse-latency-$1
  timeout 60 "$ABUSE" load "$port" /v2/ 0 0 0 /v2/ "$ABUSE_K" "$blob" "$ABUSE_K" >"$out.quiet" 2>&1
  timeout 90 "$ABUSE" load "$port" /v2/ "$ABUSE_IDLE" "$ABUSE_SLOW" 0 /v2/ "$ABUSE_K" "$blob" "$ABUSE_K" >"$out.loaded" 2>&1
  local kind f
  for kind in quiet loaded; do
    f=$out.$kind
    grep -q '^RESULT' "$f" || note "abuse: $s $kind latency run gave no result: $(tail -n 1 "$f")"
    awk -v p="abuse probe $s $kind" '/^RESULT / { n++; $1 = ""; $2 = ""; print p, (n == 1 ? "v2" : "blob") $0 }' "$f" >>"$R"
  done
  put "abuse held $s $(sed -n 's/^READY //p' "$out.loaded") $(sed -n 's/^END //p' "$out.loaded")"
}
# abuse_pulls SERVER HOSTS_DIR PORT [SERVER_PID]: ABUSE_PULL_RUNS warm pulls of
# the fan-in image without the load and as many with it held, alternating. A
# pull under load is bounded to 30 s; after one that fails the rest are not run.
abuse_pulls() {
  local s=$1 dir=$2 port=$3 i r pid
  for ((i = 1; i <= ABUSE_PULL_RUNS; i++)); do
    put "abuse pull $s quiet $(PULL_TIMEOUT=60 pull_ms "ab-$s-q$i" "$dir" "$FAN_REF")"
    "$ABUSE" load "$port" /v2/ "$ABUSE_IDLE" "$ABUSE_SLOW" 300 >"$T/abuse-hold-$s$i" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for 20 grep -q '^READY' "$T/abuse-hold-$s$i" || note "abuse: the load for $s's pull $i was not ready in 20 s"
    r=$(PULL_TIMEOUT=30 pull_ms "ab-$s-l$i" "$dir" "$FAN_REF")
    put "abuse pull $s loaded $r"
    stop_pid "$pid"
    if [[ $r == FAIL ]]; then
      note "abuse: a containerd pull through $s with the load held failed or took over 30 s; no more loaded runs"
      break
    fi
  done
}
# abuse_sample BUSY_PID SECONDS PID...: samples threads and descriptors of
# PID... every 0.1 s while BUSY_PID runs (60 s at most) and SECONDS after;
# prints "PEAK_THREADS PEAK_FDS LAST_THREADS LAST_FDS".
abuse_sample() {
  local busy=$1 after=$2 end=$((SECONDS + 60)) pt=0 pf=0 x=(0 0); shift 2
  while ((SECONDS < end)); do
    x=($(tf "$@"))
    ((x[0] > pt)) && pt=${x[0]}
    ((x[1] > pf)) && pf=${x[1]}
    if ((end > SECONDS + after)) && ! kill -0 "$busy" 2>/dev/null; then end=$((SECONDS + after)); fi
    sleep 0.1
  done
  echo "$pt $pf ${x[*]}"
}
# abuse_abandon SERVER PORT PATHS_FILE PID...: one GET per line of PATHS_FILE,
# each closed right after the answer's head (or after 5 s without one); the
# server's (PID...'s) threads and descriptors before, at their peak from then
# until 5 s after the clients left, and at that end.
abuse_abandon() {
  local s=$1 port=$2 paths=$3 before after pid; shift 3
  before=$(tf "$@")
  timeout 30 "$ABUSE" abandon "$port" 0 5 <"$paths" >"$T/abuse-abandon-$s" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  after=$(abuse_sample "$pid" 5 "$@")
  wait_exit "$pid" 30
  put "abuse abandon $s $(sed -n 's/^RESULT //p' "$T/abuse-abandon-$s") before=${before/ /,} peak_last=${after// /,}"
}

if section abuse "abuse: $ABUSE_IDLE idle + $ABUSE_SLOW slowloris connections, $ABUSE_CLIENTS non-reading and abandoning clients"; then
  put abuse_sizes "$ABUSE_IDLE $ABUSE_SLOW $ABUSE_CLIENTS $ABUSE_K $ABUSE_PULL_RUNS"
  AN=$T/nginx-abuse
  PAS=$(free_port) PAC=$(free_port) PAF=$(free_port)
  PF=
  if [[ ! -x $ABUSE ]]; then
    note "abuse: $ABUSE is not built (make $ABUSE)"
  elif fixture_start abuse-fx; then
    PF=$FIXTURE_PORT
    FX=http://127.0.0.1:$PF
    # The fixture's content: the largest manifest layerd takes (just under 4
    # MiB, padded in an annotation) as big/app:v1, and 2 × ABUSE_CLIENTS blobs
    # of 4 KiB that it trickles, a byte every 200 ms: a download stays in
    # flight for the whole phase (and well beyond).
    /usr/bin/python3 - "$T/abuse-big.json" <<'PY'
import json, sys
m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 1},
     "layers": [], "annotations": {"pad": "x" * (4 * 1024 * 1024 - 1000)}}
open(sys.argv[1], "w").write(json.dumps(m))
PY
    BIG_DIGEST=$(fixture_manifest "$FX" big/app v1 "$T/abuse-big.json")
    /usr/bin/python3 - "$PF" $((2 * ABUSE_CLIENTS)) >"$T/abuse-blobs" <<'PY' || note "abuse: the fixture did not take the blobs"
import hashlib, http.client, os, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
for _ in range(int(sys.argv[2])):
    b = os.urandom(4096)
    d = "sha256:" + hashlib.sha256(b).hexdigest()
    c.request("PUT", "/_fixture/blob/" + d, body=b)
    r = c.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(1)
    print(d)
PY
    fixture_json PUT "$FX/_fixture/rules" '[{"path": "/blobs/", "method": "GET", "trickle_ms": 200}]' ||
      note "abuse: the fixture did not take its rules"
  else
    note "abuse: tests/fixtures/upstream.py did not start: no manifest or abandoned-download rows"
  fi
  # nginx's static root: /v2/ (an index), the fan-in image's config blob, the 4 MiB manifest.
  mkdir -p "$AN/root/v2/bench/fan/blobs" "$AN/root/v2/big/app/manifests"
  echo '{}' >"$AN/root/v2/index.html"
  CFG=${FAN[1]}
  cp "$V2/blobs/sha256/${CFG:7:2}/${CFG#sha256:}/data" "$AN/root/v2/bench/fan/blobs/$CFG"
  [[ -f $T/abuse-big.json ]] && cp "$T/abuse-big.json" "$AN/root/v2/big/app/manifests/v1"
  chmod -R a+rX "$AN/root"
  put abuse_blob_bytes "$(stat -c %s "$AN/root/v2/bench/fan/blobs/$CFG")"

  if [[ -x $ABUSE ]]; then
    # 1. A new request under the load, and a containerd pull (warm: every blob
    # in the server's cache), layerd first.
    layerd_start abuse "$T/cache-abuse"
    L_AB=$LAYERD_PID
    r=$(PULL_TIMEOUT=120 pull_ms ab-warm-layerd "$T/hosts-abuse" "$FAN_REF")
    [[ $r == FAIL ]] && note "abuse: the warm-up pull through layerd failed"
    abuse_latency layerd "$LAYERD_PORT" "/v2/bench/fan/blobs/$CFG?$NSQ"
    abuse_pulls layerd "$T/hosts-abuse" "$LAYERD_PORT"
    stop_pid "$L_AB"
    rm -rf "$T/cache-abuse"
    if abuse_nginx_start; then
      hosts_plain "$T/hosts-abcache" "$PAC"
      r=$(PULL_TIMEOUT=120 pull_ms ab-warm-cache "$T/hosts-abcache" "$FAN_REF")
      [[ $r == FAIL ]] && note "abuse: the warm-up pull through nginx proxy_cache failed"
      curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$PAC/v2/"
      abuse_latency static "$PAS" "/v2/bench/fan/blobs/$CFG"
      abuse_latency cache "$PAC" "/v2/bench/fan/blobs/$CFG"
      abuse_pulls cache "$T/hosts-abcache" "$PAC"
    fi
    stop_pid "$AN_PID"
  fi

  if [[ -x $ABUSE && -n $PF && -n ${BIG_DIGEST:-} ]]; then
    # 2. Clients that ask for the 4 MiB manifest and never read: peak RSS of
    # a layerd that did nothing else (by digest, then by tag), and of nginx's
    # workers serving it as a static file.
    ALL="application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json"
    layerd_start abuse-rss "$T/cache-abuse-rss" "127.0.0.1:$PF" "$FX"
    L_AB=$LAYERD_PID
    FXQ="ns=127.0.0.1%3A$PF"
    for ref in "$BIG_DIGEST" v1; do
      c=$(curl -s --max-time 20 -o /dev/null -w '%{http_code} %{size_download}' -H "Accept: $ALL" \
        "http://127.0.0.1:$LAYERD_PORT/v2/big/app/manifests/$ref?$FXQ")
      [[ $c == "200 $(stat -c %s "$T/abuse-big.json")" ]] || note "abuse: the 4 MiB manifest ($ref) through layerd: $c"
    done
    put "abuse rss layerd idle $(hwm "$L_AB")"
    for ref in digest tag; do
      path=/v2/big/app/manifests/$([[ $ref == digest ]] && echo "$BIG_DIGEST" || echo v1)?$FXQ
      res=$(timeout 60 "$ABUSE" -H "Accept: $ALL" stall "$LAYERD_PORT" "$ABUSE_CLIENTS" 3 "$path" | sed -n 's/^RESULT //p')
      put "abuse rss layerd $ref $(hwm "$L_AB") $res"
    done
    stop_pid "$L_AB"
    rm -rf "$T/cache-abuse-rss"
    if abuse_nginx_start; then
      sleep 0.5
      w=($(nginx_workers "$AN_PID"))
      res=$(timeout 60 "$ABUSE" stall "$PAS" "$ABUSE_CLIENTS" 3 /v2/big/app/manifests/v1 | sed -n 's/^RESULT //p')
      sum=0
      for p in "${w[@]}"; do x=($(hwm "$p")); sum=$((sum + ${x[0]:-0})); done
      put "abuse rss static file $sum ${#w[@]} $res"
    fi
    stop_pid "$AN_PID"

    # 3. Downloads whose clients leave right after the answer's head, each a
    # distinct blob the upstream trickles: layerd, and nginx proxy_cache.
    mapfile -t AB_BLOBS <"$T/abuse-blobs"
    printf '%s\n' "${AB_BLOBS[@]:0:ABUSE_CLIENTS}" | sed "s|.*|/v2/ab/blobs/&?$FXQ|" >"$T/abuse-paths-layerd"
    printf '/v2/ab/blobs/%s\n' "${AB_BLOBS[@]:ABUSE_CLIENTS}" >"$T/abuse-paths-cache"
    layerd_start abuse-abandon "$T/cache-abuse-abandon" "127.0.0.1:$PF" "$FX"
    L_AB=$LAYERD_PID
    sleep 0.5
    abuse_abandon layerd "$LAYERD_PORT" "$T/abuse-paths-layerd" "$L_AB"
    put "abuse tmp layerd $(find "$T/cache-abuse-abandon" -path '*/tmp/*' -type f 2>/dev/null | wc -l)"
    stop_pid "$L_AB"
    rm -rf "$T/cache-abuse-abandon"
    if abuse_nginx_start; then
      sleep 0.5
      abuse_abandon cache "$PAF" "$T/abuse-paths-cache" $(nginx_procs "$AN_PID")
    fi
    stop_pid "$AN_PID"
  fi
  stop_pid "${FIXTURE_PID:-}"
fi

# ---- 7. cluster: layerd nodes behind one central cache (issue 20) --------------------------
# CLUSTER_NODES layerd instances, each its own port, cache and spec, whose
# registry lists a central cache first and the origin second, pull one image
# (bench/cluster:v1, CLUSTER_MIB) through bench/cpull, a client per node that
# asks as containerd does (the manifest, then the blobs 3 at a time). Two
# central caches, each fresh and empty for every scenario: nginx proxy_cache
# (proxy_cache_lock on) and docker-registry in proxy mode; two scenarios: every
# node at once, and rolling waves of 20 % (each wave starts when the one before
# has its image). From the central cache's access log and the origin's: the
# bytes each sent per blob, read as copies of it (bench/README.md, "Cluster").
# The baseline for node-to-node distribution: today every node fetches every
# blob from the central cache.
# cluster_log_blobs LOG MARK: from a central cache's or the origin's access log
# since MARK ("GET /v2/... HTTP/1.1" STATUS BYTES, combined format), one line
# "blob DIGEST GETS BYTES" per blob of bench/cluster, then "requests N".
cluster_log_blobs() {
  since "$1" "$2" | awk '
    match($0, /"(GET|HEAD) \/v2\/[^ ]+ HTTP\/[0-9.]+" [0-9]+ [0-9]+/) {
      split(substr($0, RSTART + 1, RLENGTH - 1), f, " "); n++
      if (f[1] == "GET" && index(f[2], "/v2/bench/cluster/blobs/") == 1) {
        d = substr(f[2], 25); sub(/\?.*/, "", d); g[d]++; b[d] += f[5] } }
    END { for (d in g) print "blob", d, g[d], b[d]; print "requests", n + 0 }'
}
# cluster_central_start KIND: a fresh, empty central cache of KIND (nginx or
# registry) on $PCC in front of the origin; its access log in $CLOG, its PID in
# $CC_PID. False when it does not listen.
cluster_central_start() {
  PCC=$(free_port)
  if [[ $1 == nginx ]]; then
    CN=$T/cluster-nginx
    rm -rf "$CN"; mkdir -p "$CN/tmp" "$CN/logs" "$CN/cache"
    CLOG=$CN/logs/access.log
    # proxy_cache_lock: one request fills an entry, the others wait for it
    # (nginx looks again every 500 ms); the lock's timeout and age are raised
    # from 5 s so that a slow fill under load is not fetched again past it.
    cat >"$CN/nginx.conf" <<NGINX
worker_processes auto;
pid $CN/nginx.pid;
error_log $CN/logs/error.log;
events { worker_connections 1024; }
http {
  log_format cluster '\$remote_addr - - [\$time_local] "\$request" \$status \$body_bytes_sent "\$upstream_cache_status"';
  access_log $CLOG cluster;
$(nginx_temp_paths "$CN")
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  proxy_cache_path $CN/cache levels=1:2 keys_zone=cluster:16m max_size=4g inactive=1h use_temp_path=off;
  proxy_cache cluster;
  proxy_cache_valid 200 206 1h;
  proxy_cache_lock on;
  proxy_cache_lock_timeout 60s;
  proxy_cache_lock_age 60s;
  proxy_http_version 1.1;
  server { listen 127.0.0.1:$PCC; location / { proxy_pass http://127.0.0.1:$PO; } }
}
NGINX
    nginx -p "$CN" -c "$CN/nginx.conf" -g 'daemon off;' >"$CN/logs/stderr" 2>&1 &
    CC_PID=$!
    PIDS+=("$CC_PID")
  else
    rm -rf "$T/clusterproxy-data" "$T/clusterproxy.log"
    CLOG=$T/clusterproxy.log
    registry clusterproxy "$PCC" "proxy:
  remoteurl: $ORIGIN"
    CC_PID=$REGISTRY_PID
  fi
  wait_port "$PCC" 15 || { note "cluster: the central $1 did not listen"; return 1; }
}
# cluster_nodes_start: CLUSTER_NODES fresh layerd instances with empty caches,
# central cache first and the origin second; ports in CL_PORT, PIDs in CL_PID.
cluster_nodes_start() {
  local i p
  CL_PORT=() CL_PID=()
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    p=$(free_port)
    rm -rf "$T/cluster-cache$i"
    cat >"$T/cluster$i.yaml" <<YAML
version: 1
agent:
  listen: 127.0.0.1:$p
  cache_dir: $T/cluster-cache$i
  default_registry: "$REG"
registries:
  "$REG":
    origin: $ORIGIN
    tag_ttl: 1h
    endpoints:
      - http://127.0.0.1:$PCC
      - $ORIGIN
YAML
    layerd_serve "$T/cluster$i.log" "$T/cluster$i.yaml"
    CL_PORT+=("$p") CL_PID+=("$LAYERD_PID")
  done
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    wait_port "${CL_PORT[$i]}" 15 || { note "cluster: layerd node $i did not listen"; diag_tail "$T/cluster$i.log"; return 1; }
  done
}
# cluster_pull FIRST COUNT: cpull on nodes FIRST..FIRST+COUNT-1, all started at
# once, each bounded to 300 s; waits for every one.
cluster_pull() {
  local i jobs=()
  for ((i = $1; i < $1 + $2 && i < CLUSTER_NODES; i++)); do
    timeout 300 "$CPULL" "${CL_PORT[$i]}" bench/cluster v1 "127.0.0.1%3A$PO" >"$T/cluster-pull$i.out" 2>&1 &
    jobs+=("$!")
    PIDS+=("$!")
  done
  for i in "${jobs[@]}"; do wait_exit "$i" 330; done
}
# cluster_run KIND SCENARIO: one run (scenario "cold": every node at once;
# "waves": CLUSTER_WAVE nodes at a time) through a fresh central cache of KIND
# and fresh nodes; "cluster ..." lines for report.py.
cluster_run() {
  local kind=$1 scen=$2 i t0 tw waves=() mo mc ok=0 rss=() ms=() pid x
  cluster_central_start "$kind" || { stop_pid "$CC_PID"; return 1; }
  cluster_nodes_start || { for pid in "${CL_PID[@]}"; do stop_pid "$pid"; done; stop_pid "$CC_PID"; return 1; }
  mo=$(mark "$T/origin.log")
  mc=$(mark "$CLOG")
  rm -f "$T"/cluster-pull*.out
  t0=$(now_ms)
  if [[ $scen == cold ]]; then
    cluster_pull 0 "$CLUSTER_NODES"
  else
    for ((i = 0; i < CLUSTER_NODES; i += CLUSTER_WAVE)); do
      tw=$(now_ms)
      cluster_pull "$i" "$CLUSTER_WAVE"
      waves+=($(($(now_ms) - tw)))
    done
  fi
  local total=$(($(now_ms) - t0))
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    grep -q '^RESULT .* failed=0$' "$T/cluster-pull$i.out" 2>/dev/null && ok=$((ok + 1))
    ms+=("$(sed -n 's/^RESULT ms=\([0-9.]*\) .*/\1/p' "$T/cluster-pull$i.out" 2>/dev/null | grep . || echo FAIL)")
    x=$(hwm "${CL_PID[$i]}" | cut -d' ' -f1)
    rss+=("${x:-FAIL}")  # a node that is gone has no /proc status
  done
  ((ok == CLUSTER_NODES)) ||
    note "cluster: $kind $scen: $((CLUSTER_NODES - ok)) of $CLUSTER_NODES nodes did not get the image: $(cat "$T"/cluster-pull*.out | grep -v '^RESULT' | sort | uniq -c | head -n 3 | tr -s ' \n' ' ')"
  local w=${waves[*]}
  put "cluster run $kind $scen total_ms=$total ok=$ok waves_ms=${w// /,}"
  put "cluster node_ms $kind $scen ${ms[*]}"
  put "cluster rss $kind $scen ${rss[*]}"
  sleep 1  # an access-log line is written when its request ends
  cluster_log_blobs "$CLOG" "$mc" | sed "s/^/cluster central $kind $scen /" >>"$R"
  cluster_log_blobs "$T/origin.log" "$mo" | sed "s/^/cluster origin $kind $scen /" >>"$R"
  # What the nodes did: their requests' outcomes and the endpoints they downloaded from.
  put "cluster layerd $kind $scen $(cat "$T"/cluster[0-9]*.log | sed -n 's/^<6>downloaded .* endpoint=\([^ ]*\).*/\1/p' |
    sed "s|^http://127.0.0.1:$PCC.*|central|; s|^$ORIGIN.*|origin|" | sort | uniq -c |
    awk '{ printf "%s%s=%s", sep, $2, $1; sep = "," }')"
  for pid in "${CL_PID[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${CL_PID[@]}"; do stop_pid "$pid"; done
  stop_pid "$CC_PID"
  rm -rf "$T"/cluster-cache* "$T/cluster-nginx" "$T/clusterproxy-data"
}

if section cluster "cluster: $CLUSTER_NODES layerd nodes behind a central cache, ${CLUSTER_MIB} MiB, all at once and in waves"; then
  CLUSTER_WAVE=$(((CLUSTER_NODES + 4) / 5))  # 20 %, rounded up
  layer_sizes "$CLUSTER_MIB"
  if [[ ! -x $CPULL ]]; then
    note "cluster: $CPULL is not built (make $CPULL)"
  elif /usr/bin/python3 "$BENCH/mkimage.py" image "$T/clu" v1 "${SIZES[@]}" >"$T/clu.digests" &&
    chmod -R a+rX "$T/clu" && skopeo_copy --dest-tls-verify=false --preserve-digests "oci:$T/clu:v1" "docker://$REG/bench/cluster:v1"; then
    rm -rf "$T/clu"
    mapfile -t CLU <"$T/clu.digests"
    put "cluster sizes $CLUSTER_NODES $CLUSTER_MIB $CLUSTER_WAVE"
    for d in "${CLU[@]:1}"; do put "cluster blob $d $(stat -c %s "$V2/blobs/sha256/${d:7:2}/${d#sha256:}/data")"; done
    for kind in nginx registry; do
      for scen in cold waves; do
        echo "bench: [$((SECONDS))s] cluster: $kind, $scen" >&2
        cluster_run "$kind" "$scen"
      done
    done
  else
    note "cluster: the image could not be made or pushed"; diag_tail "$T/skopeo.log"
    rm -rf "$T/clu"
  fi
fi

# ---- profiles ------------------------------------------------------------------------------
# profile NAME: where layerd's CPU time went: by library, the top functions by
# self time, and layerd's own functions with their callees' time included.
profile() {
  local f=$T/perf-$1.data
  [[ -s $f ]] || return 0
  {
    echo "PROFILE $1 dso"
    timeout 120 perf report -i "$f" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -n 6
    echo "PROFILE $1 self"
    timeout 120 perf report -i "$f" --no-children --sort dso,sym --stdio -g none --percent-limit 1 2>/dev/null |
      grep -E '^ +[0-9]' | head -n 15
    echo "PROFILE $1 children"
    timeout 120 perf report -i "$f" --children --sort dso,sym --stdio -g none --percent-limit 1 2>/dev/null |
      grep -E '^ +[0-9][0-9.]+% +[0-9.]+% +layerd ' | head -n 12
    echo "PROFILE $1 samples $(timeout 60 perf report -i "$f" --stdio --sort dso -g none 2>/dev/null |
      sed -n 's/^# Samples: *\([^ ]*\).*/\1/p' | head -n 1)"
  } >>"$R"
}
if ((PROFILE)); then
  for p in blob cold manifest manifest-tag; do profile "$p"; done
fi

put fact_load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
put total_s "$SECONDS"
/usr/bin/python3 "$BENCH/report.py" "$R" "$OUT" || bench_status=1
exit "$bench_status"
