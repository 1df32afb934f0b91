#!/usr/bin/env bash
# hosts.containerd_version: auto, from the outside. A private containerd's
# socket is asked (PATH then holds no containerd, so the answer can only have
# come from the socket); without a socket, `containerd --version` from PATH
# (a stand-in script that claims 2.0.7, so the rules visibly change); with
# neither, the 1.6 rules and files that say so; a version in the spec is used
# as it is, and nothing is asked.
. "$(dirname "$0")/lib.sh"

require_root "containerd needs root"
for b in containerd ctr; do
  if ! command -v "$b" >/dev/null; then
    not_ok "$b is installed (make deps)"
    finish
    exit 1
  fi
done

SPEC=docs/example-spec.yaml
F=docker.io/hosts.toml
line() { sed -n 2p "$1/$F"; }
# The installed containerd's version, read here without layerd's parser:
# "containerd github.com/containerd/containerd 1.6.20~ds1 ..." -> 1.6.20.
WANT=$(containerd --version | awk '{ print $3 }' | sed -E 's/^v//; s/[~+-].*//')
check "containerd --version names a version ($WANT)" bash -c "[[ '$WANT' =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]"

containerd_start "$T/ctrd"
check "the private containerd answers on its socket" wait_for 20 ctrd_up

# ---- the socket -------------------------------------------------------------------------
PATH=/nonexistent "$LAYERD" hosts --spec "$SPEC" --dir "$T/sock" --containerd-socket "$SOCK" >"$T/out" 2>"$T/err"
check "layerd hosts with the socket exits 0" test $? -eq 0
check "the files are for the socket's containerd" \
  grep -qx "# Registry docker.io, for containerd $WANT. Tried in order: layerd, the hosts below, then the server." "$T/sock/$F"
check "one log line names the version and the socket" \
  grep -qx "<6>containerd version=$WANT source=socket socket=\"$SOCK\" reported=\"[^\"]*\"" "$T/err"
check "... and only one" test "$(grep -c 'containerd version' "$T/err")" -eq 1
cp "$T/err" "$T/err-socket"  # the line a question to containerd logs, for "is not asked" below

# ---- the binary on PATH ---------------------------------------------------------------------
mkdir -p "$T/bin"
printf '#!/bin/sh\necho "containerd github.com/containerd/containerd/v2 v2.0.7 4c3e5c7a"\n' >"$T/bin/containerd"
chmod +x "$T/bin/containerd"
PATH=$T/bin "$LAYERD" hosts --spec "$SPEC" --dir "$T/bin-out" --containerd-socket "$T/none.sock" >"$T/out" 2>"$T/err"
check "layerd hosts with only a binary exits 0" test $? -eq 0
check "the binary's version is used" grep -qF "for containerd 2.0.7. Tried" "$T/bin-out/$F"
check "... with its rules (dial_timeout from 2.0.7 on)" grep -qF 'dial_timeout = "1s"' "$T/bin-out/$F"
check "the log says binary, and why not the socket" \
  grep -q "^<6>containerd version=2.0.7 source=binary .*socket_error=\"$T/none.sock: No such file or directory\"" "$T/err"

# A socket that answers wins over the binary.
PATH=$T/bin "$LAYERD" hosts --spec "$SPEC" --dir "$T/both" --containerd-socket "$SOCK" >/dev/null 2>"$T/err"
check "the socket comes before the binary" grep -qF "for containerd $WANT. Tried" "$T/both/$F"

# A binary that hangs is not waited for long.
printf '#!/bin/sh\nexec sleep 30\n' >"$T/bin/containerd"
start=$SECONDS
PATH=$T/bin:/usr/bin:/bin "$LAYERD" hosts --spec "$SPEC" --dir "$T/hang" --containerd-socket "$T/none.sock" >/dev/null 2>"$T/err"
check "a hanging containerd --version costs at most a few seconds" test $((SECONDS - start)) -le 5
check "... and is said" grep -qF 'binary_error="containerd --version gave no answer within 2000 ms"' "$T/err"

# ---- neither ----------------------------------------------------------------------------------
PATH=/nonexistent "$LAYERD" hosts --spec "$SPEC" --dir "$T/none" --containerd-socket "$T/none.sock" >"$T/out" 2>"$T/err"
check "layerd hosts without any containerd exits 0" test $? -eq 0
check "the files follow the 1.6 rules and say so" \
  grep -qx "# Registry docker.io, for containerd 1.6 (auto: not detected). Tried in order: layerd, the hosts below, then the server." "$T/none/$F"
check "no dial_timeout under the 1.6 rules" eval 'grep -q "^\[host\." "$T/none/$F" && absent -r dial_timeout "$T/none"'
check "a warning says why and what applies" \
  grep -q '^<4>containerd version not detected .*binary_error="containerd not found on PATH": using the containerd 1.6 rules' "$T/err"
printf 'registries: {docker.io: {}}\nhosts: {containerd_version: "1.6"}\n' >"$T/v16.yaml"
printf 'registries: {docker.io: {}}\n' >"$T/auto.yaml"
PATH=/nonexistent "$LAYERD" hosts --spec "$T/v16.yaml" --dir "$T/v16" --containerd-socket "$T/none.sock" >/dev/null 2>&1
PATH=/nonexistent "$LAYERD" hosts --spec "$T/auto.yaml" --dir "$T/auto" --containerd-socket "$T/none.sock" >/dev/null 2>&1
check "undetected, the files are an explicit 1.6's apart from the note" \
  bash -c "sed 's/ (auto: not detected)//' '$T/auto/$F' | cmp - '$T/v16/$F'"

# ---- an explicit version ------------------------------------------------------------------------
printf 'registries: {docker.io: {}}\nhosts: {containerd_version: 1.7.32}\n' >"$T/explicit.yaml"
PATH=/nonexistent "$LAYERD" hosts --spec "$T/explicit.yaml" --dir "$T/explicit" --containerd-socket "$SOCK" >/dev/null 2>"$T/err"
check "an explicit version is used as it is" grep -qF "for containerd 1.7.32. Tried" "$T/explicit/$F"
check "... and containerd is not asked" \
  eval 'grep -q "containerd version" "$T/err-socket" && absent "containerd version" "$T/err"'
"$LAYERD" check-config "$SPEC" >"$T/out" 2>&1
check "check-config prints auto as written" grep -qx "  containerd_version: auto" "$T/out"

# ---- layerd serve --write-hosts -------------------------------------------------------------------
P=$(free_port)
PATH=/nonexistent "$LAYERD" serve --spec "$T/auto.yaml" --listen "127.0.0.1:$P" --cache-dir "$T/cache" \
  --write-hosts "$T/serve" --containerd-socket "$SOCK" >"$T/serve.log" 2>&1 &
pid=$!; PIDS+=("$pid")
check "serve --write-hosts writes for the socket's containerd" \
  wait_for 10 grep -sqF "for containerd $WANT. Tried" "$T/serve/$F"
check "serve logs the version once" grep -qF "containerd version=$WANT source=socket" "$T/serve.log"
"$LAYERD" serve --help >"$T/out"
check "serve --help explains --containerd-socket" grep -q -- "--containerd-socket PATH" "$T/out"
stop "$pid"

finish
