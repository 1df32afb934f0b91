#!/usr/bin/python3
"""Independent check of the rendered golden files (tests/unit/hostsconfig/test-render.c).

Every file under tests/golden/render/<case>/<format>/ is parsed by another
implementation than the one that wrote it: tomllib (hosts.toml,
registries.conf), json (daemon.json) and PyYAML (Talos's documents and its
older patch). Every Talos document is checked against the fields Talos
defines for its kind (TALOS_FIELDS below, from siderolabs/talos
pkg/machinery/config/types/cri/registry_mirror.go and registry_tls.go):
Talos refuses a machine config with an unknown key. For
render.yaml the meaning is asserted too, against values written out below
(not read from the C code): servers, host order, capabilities, TLS keys,
header strings byte for byte, dial_timeout per containerd version, Talos
endpoints, registries.conf mirrors, Docker's mirror list. For the example
specs a few key facts are asserted; for talos-tls.yaml, the CA's contents
against tests/golden/certs/talos-ca.pem.

Prints TAP. Usage: check.py [GOLDEN_DIR] (default: the directory of this file).
"""
import json
import os
import re
import ssl
import sys
import tomllib

import yaml

MARKER = "# Managed by layerd"
AGENT = "http://127.0.0.1:5080"
PULL_RESOLVE = ["pull", "resolve"]

# What containerd's hosts.go reads (remotes/docker/config/hosts.go); anything
# else in a file is a renderer bug. dial_timeout exists from 2.0.7 on.
HOST_KEYS = {"capabilities", "ca", "client", "skip_verify", "override_path", "header", "dial_timeout"}
ROOT_KEYS = HOST_KEYS | {"server", "host"}

# Case -> the containerd version it was rendered for, as a comparable tuple.
CASES = {
    "example-spec": (1, 6, 0),
    "example-helm-values": (1, 6, 0),
    "helm-nested": (1, 6, 0),
    "render-1.6": (1, 6, 0),
    "render-1.7.32": (1, 7, 32),
    "render-2.0.7": (2, 0, 7),
}
CASES["talos-tls"] = (1, 6, 0)
ALL_FORMATS = ["containerd", "docker", "registries-conf", "talos", "talos-legacy"]
FORMATS = {
    "example-spec": ALL_FORMATS,
    "example-helm-values": ALL_FORMATS,
    "helm-nested": ["containerd"],
    "render-1.6": ALL_FORMATS,
    "render-1.7.32": ["containerd"],
    "render-2.0.7": ["containerd"],
    "talos-tls": ["talos"],
}

# Talos 1.12+: every field of each document kind layerd writes, with its type
# (RegistryMirrorConfigV1Alpha1, RegistryEndpoint, RegistryTLSConfigV1Alpha1
# and meta.CertificateAndKey in siderolabs/talos pkg/machinery/config/types/).
# name is required in both; url in every endpoint, http or https.
TALOS_FIELDS = {
    "RegistryMirrorConfig": {"apiVersion": str, "kind": str, "name": str, "endpoints": list, "skipFallback": bool},
    "RegistryTLSConfig": {"apiVersion": str, "kind": str, "name": str, "clientIdentity": dict, "ca": str,
                          "insecureSkipVerify": bool},
}
TALOS_ENDPOINT_FIELDS = {"url": str, "overridePath": bool}
TALOS_CLIENT_IDENTITY_FIELDS = {"cert": str, "key": str}
CERTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "certs")
DIAL_TIMEOUT_FROM = (2, 0, 7)
SERVER_ONLY_OK_FROM = (1, 7, 32)


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def result(self, ok, desc, diag=()):
        self.n += 1
        print(f"{'ok' if ok else 'not ok'} {self.n} - {desc}")
        if not ok:
            self.failed += 1
            for line in diag:
                for part in str(line).splitlines() or [""]:
                    print(f"#   {part}")
        return ok

    def eq(self, desc, got, want):
        return self.result(got == want, desc, [f"got:  {got!r}", f"want: {want!r}"])

    def true(self, desc, cond, detail=""):
        return self.result(bool(cond), desc, [detail] if detail else [])

    def plan(self):
        print(f"1..{self.n}")


t = Tap()
root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))
docs = {}  # (case, format, name) -> parsed document


def parse_all():
    t.eq("the golden tree holds exactly the expected cases",
         sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))), sorted(CASES))
    for case in sorted(CASES):
        t.eq(f"{case}: formats", sorted(os.listdir(os.path.join(root, case))), sorted(FORMATS[case]))
        for fmt in FORMATS[case]:
            base = os.path.join(root, case, fmt)
            for dirpath, _, files in sorted(os.walk(base)):
                for f in sorted(files):
                    path = os.path.join(dirpath, f)
                    name = os.path.relpath(path, base)
                    parse_one(case, fmt, name, path)


