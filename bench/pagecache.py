#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""bench/pagecache.py DIR MIB: how fast this machine writes new data into the page cache.

Writes MIB MiB into a new file under DIR in 1 MiB pieces (no fsync), then the
same bytes over the same file again (its page-cache pages now exist), and
prints "first_mb_s again_mb_s". On a virtual machine whose host backs guest
memory lazily and takes freed memory back (a balloon with free-page reporting:
Firecracker, many clouds), the first rate is several times lower: every new
page costs a fault in the host. A caching server writes each cold blob into the
page cache once more than the client does, so on such a machine it pays that
rate for it; the bench reports both so that the cold-pull row can be read.
"""
import os
import sys
import time


def write(path, size, flags):
    buf = b"\xa5" * 1048576
    fd = os.open(path, flags, 0o600)
    try:
        t0 = time.monotonic()
        for _ in range(size // len(buf)):
            os.write(fd, buf)
        return size / 1e6 / max(time.monotonic() - t0, 1e-9)
    finally:
        os.close(fd)


def main():
    path = os.path.join(sys.argv[1], "pagecache.probe")
    size = int(sys.argv[2]) * 1048576
    try:
        first = write(path, size, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        again = write(path, size, os.O_WRONLY)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    print(f"{first:.0f} {again:.0f}")


if __name__ == "__main__":
    main()
