#!/usr/bin/env bash
# `layerd hosts` from the outside: summaries, exit codes, dry run, diff,
# prune, and "nothing changed" when a target is in the way.
. "$(dirname "$0")/lib.sh"

SPEC=docs/example-spec.yaml
# containerd_version is auto in these specs: no socket and no containerd on
# PATH, so every run renders the same (1.6 rules) whatever this machine has
# installed. Detection itself is test-hosts-version.sh's.
lhosts() { PATH=/nonexistent "$LAYERD" hosts --containerd-socket "$T/no-containerd.sock" "$@"; }
HELM=docs/example-helm-values.yaml
D="$T/certs.d"
# A fingerprint of a tree: names, inodes, sizes, mtimes and contents.
snapshot() { (cd "$1" 2>/dev/null && find . -printf '%p %i %s %T@\n' | sort && find . -type f -exec md5sum {} + | sort); }

lhosts --spec "$SPEC" >/dev/null 2>"$T/err"; check "containerd format without --dir exits 2" test $? -eq 2
check "missing --dir is explained" grep -q -- "--dir is required" "$T/err"
lhosts --spec "$SPEC" --dir "$D" --format bogus >/dev/null 2>"$T/err"; check "unknown --format exits 2" test $? -eq 2
lhosts --help >"$T/out"; check "hosts --help exits 0" test $? -eq 0
check "hosts --help shows usage" grep -q "Usage: layerd hosts" "$T/out"
check "hosts --help explains --containerd-socket" grep -q -- "--containerd-socket PATH" "$T/out"

lhosts --spec "$SPEC" --dir "$D" --dry-run >"$T/out" 2>/dev/null
check "dry run exits 0" test $? -eq 0
check "dry run reports what it would write" grep -qx "dry run: 6 written, 0 unchanged, 0 pruned" "$T/out"
check "dry run creates nothing" test ! -e "$D"

lhosts --spec "$SPEC" --dir "$D" >"$T/out" 2>"$T/err"
check "first run exits 0" test $? -eq 0
check "first run writes every registry" grep -qx "6 written, 0 unchanged, 0 pruned" "$T/out"
check "without a containerd the files say which rules they follow" \
  grep -qx "# Registry docker.io, for containerd 1.6 (auto: not detected). Tried in order: layerd, the hosts below, then the server." "$D/docker.io/hosts.toml"
check "docker.io/hosts.toml exists" test -f "$D/docker.io/hosts.toml"
check "files start with the managed marker" bash -c "head -c 19 '$D/quay.io/hosts.toml' | grep -qx '# Managed by layerd'"
check "credentials_file is noted as not rendered" grep -q "note: docker.io: credentials_file" "$T/err"
check "no temporary files are left behind" bash -c "! find '$D' -name '.*layerd-*' | grep -q ."
before=$(snapshot "$D")
lhosts --spec "$SPEC" --dir "$D" >"$T/out" 2>/dev/null
check "second run changes nothing" grep -qx "0 written, 6 unchanged, 0 pruned" "$T/out"
check "unchanged files are not rewritten (inode, mtime)" test "$before" = "$(snapshot "$D")"

# A spec change: diff shows exactly it, and only changed files are written.
sed 's|ca_file: /etc/layerd/certs/mgmt-ca.pem|ca_file: /etc/layerd/certs/other-ca.pem|' "$SPEC" >"$T/spec2.yaml"
lhosts --spec "$T/spec2.yaml" --dir "$D" --diff >"$T/out" 2>/dev/null
check "a one-line change writes one file" grep -qx "1 written, 5 unchanged, 0 pruned" "$T/out"
check "--diff shows the old line" grep -qx -- '-  ca = "/etc/layerd/certs/mgmt-ca.pem"' "$T/out"
check "--diff shows the new line" grep -qx -- '+  ca = "/etc/layerd/certs/other-ca.pem"' "$T/out"
check "--diff names the file" grep -qx -- "--- $D/docker.io/hosts.toml" "$T/out"
check "the file has the new content" grep -q "other-ca.pem" "$D/docker.io/hosts.toml"

# Prune: only managed directories the spec no longer names.
mkdir -p "$D/handwritten.example.com" "$D/quay.io/extra"
printf 'server = "https://handwritten.example.com"\n' >"$D/handwritten.example.com/hosts.toml"
lhosts --spec "$HELM" --dir "$D" --prune --dry-run >"$T/out" 2>/dev/null
check "prune dry run reports and keeps" bash -c "grep -q ' 1 pruned' '$T/out' && test -f '$D/registry.example.com:5000/hosts.toml'"
lhosts --spec "$HELM" --dir "$D" --prune >"$T/out" 2>/dev/null
check "prune exits 0" test $? -eq 0
check "prune summary" grep -q ", 1 pruned$" "$T/out"
check "a managed dir the spec dropped is gone" test ! -e "$D/registry.example.com:5000"
check "a hand-written hosts.toml is never pruned" test -f "$D/handwritten.example.com/hosts.toml"
check "a dir with other files keeps them" test -d "$D/quay.io/extra"

# Replacing a hand-written file is allowed, and said.
printf 'server = "https://ghcr.io"\n' >"$D/ghcr.io/hosts.toml"
lhosts --spec "$HELM" --dir "$D" >/dev/null 2>"$T/err"
check "replacing an unmanaged file is noted" grep -q "ghcr.io/hosts.toml: replaced a file layerd did not write" "$T/err"

