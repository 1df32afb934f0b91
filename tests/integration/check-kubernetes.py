#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Structural checks of the rendered Kubernetes manifests (packaging/kubernetes).

    check-kubernetes.py RENDERED_YAML SPEC_OUT [SERVICEMONITOR_YAML]

RENDERED_YAML: the multi-document output of `kubectl kustomize` (or of --render
DIR, which applies the kustomization's namespace and images itself, for a
machine without kubectl). Prints one line per check, "1 what" or "0 what", for
the shell test to turn into TAP; writes the ConfigMap's spec to SPEC_OUT for
`layerd check-config`. With SERVICEMONITOR_YAML (optional, not in the
kustomization: it needs the Prometheus Operator's CRD), checks it selects the
rendered metrics Service.
"""
import os
import posixpath
import re
import sys

import yaml


def render(directory):
    """What `kubectl kustomize` does with this kustomization: resources, namespace, images."""
    with open(os.path.join(directory, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    docs = []
    for r in k["resources"]:
        with open(os.path.join(directory, r)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    images = {i["name"]: i for i in k.get("images", [])}
    for d in docs:
        if k.get("namespace") and d["kind"] != "Namespace":
            d["metadata"]["namespace"] = k["namespace"]
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            i = images.get(c["image"])
            if i:
                c["image"] = "%s:%s" % (i.get("newName", c["image"]), i["newTag"])
    return docs


results = []


def check(what, cond):
    results.append("%d %s" % (1 if cond else 0, what))


def under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def main():
    if sys.argv[1] == "--render":
        print(yaml.safe_dump_all(render(sys.argv[2])), end="")
        return
    with open(sys.argv[1]) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    spec_out = sys.argv[2]

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    check("every document has apiVersion, kind and metadata.name",
          all(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name") for d in docs))
    check("one Namespace, one ConfigMap, one DaemonSet, one Service",
          all(len(by_kind.get(k, [])) == 1 for k in ("Namespace", "ConfigMap", "DaemonSet", "Service")))
    ns = by_kind["Namespace"][0]["metadata"]["name"]
    check("every namespaced object is in namespace %s" % ns,
          all(d["metadata"].get("namespace") == ns for d in docs if d["kind"] != "Namespace"))

    cm = by_kind["ConfigMap"][0]
    ds = by_kind["DaemonSet"][0]
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})

    check("the DaemonSet's selector matches its pod labels",
          all(ds["spec"]["template"]["metadata"]["labels"].get(k) == v
              for k, v in ds["spec"]["selector"]["matchLabels"].items()))
    check("the container references a registry image with a tag (%s)" % c.get("image"),
          re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?/[a-z0-9./_-]+:[A-Za-z0-9_][A-Za-z0-9._-]*", c.get("image", "")) is not None)

    args = c.get("args", [])
    opt = lambda name: args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None
    check("the container runs layerd serve with --spec and --write-hosts",
          args[:1] == ["serve"] and opt("--spec") and opt("--write-hosts"))

    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    def volume_at(path):
        """The volume mounted at the deepest mount point holding PATH."""
        best = None
        for mp, m in mounts.items():
            if under(path, mp) and (best is None or len(mp) > len(best)):
                best = mp
        return (best, volumes.get(mounts[best]["name"])) if best else (None, None)

    spec_path = opt("--spec") or ""
    mp, v = volume_at(spec_path)
    key = posixpath.relpath(spec_path, mp) if mp else None
    check("--spec %s is the ConfigMap %s's key, mounted read-only" % (spec_path, cm["metadata"]["name"]),
          v is not None and v.get("configMap", {}).get("name") == cm["metadata"]["name"]
          and key in cm.get("data", {}) and mounts[mp].get("readOnly") is True)
    spec_text = cm.get("data", {}).get(key or "", "")
    with open(spec_out, "w") as f:
        f.write(spec_text)
    spec = yaml.safe_load(spec_text) or {}
    agent = spec.get("agent", {})

    cache_dir = agent.get("cache_dir", "")
    mp, v = volume_at(cache_dir)
    check("the spec's cache_dir %s is the hostPath /var/lib/layerd, writable" % cache_dir,
          mp == cache_dir and v is not None and v.get("hostPath", {}).get("path") == "/var/lib/layerd"
          and not mounts[mp].get("readOnly"))
    hosts = opt("--write-hosts") or ""
    mp, v = volume_at(hosts)
    check("--write-hosts %s is the hostPath /etc/containerd/certs.d, writable" % hosts,
          mp == hosts and v is not None and v.get("hostPath", {}).get("path") == "/etc/containerd/certs.d"
          and not mounts[mp].get("readOnly"))

    # containerd's socket, for hosts.containerd_version: auto and the start-up
    # node checks: --containerd-socket (default /run/containerd/containerd.sock)
    # is the node's socket itself, read-only (layerd calls the version service only).
    sock = opt("--containerd-socket") or "/run/containerd/containerd.sock"
    mp, v = volume_at(sock)
    hp = (v or {}).get("hostPath", {})
    check("--containerd-socket %s is the hostPath /run/containerd/containerd.sock (type Socket), read-only" % sock,
          mp == sock and hp.get("path") == "/run/containerd/containerd.sock" and hp.get("type") == "Socket"
          and mounts[mp].get("readOnly") is True)
    # containerd makes its socket root:root 0660: connect() needs write permission
    # on it, which uid 0 has as its owner (no capability needed); another uid only
    # through a supplemental group.
    psc = pod.get("securityContext", {})
    check("the container can connect to containerd's socket (uid 0, its owner, or supplementalGroups)",
          sc.get("runAsUser", psc.get("runAsUser")) == 0 or bool(psc.get("supplementalGroups")))

    # Every credentials_file the spec names (a commented example names the Secret's path).
    creds = re.findall(r"credentials_file:\s*(\S+)", spec_text)
    sec_mounts = [(mp, volumes[m["name"]]) for mp, m in mounts.items() if "secret" in volumes.get(m["name"], {})]
    check("the optional upstream Secret is mounted read-only where the spec's credentials_file points",
          len(sec_mounts) == 1 and sec_mounts[0][1]["secret"].get("optional") is True
          and mounts[sec_mounts[0][0]].get("readOnly") is True
          and creds and all(under(p, sec_mounts[0][0]) for p in creds))
    check("every volume mount names a volume", all(m["name"] in volumes for m in mounts.values()))

    # The metrics listener on the node's address (issue 19): $(HOST_IP) is the
    # pod's status.hostIP, which the kubelet substitutes into args.
    ml = [a for a in args if a.startswith("--metrics-listen=")]
    ml_value = ml[0].split("=", 1)[1] if len(ml) == 1 else ""
    env = {e.get("name"): e for e in c.get("env", [])}
    host_ip = env.get("HOST_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    m = re.fullmatch(r"\$\(HOST_IP\):([0-9]+)", ml_value)
    metrics_port = int(m.group(1)) if m else -1
    check("--metrics-listen=$(HOST_IP):PORT with HOST_IP from status.hostIP (%s)" % ml_value,
          m is not None and host_ip == "status.hostIP" and "metrics_listen" not in agent)

    listen = agent.get("listen", "")
    host, _, port = listen.rpartition(":")
    check("the spec listens on 127.0.0.1 only (%s)" % listen, host == "127.0.0.1" and port.isdigit())
    check("hostNetwork: true, so the node's containerd reaches it on the node's loopback",
          pod.get("hostNetwork") is True)
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    check("the declared container ports: http the spec's port, metrics --metrics-listen's",
          len(c.get("ports", [])) == 2 and ports.get("http") == int(port or 0) and ports.get("metrics") == metrics_port)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = c.get(probe, {}).get("httpGet", {})
        check("%s: GET %s on 127.0.0.1:%s" % (probe, path, port),
              g.get("path") == path and g.get("host") == "127.0.0.1" and str(g.get("port")) == port)
    ann = ds["spec"]["template"]["metadata"].get("annotations", {})
    check("Prometheus scrape annotations name the metrics port and /metrics",
          ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(metrics_port)
          and ann.get("prometheus.io/path") == "/metrics")

    svc = by_kind["Service"][0]
    sp = svc.get("spec", {})
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    check("the Service is headless (clusterIP: None) and selects the DaemonSet's pods",
          sp.get("clusterIP") == "None" and sp.get("selector")
          and all(pod_labels.get(k) == v for k, v in sp["selector"].items()))
    check("the Service's port metrics is %d and targets the container port metrics" % metrics_port,
          [(p.get("name"), p.get("port"), p.get("targetPort")) for p in sp.get("ports", [])]
          == [("metrics", metrics_port, "metrics")])
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            sm = yaml.safe_load(f)
        ep = (sm.get("spec", {}).get("endpoints") or [{}])[0]
        check("the ServiceMonitor selects the Service by its labels, in its namespace, port metrics, /metrics",
              sm.get("kind") == "ServiceMonitor" and sm.get("apiVersion") == "monitoring.coreos.com/v1"
              and all(svc["metadata"].get("labels", {}).get(k) == v
                      for k, v in sm["spec"]["selector"]["matchLabels"].items())
              and sm["spec"].get("namespaceSelector", {}).get("matchNames") == [svc["metadata"]["namespace"]]
              and ep.get("port") == "metrics" and ep.get("path") == "/metrics")

    check("priorityClassName: system-node-critical", pod.get("priorityClassName") == "system-node-critical")
    check("tolerates every taint (operator: Exists, no key)",
          any(t.get("operator") == "Exists" and "key" not in t and "effect" not in t
              for t in pod.get("tolerations", [])))
    ru = ds["spec"].get("updateStrategy", {})
    check("RollingUpdate with maxUnavailable and maxSurge 0 (one host port per node)",
          ru.get("type") == "RollingUpdate" and ru.get("rollingUpdate", {}).get("maxUnavailable")
          and str(ru.get("rollingUpdate", {}).get("maxSurge", 0)) == "0")

    res = c.get("resources", {})
    check("memory request and limit set, request <= limit, no CPU limit",
          res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory")
          and mib(res["requests"]["memory"]) <= mib(res["limits"]["memory"])
          and "cpu" not in res.get("limits", {}))
    check("memory request covers the measured 21 MiB peak RSS",
          mib(res.get("requests", {}).get("memory", "0")) >= 21)

    check("read-only root file system", sc.get("readOnlyRootFilesystem") is True)
    check("every capability dropped, none added",
          sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"))
    check("no privilege escalation, not privileged",
          sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged"))
    check("seccomp RuntimeDefault",
          (sc.get("seccompProfile") or pod.get("securityContext", {}).get("seccompProfile", {})).get("type")
          == "RuntimeDefault")
    check("no service account token, no host PID/IPC",
          pod.get("automountServiceAccountToken") is False and not pod.get("hostPID") and not pod.get("hostIPC"))
    print("\n".join(results))


def mib(q):
    m = re.fullmatch(r"([0-9]+)(Mi|Gi|M|G)?", str(q))
    if not m:
        return -1
    n = int(m.group(1))
    return {"Mi": n, "Gi": n * 1024, "M": n * 1e6 / 2**20, "G": n * 1e9 / 2**20, None: n / 2**20}[m.group(2)]


if __name__ == "__main__":
    main()