def parse_one(case, fmt, name, path):
    desc = f"parse {case}/{fmt}/{name}"
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        text = raw.decode("utf-8")
        if fmt in ("containerd", "registries-conf"):
            doc = tomllib.loads(text)
        elif fmt == "docker":
            doc = json.loads(text)
        elif fmt == "talos":
            # A stream of documents; only comments before the first.
            doc = list(yaml.safe_load_all(text))
        else:
            doc = yaml.safe_load(text)
    except Exception as e:  # any parse error is the failure being looked for
        t.result(False, desc, [f"{type(e).__name__}: {e}"])
        return
    # JSON has no comments: daemon.json carries no marker; every other file starts with it.
    marked = text.startswith(MARKER)
    if not t.true(desc, marked == (fmt != "docker"), f"first line: {text.splitlines()[0]!r}"):
        return
    docs[(case, fmt, name)] = doc


def doc(case, fmt, name):
    d = docs.get((case, fmt, name))
    t.true(f"{case}/{fmt}/{name} exists and parsed", d is not None)
    return d if d is not None else {}


def hosts(d):
    """The [host."..."] table keys in file order (tomllib keeps insertion order)."""
    return list(d.get("host", {}).keys())


# ---- invariants of every containerd file ---------------------------------------------------


def check_containerd_invariants():
    for (case, fmt, name), d in sorted(docs.items()):
        if fmt != "containerd":
            continue
        version = CASES[case]
        where = f"{case}/{name}"
        t.true(f"{where}: name is <registry>/hosts.toml", name.count("/") == 1 and name.endswith("/hosts.toml"))
        t.true(f"{where}: only keys containerd reads at the root", set(d) <= ROOT_KEYS, f"keys: {sorted(d)}")
        bad = {h: sorted(set(v) - HOST_KEYS) for h, v in d.get("host", {}).items() if set(v) - HOST_KEYS}
        t.eq(f"{where}: only keys containerd reads in hosts", bad, {})
        caps = [d.get("capabilities")] + [v.get("capabilities") for v in d.get("host", {}).values()]
        t.true(f"{where}: capabilities only pull and resolve, never empty",
               all(c is None or (c and set(c) <= {"pull", "resolve"}) for c in caps), f"{caps}")
        tables = [d] + list(d.get("host", {}).values())
        has_dial = [("dial_timeout" in x) for x in tables]
        if version >= DIAL_TIMEOUT_FROM:
            t.true(f"{where}: dial_timeout on every host and the server", all(has_dial[0 if "server" in d else 1:]))
        else:
            t.true(f"{where}: no dial_timeout before 2.0.7", not any(has_dial))
        if "server" in d and version < SERVER_ONLY_OK_FROM:
            t.true(f"{where}: a [host] besides the server before 1.7.32", len(hosts(d)) > 0)
        reg = name.split("/")[0]
        if reg == "_default":
            t.true(f"{where}: _default has no server", "server" not in d)


# ---- invariants of every Talos document stream ------------------------------------------------


def typed(fields, d):
    """The keys of d that Talos does not define, or whose value has another type."""
    return sorted(k for k, v in d.items() if k not in fields or not isinstance(v, fields[k]))


