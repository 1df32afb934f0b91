#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes layerd's OCI image as an OCI image layout, without a container daemon.

    build.py --binary ./layerd --out build/image --tag TAG [--version V] [--spec FILE] [--ca-bundle FILE]

One layer: the (stripped) binary, the dynamic loader and every shared library
`ldd` names, under their soname paths (Debian's merged /usr: /lib and /lib64 are
links into /usr), CA certificates, /etc/passwd and /etc/group with the non-root
user layerd (65532), the default spec, /tmp and the cache directory. Every byte
is a function of the inputs: entries sorted, owners numeric, times fixed at
SOURCE_DATE_EPOCH (default 0), gzip without name or time, JSON with sorted keys;
so the same binary and libraries give the same digests. Prints the manifest digest.
Python 3 standard library only.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time

USER_UID = 65532
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}

PASSWD = ("root:x:0:0:root:/root:/usr/sbin/nologin\n"
          "layerd:x:%d:%d:layerd:/var/lib/layerd:/usr/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n") % (USER_UID, USER_UID)
GROUP = "root:x:0:\nlayerd:x:%d:\nnogroup:x:65534:\n" % USER_UID
# glibc's defaults without the file put DNS before /etc/hosts (which kubelet and
# container runtimes write); name resolution as on a Debian host.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


def fail(msg):
    print("build.py: " + msg, file=sys.stderr)
    sys.exit(1)


def libraries(binary):
    """The absolute paths ldd names for BINARY (the loader included), in ldd's order."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        line = line.strip()
        if "not found" in line:
            fail("ldd: a library is missing: " + line)
        m = re.match(r"^\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
    if not paths:
        fail("ldd named no library: is %s dynamically linked?" % binary)
    return paths


def usr_path(path):
    """Where a library lives in the image: /lib/x and /lib64/x go under /usr (merged /usr)."""
    for top in ("/lib/", "/lib64/"):
        if path.startswith(top):
            return "/usr" + path
    return path


class Layer:
    """A file system tree written as one deterministic tar."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}  # path (no leading /) -> TarInfo, bytes or None

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.dir(d)

    def _info(self, path, kind, mode, uid=0):
        ti = tarfile.TarInfo(path)
        ti.type, ti.mode, ti.mtime = kind, mode, self.mtime
        ti.uid = ti.gid = uid
        ti.uname = ti.gname = ""
        return ti

    def dir(self, path, mode=0o755, uid=0):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid), None)

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        self._parents(path)
        ti = self._info(path, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.entries[path] = (ti, data)

    def symlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        ti = self._info(path, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.entries[path] = (ti, None)

    def tar(self):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            for path in sorted(self.entries):
                ti, data = self.entries[path]
                t.addfile(ti, io.BytesIO(data) if data is not None else None)
        return raw.getvalue()


def stripped(binary):
    """The binary without symbols: smaller, and still the same for the same input."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "layerd")
        subprocess.run(["strip", "--strip-unneeded", "-o", out, binary], check=True)
        with open(out, "rb") as f:
            return f.read()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--out", required=True, help="the OCI layout directory (replaced)")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--version", default="")
    ap.add_argument("--spec", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "spec.yaml"))
    ap.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    a = ap.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", a.tag):
        fail("not an OCI tag: %r" % a.tag)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    arch = ARCH.get(platform.machine())
    if arch is None:
        fail("unknown machine " + platform.machine())

    layer = Layer(epoch)
    layer.dir("usr/bin")
    layer.file("usr/bin/layerd", stripped(a.binary), 0o755)
    libs = libraries(a.binary)
    for lib in libs:
        # The soname path, the content of the file it resolves to.
        layer.file(usr_path(lib), read(os.path.realpath(lib)), 0o755 if "/ld-" in lib else 0o644)
    layer.symlink("lib", "usr/lib")
    if any(lib.startswith("/lib64/") for lib in libs):
        layer.symlink("lib64", "usr/lib64")
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    layer.file("etc/nsswitch.conf", NSSWITCH.encode())
    layer.file("etc/ssl/certs/ca-certificates.crt", read(a.ca_bundle))
    layer.file("etc/layerd/spec.yaml", read(a.spec))
    layer.dir("etc/containerd/certs.d")
    layer.dir("tmp", 0o1777)
    layer.dir("var/lib/layerd", 0o750, USER_UID)

    tar = layer.tar()
    gz = gzip.compress(tar, compresslevel=9, mtime=0)

    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    blobs = os.path.join(a.out, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data, media_type):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + d, "size": len(data)}

    def dumps(obj):
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    labels = {"org.opencontainers.image.title": "layerd",
              "org.opencontainers.image.description": "node-local registry mirror for containerd",
              "org.opencontainers.image.licenses": "Apache-2.0"}
    if a.version:
        labels["org.opencontainers.image.version"] = a.version
    config = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "User": "%d:%d" % (USER_UID, USER_UID),
            "Entrypoint": ["/usr/bin/layerd"],
            "Cmd": ["serve", "--spec", "/etc/layerd/spec.yaml"],
            "Env": ["PATH=/usr/bin"],
            "WorkingDir": "/",
            "StopSignal": "SIGTERM",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        "history": [{"created": created, "created_by": "packaging/image/build.py"}],
    }
    config_desc = put(dumps(config), "application/vnd.oci.image.config.v1+json")
    layer_desc = put(gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": [layer_desc]}
    manifest_desc = put(dumps(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": a.tag}
    manifest_desc["platform"] = {"architecture": arch, "os": "linux"}
    with open(os.path.join(a.out, "index.json"), "wb") as f:
        f.write(dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": [manifest_desc]}))
    with open(os.path.join(a.out, "oci-layout"), "wb") as f:
        f.write(dumps({"imageLayoutVersion": "1.0.0"}))
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
