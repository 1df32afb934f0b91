#!/usr/bin/env bash
# The layerd binary from the outside: subcommands, exit codes, check-config
# output, and `serve` on loopback with the built-in spec and with overrides.
. "$(dirname "$0")/lib.sh"

# ---- command line ----------------------------------------------------------------
"$LAYERD" --help >"$T/out" 2>&1; check "--help exits 0" test $? -eq 0
check "--help lists the commands" grep -q "check-config" "$T/out"
"$LAYERD" >/dev/null 2>&1; check "no command exits 2" test $? -eq 2
"$LAYERD" frobnicate >/dev/null 2>"$T/err"; check "unknown command exits 2" test $? -eq 2
check "unknown command is named" grep -q 'unknown command "frobnicate"' "$T/err"
for c in serve check-config version; do
  "$LAYERD" $c --help >"$T/out" 2>&1; check "$c --help exits 0" test $? -eq 0
  check "$c --help shows usage" grep -q "Usage: layerd $c" "$T/out"
done
"$LAYERD" version >"$T/out"; check "version exits 0" test $? -eq 0
check "version names layerd and libyaml" grep -q "^layerd .*" "$T/out"
"$LAYERD" serve --bogus >/dev/null 2>&1; check "serve with an unknown option exits 2" test $? -eq 2
"$LAYERD" serve --listen nonsense >/dev/null 2>"$T/err"; check "serve --listen nonsense exits 2" test $? -eq 2
"$LAYERD" serve --cache-dir relative/dir >/dev/null 2>&1; check "serve --cache-dir relative exits 2" test $? -eq 2
"$LAYERD" serve --log-level loud >/dev/null 2>&1; check "serve --log-level loud exits 2" test $? -eq 2

# ---- check-config ------------------------------------------------------------------
"$LAYERD" check-config docs/example-spec.yaml >"$T/out" 2>"$T/err"
check "check-config example-spec.yaml exits 0" test $? -eq 0
check "check-config prints the normalised model" grep -q "^registries:" "$T/out"
check "check-config reports the form" grep -q "valid (layerd form)" "$T/out"
"$LAYERD" check-config docs/example-helm-values.yaml >"$T/out" 2>&1
check "check-config example-helm-values.yaml exits 0" test $? -eq 0
check "Helm form is recognised" grep -q "valid (Helm values form)" "$T/out"
# containerRegistries beside localRegistryCache (the chart's layout): the
# normalised model has the central cache first (golden: tests/golden/helm-nested.out).
"$LAYERD" check-config tests/golden/helm-nested.yaml >"$T/nested.out" 2>&1
check "check-config helm-nested.yaml exits 0" test $? -eq 0
{ echo "# tests/golden/helm-nested.yaml: valid (Helm values form), normalised"; cat tests/golden/helm-nested.out; } >"$T/nested.want"
check "check-config of the nested Helm layout matches the golden output" diff -u "$T/nested.want" "$T/nested.out"
# Its output is a spec of its own.
sed 1d "$T/out" >"$T/printed.yaml"
"$LAYERD" check-config "$T/printed.yaml" >/dev/null 2>&1; check "printed model passes check-config" test $? -eq 0

cat >"$T/broken.yaml" <<'YAML'
agent:
  listen: 127.0.0.1:5080
registries:
  docker.io:
    endpoints:
      - url: https://zot.example.com
      - url: "zot:"
YAML
"$LAYERD" check-config "$T/broken.yaml" >"$T/out" 2>"$T/err"
check "check-config on a broken spec exits 2" test $? -eq 2
check "error names file:line:col and the key" \
  grep -qxF "$T/broken.yaml:7:14: registries.docker.io.endpoints[1].url: not a URL: \"zot:\"" "$T/err"
check "error count is printed" grep -qx "1 error" "$T/err"
check "nothing printed on stdout for a broken spec" test ! -s "$T/out"
"$LAYERD" check-config "$T/missing.yaml" >/dev/null 2>"$T/err"; check "check-config on a missing file exits 2" test $? -eq 2
check "missing file error is clear" grep -qF "$T/missing.yaml: cannot open: No such file or directory" "$T/err"
"$LAYERD" check-config >/dev/null 2>&1; check "check-config without FILE exits 2" test $? -eq 2

# ---- serve -------------------------------------------------------------------------
port=$(free_port)
# A node whose containerd reads the hosts files: the start-up checks have nothing to say.
printf 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n' \
  >"$T/containerd.toml"
