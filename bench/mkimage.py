#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Test content for `make bench`, written in streams (hundreds of MiB).

  mkimage.py blob FILE SIZE          SIZE random bytes in FILE; prints sha256:<hex>
  mkimage.py image DIR TAG SIZE...   an OCI layout in DIR, tagged TAG, linux/amd64, one
                                     layer per SIZE (uncompressed tar of SIZE random
                                     bytes); prints the digests of the manifest, the
                                     config and each layer, one a line

tests/integration/lib.sh's oci_layout makes gzip layers in memory, which takes
minutes for the half-GiB image here; the layers are plain tar instead
(application/vnd.oci.image.layer.v1.tar): nothing in a pull decompresses them
(`ctr content fetch` verifies digests, it does not unpack), and random bytes
would not compress anyway.
"""
import hashlib
import json
import os
import sys
import tarfile

CHUNK = 1 << 20


def random_file(path, size, prefix=b"", suffix=b""):
    """Writes prefix, size random bytes, suffix to path; returns (sha256 hex, total size)."""
    h = hashlib.sha256()
    total = 0
    with open(path, "wb") as f:
        f.write(prefix)
        h.update(prefix)
        total += len(prefix)
        left = size
        while left > 0:
            b = os.urandom(min(CHUNK, left))
            f.write(b)
            h.update(b)
            left -= len(b)
            total += len(b)
        f.write(suffix)
        h.update(suffix)
        total += len(suffix)
    return h.hexdigest(), total


def put_bytes(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def layer(blobs, index, size):
    """An uncompressed tar holding one file of size random bytes."""
    info = tarfile.TarInfo("layer%d/data.bin" % index)
    info.size, info.mode, info.mtime = size, 0o644, 0
    head = info.tobuf(format=tarfile.USTAR_FORMAT)
    pad = (-size) % tarfile.BLOCKSIZE
    tail = b"\0" * pad + b"\0" * (2 * tarfile.BLOCKSIZE)  # end-of-archive marker
    tmp = os.path.join(blobs, ".layer%d.tmp" % index)
    d, total = random_file(tmp, size, head, tail)
    os.rename(tmp, os.path.join(blobs, d))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + d, "size": total}


def image(out, tag, sizes):
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs)
    layers = [layer(blobs, i, s) for i, s in enumerate(sizes)]
    config = dict(mediaType="application/vnd.oci.image.config.v1+json", **put_bytes(blobs, json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {},
         "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}).encode()))
    manifest = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **put_bytes(blobs, json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": config, "layers": layers}).encode()))
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": [dict(manifest, annotations={"org.opencontainers.image.ref.name": tag})]}, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    for x in [manifest, config] + layers:
        print(x["digest"])


def main(argv):
    if len(argv) == 4 and argv[1] == "blob":
        d, _ = random_file(argv[2], int(argv[3]))
        print("sha256:" + d)
    elif len(argv) >= 5 and argv[1] == "image":
        image(argv[2], argv[3], [int(s) for s in argv[4:]])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
