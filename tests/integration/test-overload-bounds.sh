#!/usr/bin/env bash
# Issue 16, item 4: upstream work is bounded. Each case failed on main as it
# was before (a443f0c), as said with it:
#
#  1. Downloads (agent.max_downloads: 4, agent.max_upstream_waits: 8,
#     agent.max_abandoned_downloads: 2, agent.abandoned_download_timeout: 3s).
#     40 clients ask at once for 40 distinct blobs the upstream trickles (one
#     byte every 100 ms) and leave after 2 s:
#      - at most 4 downloads start; every other request is a 503 within 1 s
#        (containerd tries its next host), not a 200 that trickles;
#      - layerd's threads (/proc/PID/status) and descriptors (/proc/PID/fd)
#        stay within a few of the caps, and tmp/ never holds more than 4 files;
#      - once the clients left, 2 of the 4 downloads go on for the cache (the
#        abandoned cap), and those are cancelled 3 s later (the deadline): tmp/
#        is empty again; /metrics counts each refusal by the cap that made it;
#      - the upstream well again, a normal pull of one of the blobs works.
#     Before, every request started a download of its own and went on after
#     its client left: 40 threads more (80 with their streams' wakers), 40
#     files growing in tmp/ (3 × 40 descriptors), no 503, nothing cancelled.
#  2. tmp/ counts against cache_max_size (1MiB here). Two 400 KiB blobs are
#     cached; a 700 KiB blob then downloads (trickled): the cache evicts to make
#     room for it, so blobs and downloads together stay under the limit. A
#     900 KiB blob asked meanwhile cannot have room (tmp/ holds 700 KiB of the
#     1 MiB): it is streamed through, whole and right, and not cached. Before,
#     nothing was evicted for a download (blobs and tmp/ held 1.5 MiB under a
#     1 MiB limit) and the 900 KiB blob was cached.
#  3. Out of descriptors (a hard limit for layerd, prlimit: its own descriptors
#     measured idle, the 16 connections it admits and 4 more, so it runs out
#     however many it keeps and however slow the upstream is): 30 clients
#     ask at once for 30 distinct trickled blobs, so sockets, cache files and
#     connections run out. That is an ordinary failure: layerd stays up, says
#     so in its log ("Too many open files", "out of file descriptors"), blames
#     no upstream for it (no circuit breaker opens: the upstream did nothing
#     wrong) and, once the clients are gone and the upstream is well, answers
#     /v2/ at once and a normal pull works. Before, a socket() that failed with
#     EMFILE was libcurl's "Couldn't connect to server": the endpoint's breaker
#     opened and every request to the registry got 503 "circuit open".
#
# Peers, on free loopback ports: a fault-injecting fixture
# (tests/fixtures/upstream.py) and a layerd per case, stopped at its end.
# Every wait is bounded; the file runs in about 40 s.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY
require_tools curl cmp sha256sum prlimit "$PY"