def check_talos_invariants():
    for (case, fmt, name), docs_ in sorted(docs.items()):
        if fmt != "talos":
            continue
        where = f"{case}/talos/{name}"
        t.true(f"{where}: a list of mappings", all(isinstance(d, dict) for d in docs_), f"{docs_!r}")
        docs_ = [d for d in docs_ if isinstance(d, dict)]
        t.true(f"{where}: at least one document", len(docs_) > 0)
        t.eq(f"{where}: apiVersion v1alpha1 everywhere", {d.get("apiVersion") for d in docs_}, {"v1alpha1"})
        t.true(f"{where}: only kinds layerd writes", all(d.get("kind") in TALOS_FIELDS for d in docs_),
               f"kinds: {[d.get('kind') for d in docs_]}")
        keys = [(d.get("kind"), d.get("name")) for d in docs_]
        t.eq(f"{where}: (kind, name) unique (Talos refuses duplicates)", len(keys), len(set(keys)))
        t.true(f"{where}: every name a non-empty string", all(isinstance(n, str) and n for _, n in keys), f"{keys}")
        bad = {f"{k}/{n}": typed(TALOS_FIELDS.get(k, {}), d) for d, (k, n) in zip(docs_, keys)}
        t.eq(f"{where}: only fields Talos defines, of its types", {k: v for k, v in bad.items() if v}, {})
        # Mirror documents first, then TLS: each TLS document names the host of a listed endpoint.
        kinds = [k for k, _ in keys]
        t.eq(f"{where}: mirror documents before TLS documents", kinds, sorted(kinds, key=lambda k: k != "RegistryMirrorConfig"))
        hosts_listed = set()
        for d in docs_:
            if d.get("kind") != "RegistryMirrorConfig":
                continue
            eps = d.get("endpoints", [])
            t.true(f"{where}: {d.get('name')}: endpoints non-empty", len(eps) > 0)
            bad = [e for e in eps if not isinstance(e, dict) or typed(TALOS_ENDPOINT_FIELDS, e) or "url" not in e]
            t.eq(f"{where}: {d.get('name')}: endpoints have url and overridePath only", bad, [])
            urls = [e.get("url", "") for e in eps if isinstance(e, dict)]
            t.true(f"{where}: {d.get('name')}: every url http(s)://",
                   all(re.match(r"^(http|https)://", u) for u in urls), f"{urls}")
            t.true(f"{where}: {d.get('name')}: overridePath only true (false is the default, never written)",
                   all(e.get("overridePath", True) is True for e in eps if isinstance(e, dict)))
            t.true(f"{where}: {d.get('name')}: skipFallback only true", d.get("skipFallback", True) is True)
            hosts_listed |= {u.split("://", 1)[1].split("/", 1)[0] for u in urls if u.startswith("https://")}
        for d in docs_:
            if d.get("kind") != "RegistryTLSConfig":
                continue
            n = d.get("name")
            t.true(f"{where}: TLS {n}: names the host of a listed https endpoint", n in hosts_listed, f"{hosts_listed}")
            t.true(f"{where}: TLS {n}: has something to say", "ca" in d or d.get("insecureSkipVerify") is True, f"{d}")
            t.true(f"{where}: TLS {n}: no clientIdentity (layerd does not copy private keys)", "clientIdentity" not in d)
            if "ca" in d:
                try:
                    ssl.PEM_cert_to_DER_cert(d["ca"])
                    ok, err = True, ""
                except ValueError as e:
                    ok, err = False, str(e)
                t.true(f"{where}: TLS {n}: ca is a PEM certificate", ok, err)


def talos_docs(case):
    """Talos's documents of a case by (kind, name), without apiVersion and kind."""
    out = {}
    for d in doc(case, "talos", "talos-registries.yaml") or []:
        if isinstance(d, dict):
            out[(d.get("kind"), d.get("name"))] = {k: v for k, v in d.items() if k not in ("apiVersion", "kind")}
    return out


def urls(*items):
    """Endpoint entries: a URL, or (URL, True) for overridePath."""
    return [{"url": i[0], "overridePath": True} if isinstance(i, tuple) else {"url": i} for i in items]


MIRROR = "RegistryMirrorConfig"
TLS = "RegistryTLSConfig"


# ---- render.yaml ------------------------------------------------------------------------------

RENDER_FILES = sorted(
    f"{r}/hosts.toml"
    for r in ["docker.io", "quay.io", "registry.example.com:5000", "registry.lab.example.com", "[fd00::1]:5000",
              "_default", "null"]
)

# The header strings exactly as render.yaml writes them (after YAML unescaping).
MIRROR_HEADERS = {
    "X.Dotted": "dotted",
    "X_Under": "under",
    "X'Apos": "apos",
    "X-Quote": 'say "hi"',
    "X-Backslash": "C:\\dir\\",
    "X-Tab": "a\tb",
    "X-Unicode": "ünïcödé ✓ 日本",
    "X-Multi": ["one", 'two "2"', "three\\3"],
}


def without_dial(table):
    return {k: v for k, v in table.items() if k != "dial_timeout"}


def root_keys(d):
    """The server's part of a hosts.toml: the root without the host tables and dial_timeout."""
    return {k: v for k, v in d.items() if k not in ("host", "dial_timeout")}