# Problems found before writing change nothing, exit 2.
rm -rf "$D"; lhosts --spec "$SPEC" --dir "$D" >/dev/null 2>&1
rm -rf "$D/ghcr.io"; printf 'in the way\n' >"$D/ghcr.io"
before=$(snapshot "$D")
lhosts --spec "$T/spec2.yaml" --dir "$D" >"$T/out" 2>"$T/err"
check "a file where a registry dir goes exits 2" test $? -eq 2
check "the obstacle is named" grep -q "ghcr.io: exists and is not a directory" "$T/err"
check "nothing changed after the refusal" test "$before" = "$(snapshot "$D")"
printf 'x\n' >"$T/notadir"
lhosts --spec "$SPEC" --dir "$T/notadir" >/dev/null 2>&1; check "--dir on a regular file exits 2" test $? -eq 2
printf 'registries: {docker.io: {mirror: maybe}}\n' >"$T/bad.yaml"
lhosts --spec "$T/bad.yaml" --dir "$T/fresh" >/dev/null 2>"$T/err"
check "a bad spec exits 2" test $? -eq 2
check "a bad spec is reported with its position" grep -q "bad.yaml:1:34: registries.docker.io.mirror: expected true or false" "$T/err"
check "a bad spec writes nothing" test ! -e "$T/fresh"

# --listen: the agent URL follows serve's --listen.
lhosts --spec "$SPEC" --dir "$T/l" --listen 127.0.0.1:6001 >/dev/null 2>&1
check "--listen sets layerd's host entry" grep -q '^\[host."http://127.0.0.1:6001"\]' "$T/l/docker.io/hosts.toml"
lhosts --spec "$SPEC" --dir "$T/l6" --listen '[::]:6002' >/dev/null 2>&1
check "a wildcard listen address becomes loopback" grep -q '^\[host."http://\[::1\]:6002"\]' "$T/l6/docker.io/hosts.toml"

# Single-file formats to standard output, each read back by an independent parser.
PY=/usr/bin/python3
lhosts --spec "$SPEC" --format docker >"$T/daemon.json" 2>"$T/err"
check "docker format is valid JSON with layerd first" $PY -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['registry-mirrors'][0]=='http://127.0.0.1:5080', d" "$T/daemon.json"
check "docker format says it is docker.io only" grep -q "apply to docker.io only" "$T/err"
lhosts --spec "$SPEC" --format talos >"$T/talos.yaml" 2>/dev/null
check "talos format is a YAML stream of Talos documents, layerd first" $PY -c "import yaml,sys; d=list(yaml.safe_load_all(open(sys.argv[1]))); m=[x for x in d if x['kind']=='RegistryMirrorConfig' and x['name']=='docker.io']; assert all(x['apiVersion']=='v1alpha1' for x in d) and len(m)==1 and m[0]['endpoints'][0]=={'url': 'http://127.0.0.1:5080'}, d" "$T/talos.yaml"
lhosts --spec "$SPEC" --format talos-legacy >"$T/talos-legacy.yaml" 2>/dev/null
check "talos-legacy format is the machine.registries patch" $PY -c "import yaml,sys; d=yaml.safe_load(open(sys.argv[1])); assert d['machine']['registries']['mirrors']['docker.io']['endpoints'][0]=='http://127.0.0.1:5080', d" "$T/talos-legacy.yaml"
lhosts --spec "$SPEC" --dir "$T/talos-dir" --format talos >/dev/null 2>&1
check "talos format with --dir writes talos-registries.yaml" cmp "$T/talos.yaml" "$T/talos-dir/talos-registries.yaml"
lhosts --spec "$SPEC" --format registries-conf >"$T/registries.conf" 2>/dev/null
lhosts --spec "$SPEC" --format registries-conf --listen 127.0.0.1:6003 >"$T/registries-6003.conf" 2>"$T/err"
check "registries-conf leaves no mirrored registry out" bash -c "! grep -q 'layerd left out' '$T/err'"
check "registries-conf format is valid TOML" $PY -c "import tomllib,sys; d=tomllib.load(open(sys.argv[1],'rb')); assert d['registry'][0]['prefix']=='docker.io', d" "$T/registries.conf"
check "registries-conf lists layerd first for every mirrored registry, by its namespace" $PY -c "
import tomllib,sys
d = tomllib.load(open(sys.argv[1],'rb'))
first = {r['prefix']: r['mirror'][0] for r in d['registry'] if r['prefix'] != 'registry.lab.example.com'}
want = {h: {'location': '127.0.0.1:6003/' + h.replace(':', '_'), 'insecure': True}
        for h in ['docker.io', 'ghcr.io', 'registry.k8s.io', 'quay.io', 'registry.example.com:5000']}
assert first == want, first" "$T/registries-6003.conf"

# containerRegistries beside localRegistryCache: the files are the golden ones
# (tests/golden/render/helm-nested, rendered for layerd at 127.0.0.1:5080, no containerd found).
lhosts --spec tests/golden/helm-nested.yaml --dir "$T/nested" --listen 127.0.0.1:5080 >"$T/out" 2>"$T/err"
check "hosts for the nested Helm layout exits 0" test $? -eq 0
check "hosts for the nested Helm layout writes the golden files" diff -ru tests/golden/render/helm-nested/containerd "$T/nested"

finish