"$LAYERD" serve --listen "127.0.0.1:$port" --cache-dir "$T/cache" --containerd-config "$T/containerd.toml" \
  >"$T/serve.log" 2>&1 &
pid=$!; PIDS+=("$pid")
check "serve (built-in spec) listens" wait_port "$port"
check "serve created the cache directory" test -d "$T/cache"
check "serve logs with a level prefix" grep -q "^<6>listening address=127.0.0.1 port=$port" "$T/serve.log"
# The negative log checks below stand on a line of the same <N> format that must be there.
logs_but() { grep -q "^<6>listening address=127.0.0.1 port=$port" "$T/serve.log" && absent "$1" "$T/serve.log"; }
check "a clean start logs no warnings" logs_but '^<[0-4]>'

code=$(http GET "http://127.0.0.1:$port/v2/")
check "GET /v2/ is 200" test "$code" = 200
check "GET /v2/ carries Docker-Distribution-API-Version" grep -qi '^Docker-Distribution-API-Version: registry/2.0' "$T/headers"
code=$(http HEAD "http://127.0.0.1:$port/v2/")
check "HEAD /v2/ is 200" test "$code" = 200
# A registry the spec does not mirror: refused at once, no outbound request (no open proxy).
code=$(http GET "http://127.0.0.1:$port/v2/library/busybox/manifests/latest?ns=registry.example.invalid")
check "a registry the spec does not mirror is a fast 404" test "$code" = 404
check "404 carries a distribution error body" grep -q '"errors"' "$T/body"
check "... with code NAME_UNKNOWN" grep -q NAME_UNKNOWN "$T/body"
code=$(http PUT "http://127.0.0.1:$port/v2/library/busybox/manifests/latest")
check "PUT is 405" test "$code" = 405
check "405 body says UNSUPPORTED" grep -q UNSUPPORTED "$T/body"
check "405 says what is allowed" grep -qi '^Allow: GET, HEAD' "$T/headers"
# A client cannot forge log lines: ns is checked before it is logged, and
# control characters never reach the log.
code=$(http GET "http://127.0.0.1:$port/v2/a/manifests/latest?ns=x%0A%3C0%3Eforged")
check "an ns that is not a host name is a 400" test "$code" = 400
check "no forged log line" logs_but '^<0>forged'
code=$(http GET "http://127.0.0.1:$port/v2/a%0A%3C0%3Eforged/manifests/latest?ns=registry.example.invalid")
check "a name with a newline is a 400" test "$code" = 400
check "still no forged log line" logs_but '^<0>forged'
kill -HUP "$pid"; sleep 0.2
code=$(http GET "http://127.0.0.1:$port/v2/")
check "SIGHUP does not stop the server" test "$code" = 200

# A second instance on the same port must fail, not share it.
"$LAYERD" serve --listen "127.0.0.1:$port" --cache-dir "$T/cache2" >/dev/null 2>"$T/err2"
check "serve on a busy port exits 1" test $? -eq 1
check "busy port is reported" grep -q "cannot listen" "$T/err2"

# One owner per cache directory: a second agent, or an offline command, is refused.
"$LAYERD" serve --listen "127.0.0.1:$(free_port)" --cache-dir "$T/cache" >/dev/null 2>"$T/err3"
check "a second serve on the same cache exits 1" test $? -eq 1
check "the held cache is named" grep -q "$T/cache: in use by another layerd process" "$T/err3"
"$LAYERD" cache stats --cache-dir "$T/cache" --admin-socket '' >/dev/null 2>"$T/err4"
check "cache stats on a cache in use, not asking the agent, exits 1" test $? -eq 1
"$LAYERD" cache stats --cache-dir "$T/cache" >"$T/out4" 2>&1
check "cache stats on a cache in use asks the agent (its admin socket)" grep -qx "blobs 0" "$T/out4"

kill -TERM "$pid"
wait_exit "$pid" 10; check "SIGTERM stops serve with status 0" test "$status" = 0