def check_render_containerd(case):
    version = CASES[case]
    dial = version >= DIAL_TIMEOUT_FROM
    t.eq(f"{case}: containerd files", sorted(n for (c, f, n) in docs if c == case and f == "containerd"), RENDER_FILES)

    def dial_timeouts(d):
        return {"server": d.get("dial_timeout"), **{h: v.get("dial_timeout") for h, v in d.get("host", {}).items()}}

    # docker.io: layerd, five endpoints in order, the implied origin as server.
    d = doc(case, "containerd", "docker.io/hosts.toml")
    t.eq(f"{case}: docker.io server", d.get("server"), "https://registry-1.docker.io")
    t.true(f"{case}: docker.io origin server keeps containerd's default capabilities", "capabilities" not in d)
    t.eq(f"{case}: docker.io host order", hosts(d), [
        AGENT, "https://mirror.example.com", "http://cache.example.com:5000", "http://127.0.0.1:5001",
        "https://[fd00::1]:8443", "https://harbor.example.com/v2/proxy-docker.io"])
    h = d.get("host", {})
    t.eq(f"{case}: docker.io layerd host", without_dial(h.get(AGENT, {})), {"capabilities": PULL_RESOLVE})
    m = h.get("https://mirror.example.com", {})
    t.eq(f"{case}: docker.io mirror capabilities", m.get("capabilities"), ["pull"])
    t.eq(f"{case}: docker.io mirror ca", m.get("ca"), "/etc/layerd/certs/ca.pem")
    t.eq(f"{case}: docker.io mirror client is a [cert, key] pair", m.get("client"),
         [["/etc/layerd/certs/client.pem", "/etc/layerd/certs/client-key.pem"]])
    t.true(f"{case}: docker.io mirror verifies TLS", "skip_verify" not in m and "override_path" not in m)
    t.eq(f"{case}: docker.io mirror headers, values exact", m.get("header"), MIRROR_HEADERS)
    t.eq(f"{case}: docker.io mirror header order", list(m.get("header", {})), list(MIRROR_HEADERS))
    t.eq(f"{case}: docker.io plain-http host", without_dial(h.get("http://cache.example.com:5000", {})),
         {"capabilities": PULL_RESOLVE})
    t.eq(f"{case}: docker.io IPv6 host", without_dial(h.get("https://[fd00::1]:8443", {})),
         {"capabilities": ["resolve"], "client": "/etc/layerd/certs/bundle.pem", "skip_verify": True})
    t.eq(f"{case}: docker.io override_path host", without_dial(h.get("https://harbor.example.com/v2/proxy-docker.io", {})),
         {"capabilities": PULL_RESOLVE, "override_path": True})
    t.eq(f"{case}: docker.io dial_timeout", dial_timeouts(d), {
        "server": "5s" if dial else None,
        AGENT: "1s" if dial else None,
        "https://mirror.example.com": "2s" if dial else None,
        "http://cache.example.com:5000": "1s500ms" if dial else None,
        # Mirrors without timeouts.connect: 1s; the origin (the server): 5s.
        "http://127.0.0.1:5001": "1s" if dial else None,
        "https://[fd00::1]:8443": "1s" if dial else None,
        "https://harbor.example.com/v2/proxy-docker.io": "1s" if dial else None,
    })

    # quay.io: the origin in the middle keeps its place, and is the server with its own settings.
    d = doc(case, "containerd", "quay.io/hosts.toml")
    t.eq(f"{case}: quay.io root", root_keys(d), {
        "server": "https://quay.io", "ca": "/etc/layerd/certs/quay-ca.pem", "header": {"X-Origin": "yes"}})
    t.eq(f"{case}: quay.io host order", hosts(d),
         [AGENT, "https://zot.example.com", "https://quay.io", "https://backup.example.com/quay"])
    t.eq(f"{case}: quay.io origin as a host", without_dial(d.get("host", {}).get("https://quay.io", {})), {
        "capabilities": PULL_RESOLVE, "ca": "/etc/layerd/certs/quay-ca.pem", "header": {"X-Origin": "yes"}})
    # The origin listed in the middle is the origin (5s) there too; the mirrors get 1s unless given.
    t.eq(f"{case}: quay.io dial_timeout", dial_timeouts(d), {
        "server": "5s" if dial else None,
        AGENT: "1s" if dial else None,
        "https://zot.example.com": "1s" if dial else None,
        "https://quay.io": "5s" if dial else None,
        "https://backup.example.com/quay": "1m" if dial else None,
    })

    # fallback_to_origin: false: the last endpoint is the server, with explicit capabilities.
    d = doc(case, "containerd", "registry.example.com:5000/hosts.toml")
    t.eq(f"{case}: air-gapped root", root_keys(d), {
        "server": "https://b.example.com:8443", "capabilities": ["pull"], "ca": "/etc/layerd/certs/site-ca.pem",
        "client": "/etc/layerd/certs/site-node.pem", "skip_verify": True, "header": {"X-Site": ["a", "b"]}})
    t.eq(f"{case}: air-gapped host order (no origin, server not repeated)", hosts(d), [AGENT, "https://a.example.com"])
    # No origin: the server is a mirror too, at a mirror's 1s.
    t.eq(f"{case}: air-gapped dial_timeout", dial_timeouts(d), {
        "server": "1s" if dial else None, AGENT: "1s" if dial else None, "https://a.example.com": "1s" if dial else None})

    # mirror: false, origin only: the server, listed as a host too only before 1.7.32.
    d = doc(case, "containerd", "registry.lab.example.com/hosts.toml")
    t.eq(f"{case}: lab server", d.get("server"), "http://registry.lab.example.com:5000")
    t.true(f"{case}: lab origin server has no explicit capabilities", "capabilities" not in d)
    want = [] if version >= SERVER_ONLY_OK_FROM else ["http://registry.lab.example.com:5000"]
    t.eq(f"{case}: lab hosts for containerd {'.'.join(map(str, version))}", hosts(d), want)
    if want:
        t.eq(f"{case}: lab server as a host", d["host"][want[0]], {"capabilities": PULL_RESOLVE})
    t.eq(f"{case}: lab dial_timeout", d.get("dial_timeout"), "5s" if dial else None)

    d = doc(case, "containerd", "[fd00::1]:5000/hosts.toml")
    t.eq(f"{case}: IPv6 registry server", d.get("server"), "https://[fd00::1]:5000")
    t.eq(f"{case}: IPv6 registry hosts (not mirrored: no layerd)", hosts(d), ["https://[fd00::2]:8443/v2/proxy"])
    t.eq(f"{case}: IPv6 endpoint", without_dial(d.get("host", {}).get("https://[fd00::2]:8443/v2/proxy", {})),
         {"capabilities": PULL_RESOLVE, "override_path": True})
    t.eq(f"{case}: IPv6 registry dial_timeout", dial_timeouts(d), {
        "server": "5s" if dial else None, "https://[fd00::2]:8443/v2/proxy": "1s" if dial else None})

    d = doc(case, "containerd", "_default/hosts.toml")
    t.eq(f"{case}: _default has nothing at the root", root_keys(d), {})
    t.eq(f"{case}: _default hosts", {k: without_dial(v) for k, v in d.get("host", {}).items()},
         {"https://zot.example.com:5000": {"capabilities": ["pull"]}})
    t.eq(f"{case}: _default dial_timeout (no origin: a mirror's)", dial_timeouts(d), {
        "server": None, "https://zot.example.com:5000": "1s" if dial else None})

    d = doc(case, "containerd", "null/hosts.toml")
    t.eq(f"{case}: null server", d.get("server"), "https://null")
    t.eq(f"{case}: null hosts", hosts(d), ["https://zot.example.com"])
    t.eq(f"{case}: null dial_timeout", dial_timeouts(d), {
        "server": "5s" if dial else None, "https://zot.example.com": "1s" if dial else None})


