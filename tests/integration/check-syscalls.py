#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Would layerd.service's sandbox let the traced run through?

    check-syscalls.py STRACE_OUTPUT UNIT_FILE

STRACE_OUTPUT: `strace -f -o FILE` of layerd serving. Checks the system calls
against the unit's SystemCallFilter= lines (allow list, then ~deny lists;
groups expanded by `systemd-analyze syscall-filter`), the socket families
against RestrictAddressFamilies=, and writable+executable mappings against
MemoryDenyWriteExecute=. Prints "1 what" or "0 what" a line.
"""
import re
import subprocess
import sys

_groups = {}


def expand(name):
    """The system calls of NAME (a call, or a @group, expanded recursively)."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], check=True,
                             capture_output=True, text=True).stdout
        calls = set()
        for line in out.splitlines()[1:]:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            calls |= expand(line)
        _groups[name] = calls
    return _groups[name]


def unit_values(path, key):
    with open(path) as f:
        return [line.split("=", 1)[1].strip() for line in f if line.startswith(key + "=")]


def main():
    trace, unit = sys.argv[1], sys.argv[2]
    calls, families, wx = set(), set(), []
    with open(trace) as f:
        for line in f:
            m = re.match(r"^\d+\s+([a-z0-9_]+)\((.*)", line)
            if not m:
                continue
            calls.add(m.group(1))
            if m.group(1) == "socket":
                families.add(m.group(2).split(",")[0])
            if m.group(1) in ("mmap", "mprotect", "pkey_mprotect") and "PROT_WRITE" in line and "PROT_EXEC" in line:
                wx.append(line.strip())

    allowed, denied = set(), set()
    for v in unit_values(unit, "SystemCallFilter"):
        if v.startswith("~"):
            for name in v[1:].split():
                denied |= expand(name)
        else:
            for name in v.split():
                allowed |= expand(name)
    blocked = sorted(c for c in calls if c not in allowed or c in denied)
    ok = bool(calls) and bool(allowed) and not blocked
    print("%d SystemCallFilter= allows each of the %d system calls layerd made%s"
          % (ok, len(calls), "" if ok else " (blocked: %s)" % " ".join(blocked)))

    fams = set(" ".join(unit_values(unit, "RestrictAddressFamilies")).split())
    bad = sorted(families - fams)
    print("%d RestrictAddressFamilies= allows every socket family layerd opened (%s)%s"
          % (bool(families) and not bad, " ".join(sorted(families)), "" if not bad else "; refused: " + " ".join(bad)))

    mdwe = unit_values(unit, "MemoryDenyWriteExecute") == ["yes"]
    print("%d no writable and executable mapping (MemoryDenyWriteExecute=%s)%s"
          % (not wx, "yes" if mdwe else "no", "" if not wx else ": " + wx[0][:120]))


if __name__ == "__main__":
    main()
