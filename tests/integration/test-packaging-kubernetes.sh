#!/usr/bin/env bash
# packaging/kubernetes (issue 8): the manifests render with kustomize, and the
# DaemonSet agrees with the spec it ships: the spec is valid and the default
# one, its cache_dir and the --write-hosts directory are the hostPaths,
# containerd's socket is mounted read-only (hosts.containerd_version: auto),
# probes and port are the spec's loopback address, plus the issue's security
# and scheduling settings (check-kubernetes.py lists them). Issue 19: the
# metrics listener on the node's address ($(HOST_IP):9580 from status.hostIP),
# the headless Service over it, the optional ServiceMonitor (not applied: it
# needs the Prometheus Operator's CRD) and the Grafana dashboard.
#
# kubectl's client-side validation (`apply --dry-run=client`) is not run: it
# downloads the OpenAPI schema from an API server, in every kubectl version
# (Debian's kubernetes-client 1.20 too), and no cluster is reachable here; the
# structural checks stand in for it.
. "$(dirname "$0")/lib.sh"

require_tools /usr/bin/python3
/usr/bin/python3 -c 'import yaml' 2>/dev/null || { echo "1..0 # SKIP python3-yaml is not installed (make deps)"; exit 0; }

K=packaging/kubernetes
CHECK=tests/integration/check-kubernetes.py

if command -v kubectl >/dev/null; then
  timeout 60 kubectl kustomize "$K" >"$T/rendered.yaml" 2>"$T/kustomize.err"
  check "kubectl kustomize renders $K" test $? -eq 0
  # The checker's own rendering (for machines without kubectl) gives the same objects.
  /usr/bin/python3 "$CHECK" --render "$K" >"$T/own.yaml"
  same() {
    /usr/bin/python3 -c 'import sys, yaml
a, b = (sorted((yaml.safe_load_all(open(f))), key=lambda d: (d["kind"], d["metadata"]["name"])) for f in sys.argv[1:])
sys.exit(a != b)' "$T/rendered.yaml" "$T/own.yaml"
  }
  check "the checker's rendering of the kustomization equals kubectl's" same
else
  skip "kubectl kustomize renders $K" "unsupported: kubectl is not installed (not one of make deps' packages); the checker renders it"
  /usr/bin/python3 "$CHECK" --render "$K" >"$T/rendered.yaml"
fi
skip "kubectl client-side validation" "unsupported: needs an API server's OpenAPI schema, none reachable offline"

/usr/bin/python3 "$CHECK" "$T/rendered.yaml" "$T/spec.yaml" "$K/servicemonitor.yaml" >"$T/results" 2>"$T/check.err"
check "the rendered manifests parse (check-kubernetes.py ran)" test $? -eq 0
while read -r pass what; do
  if [[ $pass == 1 ]]; then ok "$what"; else not_ok "$what"; fi
done <"$T/results"
[[ -s $T/check.err ]] && sed 's/^/# /' "$T/check.err" >&2

"$LAYERD" check-config "$T/spec.yaml" >"$T/cm.norm" 2>"$T/cm.err"
check "the ConfigMap's spec passes layerd check-config" test $? -eq 0
"$LAYERD" check-config packaging/spec.yaml >"$T/default.norm" 2>&1
same_spec() { diff <(tail -n +2 "$T/cm.norm") <(tail -n +2 "$T/default.norm") >&2; }
check "the ConfigMap's spec is packaging/spec.yaml's (normalised)" same_spec

# The example Secret (not applied by the kustomization) is the type the spec's
# credentials_file reads, under the name the DaemonSet mounts.
secret_ok() {
  /usr/bin/python3 - "$K/secret.yaml" "$T/rendered.yaml" <<'PY'
import base64, json, sys, yaml
s = yaml.safe_load(open(sys.argv[1]))
ds = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d["kind"] == "DaemonSet"][0]
names = [v["secret"]["secretName"] for v in ds["spec"]["template"]["spec"]["volumes"] if "secret" in v]
auths = json.loads(s["stringData"][".dockerconfigjson"])["auths"]
ok = (s["type"] == "kubernetes.io/dockerconfigjson" and names == [s["metadata"]["name"]]
      and all(":" in base64.b64decode(a["auth"]).decode() for a in auths.values()))
sys.exit(0 if ok else 1)
PY
}
check "secret.yaml: a dockerconfigjson Secret, the one the DaemonSet mounts" secret_ok
not_applied() { grep -qx '  - daemonset.yaml' "$K/kustomization.yaml" && absent -x '  - secret.yaml' "$K/kustomization.yaml"; }
check "secret.yaml is not applied by the kustomization (no example credentials on a cluster)" not_applied
# The ServiceMonitor needs the Prometheus Operator's CRD: optional, with how to enable it.
sm_optional() {
  grep -qx '  - service.yaml' "$K/kustomization.yaml" && absent -x '  - servicemonitor.yaml' "$K/kustomization.yaml" &&
    grep -q 'add "- servicemonitor.yaml"' "$K/kustomization.yaml" && grep -q 'add "- servicemonitor.yaml"' "$K/servicemonitor.yaml"
}
check "service.yaml is applied; servicemonitor.yaml is not, and both files say how to enable it" sm_optional
grafana_ok() {
  /usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
ps = [p for p in d["panels"] if p["type"] != "row"]
sys.exit(not (d["uid"] and ps and all(t.get("expr") for p in ps for t in p["targets"])))' packaging/grafana/layerd.json
}
check "packaging/grafana/layerd.json is a dashboard whose panels all have queries (their metrics: test-metrics-listen.sh)" grafana_ok
finish