def check_render_others():
    case = "render-1.6"
    d = doc(case, "docker", "daemon.json")
    t.eq(f"{case}: daemon.json", d, {
        "registry-mirrors": [AGENT, "https://mirror.example.com", "http://cache.example.com:5000",
                             "http://127.0.0.1:5001", "https://[fd00::1]:8443"],
        "insecure-registries": ["cache.example.com:5000"],
    })

    d = doc(case, "talos-legacy", "talos-registries.yaml")
    mirrors = d.get("machine", {}).get("registries", {}).get("mirrors", {})
    t.eq(f"{case}: talos registry order, every key a string", list(mirrors),
         ["docker.io", "quay.io", "registry.example.com:5000", "registry.lab.example.com", "*", "null"])
    t.eq(f"{case}: talos mirrors", mirrors, {
        "docker.io": {"endpoints": [AGENT, "https://mirror.example.com", "http://cache.example.com:5000",
                                    "http://127.0.0.1:5001", "https://[fd00::1]:8443"]},
        "quay.io": {"endpoints": [AGENT, "https://zot.example.com", "https://backup.example.com/quay"]},
        "registry.example.com:5000": {"endpoints": [AGENT, "https://a.example.com", "https://b.example.com:8443"],
                                      "skipFallback": True},
        # A custom origin is not where Talos falls back to: listed, and no fallback.
        "registry.lab.example.com": {"endpoints": ["http://registry.lab.example.com:5000"], "skipFallback": True},
        # "[fd00::1]:5000" has no endpoint Talos can use (override_path only): left out.
        "*": {"endpoints": ["https://zot.example.com:5000"]},
        "null": {"endpoints": ["https://zot.example.com"]},
    })

    # Talos 1.12+ documents: overridePath per endpoint, so Harbor's proxy
    # projects stay and every registry renders; the origin listed in the middle
    # keeps its place; TLS documents for what has settings this machine can
    # render (the CA files of render.yaml are not here: left out with a note).
    got = talos_docs(case)
    t.eq(f"{case}: talos documents in order", list(got), [
        (MIRROR, "docker.io"), (MIRROR, "quay.io"), (MIRROR, "registry.example.com:5000"),
        (MIRROR, "registry.lab.example.com"), (MIRROR, "[fd00::1]:5000"), (MIRROR, "*"), (MIRROR, "null"),
        (TLS, "[fd00::1]:8443"), (TLS, "b.example.com:8443")])
    t.eq(f"{case}: talos documents", got, {
        (MIRROR, "docker.io"): {"name": "docker.io", "endpoints": urls(
            AGENT, "https://mirror.example.com", "http://cache.example.com:5000", "http://127.0.0.1:5001",
            "https://[fd00::1]:8443", ("https://harbor.example.com/v2/proxy-docker.io", True))},
        (MIRROR, "quay.io"): {"name": "quay.io", "endpoints": urls(
            AGENT, "https://zot.example.com", "https://quay.io", "https://backup.example.com/quay")},
        (MIRROR, "registry.example.com:5000"): {"name": "registry.example.com:5000", "endpoints": urls(
            AGENT, "https://a.example.com", "https://b.example.com:8443"), "skipFallback": True},
        (MIRROR, "registry.lab.example.com"): {"name": "registry.lab.example.com",
                                                "endpoints": urls("http://registry.lab.example.com:5000"),
                                                "skipFallback": True},
        # Not mirrored: no layerd; the origin is implied, so Talos falls back to it.
        (MIRROR, "[fd00::1]:5000"): {"name": "[fd00::1]:5000",
                                      "endpoints": urls(("https://[fd00::2]:8443/v2/proxy", True))},
        (MIRROR, "*"): {"name": "*", "endpoints": urls("https://zot.example.com:5000")},
        (MIRROR, "null"): {"name": "null", "endpoints": urls("https://zot.example.com")},
        (TLS, "[fd00::1]:8443"): {"name": "[fd00::1]:8443", "insecureSkipVerify": True},
        (TLS, "b.example.com:8443"): {"name": "b.example.com:8443", "insecureSkipVerify": True},
    })

    d = doc(case, "registries-conf", "registries.conf")
    t.eq(f"{case}: registries.conf search list", d.get("unqualified-search-registries"), [])
    t.eq(f"{case}: registries.conf top-level keys", sorted(d), ["registry", "unqualified-search-registries"])
    regs = d.get("registry", [])
    t.eq(f"{case}: registries.conf registries (no _default)", [r.get("prefix") for r in regs],
         ["docker.io", "quay.io", "registry.example.com:5000", "registry.lab.example.com", "[fd00::1]:5000", "null"])

    def mirror(location, insecure=False):
        return {"location": location, "insecure": True} if insecure else {"location": location}

    # layerd first for every mirrored registry, by its namespace: the name, with
    # a port after '_' (docs/agent.md, "Namespaced paths").
    want = {
        "docker.io": {"prefix": "docker.io", "location": "docker.io", "mirror": [
            mirror("127.0.0.1:5080/docker.io", True), mirror("mirror.example.com"),
            mirror("cache.example.com:5000", True), mirror("127.0.0.1:5001", True), mirror("[fd00::1]:8443", True),
            mirror("harbor.example.com/proxy-docker.io")]},
        "quay.io": {"prefix": "quay.io", "location": "quay.io", "mirror": [
            mirror("127.0.0.1:5080/quay.io", True), mirror("zot.example.com")]},
        "registry.example.com:5000": {"prefix": "registry.example.com:5000", "location": "registry.example.com:5000",
                                      "mirror": [mirror("127.0.0.1:5080/registry.example.com_5000", True),
                                                 mirror("a.example.com"), mirror("b.example.com:8443", True)]},
        "registry.lab.example.com": {"prefix": "registry.lab.example.com",
                                     "location": "registry.lab.example.com:5000", "insecure": True},
        "[fd00::1]:5000": {"prefix": "[fd00::1]:5000", "location": "[fd00::1]:5000",
                           "mirror": [mirror("[fd00::2]:8443/proxy")]},
        "null": {"prefix": "null", "location": "null", "mirror": [mirror("zot.example.com")]},
    }
    for r in regs:
        p = r.get("prefix")
        t.eq(f"{case}: registries.conf {p}", r, want.get(p))