# ---- helpers -----------------------------------------------------------------------------
section() { LOG=$T/$1-layerd.log; DIAG_FILES=("$LOG" "$T/$1-fx.log"); }
# serving PORT: a check that layerd listens on PORT; false when not (the section ends
# there: the checks after it would only look at a layerd that is not there).
serving() {
  if wait_port "$1" 10; then ok "layerd serve listens"; else
    not_ok "layerd serve listens (the section's other checks cannot run)"
    diag_tail "${DIAG_FILES[@]}"
    return 1
  fi
}
threads_of() { sed -n 's/^Threads:[[:space:]]*//p' "/proc/$1/status"; }
fds_of() { ls "/proc/$1/fd" | wc -l; }
tmp_files() { find "$1/tmp" -type f | wc -l; }
# metric NAME: the value of the sample NAME (with its labels, if any) in layerd's /metrics.
metric() { curl -s --max-time 5 "$L/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
metric_is() { [[ $(metric "$1") == "$2" ]]; }
metric_at_least() { local v; v=$(metric "$1"); [[ -n $v && $v -ge $2 ]]; }
# trickled_upstream NAME N: the section's fixture (its port PF, base FX, registry NS)
# holding N random 64 KiB blobs ($T/NAME-<i>, digests in D) whose every GET trickles,
# one byte per 100 ms.
trickled_upstream() {
  local i
  checkd "the fixture upstream starts" fixture_start "$1-fx"
  PF=$FIXTURE_PORT FX=http://127.0.0.1:$FIXTURE_PORT NS=127.0.0.1:$FIXTURE_PORT D=()
  for ((i = 0; i < $2; i++)); do
    D[i]=$(random_file "$T/$1-$i" 65536)
    put_blob "$T/$1-$i" >/dev/null || break
  done
  checkd "the fixture holds $2 blobs" test "$i" = "$2"
  checkd "every blob GET trickles (one byte per 100 ms)" rules \
    '[{"path": "/blobs/", "method": "GET", "trickle_ms": 100}]'
}
# ask_all SECONDS: one client for each blob of D, all at once, each gone after SECONDS;
# client i writes "STATUS TIME" to $T/c<i>; their PIDs in CP.
ask_all() {
  local i
  CP=()
  for ((i = 0; i < ${#D[@]}; i++)); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time "$1" \
      "$L/v2/test/app/blobs/${D[i]}?ns=$NS" >"$T/c$i" 2>/dev/null &
    CP+=("$!")
  done
  PIDS+=("${CP[@]}")
}

# ==== 1. downloads, waits and abandoned downloads are capped ================================
downloads() {
  section downloads
  local N=40 i
  trickled_upstream downloads "$N"

  local PL CACHE=$T/downloads-cache
  PL=$(free_port)
  L=http://127.0.0.1:$PL
  write_spec "$T/downloads.yaml" "$PL" "$CACHE" <<YAML
  max_downloads: 4
  max_upstream_waits: 8
  max_abandoned_downloads: 2
  abandoned_download_timeout: 3s
registries:
  "$NS":
    origin: $FX
YAML
  layerd_serve "$LOG" "$T/downloads.yaml"
  local LPID=$LAYERD_PID
  serving "$PL" || return
  get "$L/v2/" "$T/v2" --max-time 5
  local th0 fd0
  th0=$(threads_of "$LPID") fd0=$(fds_of "$LPID")

  # 40 clients at once, each gone after 2 s.
  ask_all 2
  # Peaks while they are there.
  local th=0 fd=0 tf=0 x
  for ((i = 0; i < 15; i++)); do
    sleep 0.1
    x=$(threads_of "$LPID"); ((x > th)) && th=$x
    x=$(fds_of "$LPID"); ((x > fd)) && fd=$x
    x=$(tmp_files "$CACHE"); ((x > tf)) && tf=$x
  done
  for p in "${CP[@]}"; do wait "$p" 2>/dev/null; done
  echo "# threads $th0 -> $th, fds $fd0 -> $fd, tmp files $tf"

  local n503 slow503=0 n200=0
  n503=$(cat "$T"/c* | grep -c '^503 ')
  n200=$(cat "$T"/c* | grep -c '^200 ')
  slow503=$(cat "$T"/c* | awk '$1 == 503 && $2 >= 1.0' | wc -l)
  checkd "past the caps, requests get 503 ($n503 of $N), each within 1 s ($slow503 slower)" \
    eval '((n503 >= N - 4 && slow503 == 0))'
  checkd "at most 4 downloads were answered 200 ($n200), every other request 503" \
    eval '((n200 >= 1 && n200 <= 4 && n200 + n503 == N))'
  # Caps: 4 downloads, 8 waits (streams' wakers among them), MHD's and the cache's own.
  checkd "threads stay bounded: $th0 -> $th (at most +16)" test "$th" -le $((th0 + 16))
  # 40 client sockets (admission is not this case's) and a file and a socket per download.
  checkd "descriptors stay bounded: $fd0 -> $fd (at most +$((N + 12)))" test "$fd" -le $((fd0 + N + 12))
  checkd "tmp/ held at most 4 files ($tf)" eval '((tf >= 1 && tf <= 4))'
  checkd "/metrics counts the downloads refused" metric_at_least 'layerd_refused_total{cap="max_downloads"}' 1

  # The clients are gone: 2 go on (the abandoned cap), the others are cancelled...
  checkd "abandoned downloads past the cap are cancelled: tmp/ holds at most 2 files" \
    wait_for 3 eval '(($(tmp_files "$CACHE") <= 2))'
  checkd "/metrics: downloads cancelled by the abandoned cap" \
    metric_at_least 'layerd_refused_total{cap="max_abandoned_downloads"}' 1
  # ...and those 2 once their 3 s are over.
  checkd "abandoned downloads past their deadline are cancelled: tmp/ is empty" \
    wait_for 8 eval '(($(tmp_files "$CACHE") == 0))'
  checkd "/metrics: downloads cancelled by the deadline" \
    metric_at_least 'layerd_refused_total{cap="abandoned_download_timeout"}' 1
  checkd "/metrics: no download running or abandoned, no wait in use" \
    wait_for 3 eval 'metric_is layerd_downloads_running 0 && metric_is layerd_downloads_abandoned 0 &&
      metric_is layerd_upstream_waits 0'

  # The upstream is well again: a normal pull.
  checkd "the fixture stops trickling" rules '[]'
  get "$L/v2/test/app/blobs/${D[7]}?ns=$NS" "$T/got7" --max-time 10
  checkd "a normal pull works afterwards (got $code)" eval '[[ $code == 200 ]] && cmp -s "$T/downloads-7" "$T/got7"'
  checkd "layerd logged the cancellations" grep -q "agent.max_abandoned_downloads" "$LOG"
  stop "$LPID"
}

# ==== 2. downloads in progress count against cache_max_size =================================
tmp_room() {
  section tmp
  checkd "the fixture upstream starts" fixture_start tmp-fx
  PF=$FIXTURE_PORT
  FX=http://127.0.0.1:$PF
  local NS=127.0.0.1:$PF A B C D
  A=$(random_file "$T/A" 409600) B=$(random_file "$T/B" 409600)
  C=$(random_file "$T/C" 716800) D=$(random_file "$T/D" 921600)
  checkd "the fixture holds 4 blobs" eval 'for f in A B C D; do put_blob "$T/$f" >/dev/null || exit 1; done'
  checkd "blob C trickles" rules "[{\"path\": \"/blobs/$C\", \"method\": \"GET\", \"trickle_ms\": 50}]"

  local PL CACHE=$T/tmp-cache
  PL=$(free_port)
  L=http://127.0.0.1:$PL
  write_spec "$T/tmp.yaml" "$PL" "$CACHE" <<YAML
  cache_max_size: 1MiB
registries:
  "$NS":
    origin: $FX
YAML
  layerd_serve "$LOG" "$T/tmp.yaml"
  local LPID=$LAYERD_PID
  serving "$PL" || return
  local f
  for f in A B; do
    get "$L/v2/test/app/blobs/${!f}?ns=$NS" "$T/got$f" --max-time 10
    checkd "blob $f (400 KiB) is pulled and cached" eval '[[ $code == 200 ]] && wait_for 5 in_cache "$CACHE" "${!f}"'
  done

  # C (700 KiB) downloads: room is made for it while it does.
  curl -s -o /dev/null --max-time 2 "$L/v2/test/app/blobs/$C?ns=$NS" &
  PIDS+=("$!")
  checkd "C downloads (its file is in tmp/)" wait_for 5 eval '(($(tmp_files "$CACHE") == 1))'
  evicted() { ! in_cache "$CACHE" "$A" || ! in_cache "$CACHE" "$B"; }
  checkd "a cached blob is evicted to make room for C's download" wait_for 3 evicted
  # What is on disk and what C still takes fit under 1 MiB.
  local on_disk
  on_disk=$(find "$CACHE/blobs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  checkd "blobs ($on_disk bytes) and C's download (716800) fit under 1 MiB" \
    test $((on_disk + 716800)) -le 1048576

  # D (900 KiB) cannot have room while C downloads: streamed through, not cached.
  get "$L/v2/test/app/blobs/$D?ns=$NS" "$T/gotD" --max-time 10
  checkd "D (900 KiB) is served whole and right (got $code)" eval '[[ $code == 200 ]] && cmp -s "$T/D" "$T/gotD"'
  checkd "D was streamed through, not cached" eval 'grep -q "streaming through: ns=$NS repo=test/app digest=$D" "$LOG" &&
    ! in_cache "$CACHE" "$D"'
  checkd "/metrics counts the download refused room in tmp/" metric_at_least layerd_cache_tmp_refused_total 1
  stop "$LPID"
}

# ==== 3. out of descriptors: an ordinary failure ==========================================
descriptors() {
  section fds
  trickled_upstream fds 30
  local FRESH
  FRESH=$(random_file "$T/fresh" 65536)
  checkd "and one more, asked for only at the end" put_blob "$T/fresh"
  local PL CACHE=$T/fds-cache
  PL=$(free_port)
  L=http://127.0.0.1:$PL
  write_spec "$T/fds.yaml" "$PL" "$CACHE" <<YAML
  abandoned_download_timeout: 1s
registries:
  "$NS":
    origin: $FX
YAML
  # layerd's own descriptors, measured idle; the limit is those, the 16 connections it
  # admits and 4 more, so the clients' downloads run out, however many layerd keeps.
  layerd_serve "$T/fds-base.log" "$T/fds.yaml"
  local BPID=$LAYERD_PID base
  wait_port "$PL" 10 && sleep 0.5
  base=$(fds_of "$BPID")
  stop "$BPID"
  echo "# layerd's own descriptors: $base; the limit: $((base + 20))"
  prlimit --nofile=$((base + 20)):$((base + 20)) "$LAYERD" serve --spec "$T/fds.yaml" >"$LOG" 2>&1 &
  local LPID=$!
  PIDS+=("$LPID")
  serving "$PL" || return
  ask_all 3
  for p in "${CP[@]}"; do wait "$p" 2>/dev/null; done
  checkd "layerd is still running" kill -0 "$LPID"
  checkd "descriptors ran out, and the log says so" wait_for 5 grep -qE "Too many open files|out of file descriptors" "$LOG"
  checkd "no upstream was blamed for it (no circuit breaker opened)" absent "circuit open" "$LOG"
  checkd "the fixture stops trickling" rules '[]'
  # The clients are gone; their downloads end (abandoned: cancelled past the cap, the rest
  # past their 1 s deadline) and free their descriptors.
  sleep 2
  get "$L/v2/" "$T/fds-v2" --max-time 5
  checkd "/v2/ answers at once afterwards ($code in $ms ms)" eval '[[ $code == 200 ]] && ((ms < 1000))'
  get "$L/v2/test/app/blobs/$FRESH?ns=$NS" "$T/fds-got" --max-time 10
  checkd "a normal pull works afterwards (got $code)" eval '[[ $code == 200 ]] && cmp -s "$T/fresh" "$T/fds-got"'
  stop "$LPID"
}

downloads
tmp_room
descriptors
finish