# layerd cache, offline.
"$LAYERD" cache stats --cache-dir "$T/cache" >"$T/out" 2>&1
check "cache stats after the agent stopped exits 0" test $? -eq 0
check "cache stats counts an empty store" grep -qx "blobs 0" "$T/out"
check "the store has its layout" test -f "$T/cache/VERSION" -a -d "$T/cache/blobs/sha256" -a -d "$T/cache/tmp"
"$LAYERD" cache ls --cache-dir "$T/cache" >"$T/out"; check "cache ls on an empty store prints nothing" test ! -s "$T/out"
"$LAYERD" cache verify --cache-dir "$T/cache" >"$T/out"; check "cache verify exits 0 on a clean store" test $? -eq 0
check "cache verify summary" grep -qx "0 checked, 0 quarantined" "$T/out"
# Blobs put in place by hand: one good (2 MiB), one whose content is not its name.
put_blob() {  # put_blob NAME_SOURCE_FILE CONTENT_FILE
  local hex; hex=$(sha256sum "$1" | cut -c1-64)
  mkdir -p "$T/cache/blobs/sha256/${hex:0:2}"; cp "$2" "$T/cache/blobs/sha256/${hex:0:2}/$hex"; echo "$hex"
}
head -c 2097152 /dev/zero >"$T/good"; printf 'hello\n' >"$T/hello"; printf 'jello\n' >"$T/jello"
good=$(put_blob "$T/good" "$T/good"); bad=$(put_blob "$T/hello" "$T/jello")
"$LAYERD" cache ls --cache-dir "$T/cache" >"$T/out"
check "cache ls lists both blobs" test "$(wc -l <"$T/out")" -eq 2
check "cache ls shows digest and size" grep -qx "sha256:$good 2097152" "$T/out"
"$LAYERD" cache verify --cache-dir "$T/cache" >"$T/out"; check "cache verify exits 1 when it quarantines" test $? -eq 1
check "cache verify names the bad blob" grep -q "^quarantined sha256:$bad: its content is sha256:$(sha256sum "$T/jello" | cut -c1-64)$" "$T/out"
check "the bad blob is in quarantine" test -f "$T/cache/quarantine/sha256-$bad" -a ! -e "$T/cache/blobs/sha256/${bad:0:2}/$bad"
printf 'agent:\n  cache_dir: %s\n  cache_max_size: 1MiB\nregistries: {docker.io: {}}\n' "$T/cache" >"$T/small.yaml"
"$LAYERD" cache gc --spec "$T/small.yaml" >"$T/out"; check "cache gc exits 0" test $? -eq 0
check "cache gc evicts down to the spec's limit" grep -q "^1 evicted (2097152 bytes); 0 blobs, 0 bytes left; limit 1MiB$" "$T/out"
"$LAYERD" cache frobnicate --cache-dir "$T/cache" >/dev/null 2>&1; check "unknown cache command exits 2" test $? -eq 2
"$LAYERD" cache --help >"$T/out"; check "cache --help shows usage" grep -q "Usage: layerd cache" "$T/out"

# The spec's listen address, and --listen overriding it.
p1=$(free_port); p2=$(free_port)
cat >"$T/spec.yaml" <<YAML
agent:
  listen: 127.0.0.1:$p1
  cache_dir: $T/speccache
registries:
  docker.io: {}
YAML
"$LAYERD" serve --spec "$T/spec.yaml" >"$T/serve2.log" 2>&1 &
pid=$!; PIDS+=("$pid")
check "serve --spec listens on the spec's address" wait_port "$p1"
check "serve --spec uses the spec's cache_dir" test -d "$T/speccache"
kill -TERM "$pid"; wait_exit "$pid" 10
"$LAYERD" serve --spec "$T/spec.yaml" --listen "127.0.0.1:$p2" >"$T/serve3.log" 2>&1 &
pid=$!; PIDS+=("$pid")
check "--listen overrides the spec" wait_port "$p2"
check "the spec's port is then unused" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$p1) 2>/dev/null"
kill -TERM "$pid"; wait_exit "$pid" 10

"$LAYERD" serve --spec "$T/broken.yaml" >/dev/null 2>"$T/err"
check "serve with a broken spec exits 2" test $? -eq 2
check "serve reports the spec error with its position" grep -q "broken.yaml:7:14:" "$T/err"

# A cache directory that cannot be created is a runtime failure.
touch "$T/file"
"$LAYERD" serve --listen "127.0.0.1:$(free_port)" --cache-dir "$T/file/cache" >/dev/null 2>"$T/err"
check "serve with an impossible cache dir exits 1" test $? -eq 1
check "cache dir failure is reported" grep -q "cannot open the cache: $T/file/cache: cannot create: Not a directory" "$T/err"

finish