# ---- the example specs: key facts -------------------------------------------------------------


def check_example_spec():
    case = "example-spec"
    d = doc(case, "containerd", "docker.io/hosts.toml")
    t.eq(f"{case}: docker.io host order", hosts(d),
         [AGENT, "https://zot.mgmt.example.com:5000", "https://harbor.mgmt.example.com/v2/proxy-docker.io"])
    t.eq(f"{case}: docker.io server", d.get("server"), "https://registry-1.docker.io")
    t.eq(f"{case}: docker.io harbor", d.get("host", {}).get("https://harbor.mgmt.example.com/v2/proxy-docker.io"),
         {"capabilities": ["pull"], "override_path": True})
    t.eq(f"{case}: docker.io zot ca", d.get("host", {}).get("https://zot.mgmt.example.com:5000", {}).get("ca"),
         "/etc/layerd/certs/mgmt-ca.pem")
    d = doc(case, "containerd", "quay.io/hosts.toml")
    t.eq(f"{case}: quay.io headers", d.get("host", {}).get("https://zot.mgmt.example.com:5000", {}).get("header"),
         {"X-Node-Pool": "workers", "X-Cache-Tier": ["node", "mgmt"]})
    d = doc(case, "containerd", "registry.example.com:5000/hosts.toml")
    t.eq(f"{case}: air-gapped server", (d.get("server"), d.get("client")),
         ("https://mirror-b.example.com", "/etc/layerd/certs/node-bundle.pem"))
    t.eq(f"{case}: air-gapped hosts", hosts(d), [AGENT, "https://mirror-a.example.com"])
    d = doc(case, "containerd", "registry.lab.example.com/hosts.toml")
    t.eq(f"{case}: not mirrored: no layerd host", hosts(d), ["http://cache.lab.example.com:5000"])
    t.eq(f"{case}: daemon.json", doc(case, "docker", "daemon.json"),
         {"registry-mirrors": [AGENT, "https://zot.mgmt.example.com:5000"]})
    mirrors = doc(case, "talos-legacy", "talos-registries.yaml").get("machine", {}).get("registries", {}).get("mirrors", {})
    t.eq(f"{case}: talos registries", list(mirrors), ["docker.io", "ghcr.io", "registry.k8s.io", "quay.io",
                                                      "registry.example.com:5000", "registry.lab.example.com"])
    t.eq(f"{case}: talos air-gapped", mirrors.get("registry.example.com:5000"), {
        "endpoints": [AGENT, "https://mirror-a.example.com", "https://mirror-b.example.com"], "skipFallback": True})
    got = talos_docs(case)
    t.eq(f"{case}: talos documents", list(got), [(MIRROR, r) for r in [
        "docker.io", "ghcr.io", "registry.k8s.io", "quay.io", "registry.example.com:5000", "registry.lab.example.com"]])
    t.eq(f"{case}: talos docker.io keeps Harbor with overridePath", got.get((MIRROR, "docker.io")), {
        "name": "docker.io", "endpoints": urls(AGENT, "https://zot.mgmt.example.com:5000",
                                               ("https://harbor.mgmt.example.com/v2/proxy-docker.io", True))})
    t.eq(f"{case}: talos air-gapped document", got.get((MIRROR, "registry.example.com:5000")), {
        "name": "registry.example.com:5000",
        "endpoints": urls(AGENT, "https://mirror-a.example.com", "https://mirror-b.example.com"), "skipFallback": True})
    regs = doc(case, "registries-conf", "registries.conf").get("registry", [{}])
    t.eq(f"{case}: registries.conf docker.io mirrors", regs[0].get("mirror"), [
        {"location": "127.0.0.1:5080/docker.io", "insecure": True}, {"location": "zot.mgmt.example.com:5000"},
        {"location": "harbor.mgmt.example.com/proxy-docker.io"}])
    t.eq(f"{case}: registries.conf layerd first for every mirrored registry",
         {r.get("prefix"): r.get("mirror", [{}])[0] for r in regs}, {
             "docker.io": {"location": "127.0.0.1:5080/docker.io", "insecure": True},
             "ghcr.io": {"location": "127.0.0.1:5080/ghcr.io", "insecure": True},
             "registry.k8s.io": {"location": "127.0.0.1:5080/registry.k8s.io", "insecure": True},
             "quay.io": {"location": "127.0.0.1:5080/quay.io", "insecure": True},
             "registry.example.com:5000": {"location": "127.0.0.1:5080/registry.example.com_5000", "insecure": True},
             # mirror: false
             "registry.lab.example.com": {"location": "cache.lab.example.com:5000", "insecure": True},
         })


def check_example_helm():
    case = "example-helm-values"
    d = doc(case, "containerd", "docker.io/hosts.toml")
    t.eq(f"{case}: docker.io host order", hosts(d),
         [AGENT, "https://zot.mgmt.example.com:5000", "https://harbor.mgmt.example.com/v2/proxy-docker.io"])
    t.eq(f"{case}: docker.io harbor override_path",
         d.get("host", {}).get("https://harbor.mgmt.example.com/v2/proxy-docker.io", {}).get("override_path"), True)
    t.eq(f"{case}: ghcr.io host order", hosts(doc(case, "containerd", "ghcr.io/hosts.toml")),
         [AGENT, "https://harbor.mgmt.example.com"])
    t.eq(f"{case}: registry.k8s.io host order", hosts(doc(case, "containerd", "registry.k8s.io/hosts.toml")), [AGENT])
    t.eq(f"{case}: lab host order", hosts(doc(case, "containerd", "registry.lab.example.com/hosts.toml")),
         ["http://cache.lab.example.com:5000"])
    t.eq(f"{case}: daemon.json", doc(case, "docker", "daemon.json"),
         {"registry-mirrors": [AGENT, "https://zot.mgmt.example.com:5000"]})
    mirrors = doc(case, "talos-legacy", "talos-registries.yaml").get("machine", {}).get("registries", {}).get("mirrors", {})
    t.eq(f"{case}: talos ghcr.io", mirrors.get("ghcr.io"), {"endpoints": [AGENT, "https://harbor.mgmt.example.com"]})
    t.eq(f"{case}: talos ghcr.io document", talos_docs(case).get((MIRROR, "ghcr.io")),
         {"name": "ghcr.io", "endpoints": urls(AGENT, "https://harbor.mgmt.example.com")})
    regs = doc(case, "registries-conf", "registries.conf").get("registry", [])
    t.eq(f"{case}: registries.conf prefixes", [r.get("prefix") for r in regs],
         ["docker.io", "ghcr.io", "registry.k8s.io", "quay.io", "registry.lab.example.com"])
    t.eq(f"{case}: registries.conf layerd for every mirrored registry",
         [m.get("location") for r in regs for m in r.get("mirror", []) if m.get("location", "").startswith("127.")],
         ["127.0.0.1:5080/docker.io", "127.0.0.1:5080/ghcr.io", "127.0.0.1:5080/registry.k8s.io",
          "127.0.0.1:5080/quay.io"])


def check_helm_nested():
    # containerRegistries beside localRegistryCache: the central cache comes
    # first, and an endpoint that is the origin is only the server.
    case = "helm-nested"
    d = doc(case, "containerd", "registry.example.com/hosts.toml")
    t.eq(f"{case}: registry.example.com host order", hosts(d), [AGENT, "https://zot.mgmt.example.com"])
    t.eq(f"{case}: registry.example.com server", d.get("server"), "https://registry.example.com")
    d = doc(case, "containerd", "oci.example.net/hosts.toml")
    t.eq(f"{case}: oci.example.net host order", hosts(d), [AGENT])
    t.eq(f"{case}: oci.example.net server", d.get("server"), "https://oci.example.net")


def check_talos_tls():
    # tests/golden/talos-tls.yaml: one TLS document per host, the CA's contents exactly.
    case = "talos-tls"
    with open(os.path.join(CERTS, "talos-ca.pem"), encoding="ascii") as fh:
        ca = fh.read()
    got = talos_docs(case)
    t.eq(f"{case}: documents in order", list(got), [
        (MIRROR, "docker.io"), (MIRROR, "quay.io"), (MIRROR, "ghcr.io"),
        (TLS, "mirror.example.com"), (TLS, "skip.example.com:8443"), (TLS, "[fd00::1]:8443"), (TLS, "quay.io")])
    t.eq(f"{case}: documents", got, {
        (MIRROR, "docker.io"): {"name": "docker.io", "endpoints": urls(
            AGENT, "https://mirror.example.com", ("https://mirror.example.com/v2/other", True),
            "https://skip.example.com:8443", "https://bad.example.com", "https://[fd00::1]:8443",
            "http://mirror.example.com:5000")},
        # The implied origin with a CA is listed (its document applies to listed endpoints).
        (MIRROR, "quay.io"): {"name": "quay.io", "endpoints": urls(AGENT, "https://zot.example.com", "https://quay.io")},
        (MIRROR, "ghcr.io"): {"name": "ghcr.io", "endpoints": urls(
            AGENT, "https://mirror.example.com/ghcr", "https://skip.example.com:8443/ghcr"), "skipFallback": True},
        (TLS, "mirror.example.com"): {"name": "mirror.example.com", "ca": ca},
        (TLS, "skip.example.com:8443"): {"name": "skip.example.com:8443", "insecureSkipVerify": True},
        # The client certificate is not rendered: clientIdentity needs the private key.
        (TLS, "[fd00::1]:8443"): {"name": "[fd00::1]:8443", "ca": ca, "insecureSkipVerify": True},
        (TLS, "quay.io"): {"name": "quay.io", "ca": ca},
    })


def main():
    parse_all()
    check_containerd_invariants()
    check_talos_invariants()
    for case in ("render-1.6", "render-1.7.32", "render-2.0.7"):
        check_render_containerd(case)
    check_render_others()
    check_example_spec()
    check_example_helm()
    check_helm_nested()
    check_talos_tls()
    t.plan()
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
