#!/usr/bin/env python3
"""Which crates' code is resident in a running process (Linux, run as root).

Usage: python3 docs/benchmarks/resident-code.py PID [TOP]

Reads the executable's mappings from /proc/PID/maps, which of their pages are
present from /proc/PID/pagemap, and the code symbols with `nm -S` and
`c++filt`; prints, per crate (the first path segment of the demangled name;
C code without one grouped as C/aws_lc, C/sqlite or C/other), the bytes of its
functions that lie in resident pages against their total size. Needs binutils.
"""
import collections
import os
import re
import struct
import subprocess
import sys

PAGE = 4096
AWS_LC = ("Lp", "mldsa", "mlkem", "ec_", "p224", "p256", "p384", "bn_", "EVP", "chacha",
          "x25519", "ed25519", "RSA", "BN_", "SHA", "aes", "gcm", "pkey")
SQLITE = re.compile(r"^(fts|yy|where|rtree|select|expr|balance|btree|pager|vdbe|sqlite|"
                    r"resolve|analyze|multiSelect)")
CRATE = re.compile(r"^<?(?:&|\*const |\*mut |dyn )?([a-zA-Z_][a-zA-Z0-9_]*)::")


def text_pages(pid, exe):
    """(first virtual address, file offset, set of present page indexes) of the code mapping."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            parts = line.split()
            if len(parts) < 6 or parts[5] != exe or "x" not in parts[1]:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            present = {i for i in range((end - start) // PAGE)
                       if struct.unpack_from("<Q", entries, i * 8)[0] >> 63}
            return start, int(parts[2], 16), present
    raise SystemExit("no executable code mapping found")


def segment_vaddr(exe, file_offset):
    """The link-time address of the byte at `file_offset` in the code segment."""
    headers = subprocess.run(["readelf", "-lW", exe], capture_output=True, text=True).stdout
    for line in headers.splitlines():
        fields = line.split()
        if fields[:1] == ["LOAD"] and "E" in fields[-2]:
            offset, vaddr = int(fields[1], 16), int(fields[2], 16)
            return vaddr - offset + file_offset
    raise SystemExit("no executable LOAD segment")


def crate_of(name):
    match = CRATE.match(name)
    if match:
        return match.group(1)
    if "aws_lc" in name or name.startswith(AWS_LC):
        return "C/aws_lc"
    if "sqlite" in name or SQLITE.match(name):
        return "C/sqlite"
    return "C/other"


def main():
    pid = int(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    exe = os.readlink(f"/proc/{pid}/exe")
    _, file_offset, present = text_pages(pid, exe)
    base = segment_vaddr(exe, file_offset)
    symbols = subprocess.run(["nm", "-S", exe], capture_output=True, text=True).stdout
    code = [line.split(" ", 3) for line in symbols.splitlines()]
    code = [(int(a, 16), int(s, 16), n) for a, s, kind, n in (c for c in code if len(c) == 4)
            if kind in ("t", "T")]
    names = subprocess.run(["c++filt"], input="\n".join(n for _, _, n in code),
                           capture_output=True, text=True).stdout.splitlines()
    resident, total = collections.Counter(), collections.Counter()
    for (address, size, _), name in zip(code, names):
        crate = crate_of(name)
        total[crate] += size
        for page in range((address - base) // PAGE, (address + size - 1 - base) // PAGE + 1):
            if page in present:
                low = max(address, base + page * PAGE)
                high = min(address + size, base + (page + 1) * PAGE)
                resident[crate] += high - low
    print(f"code resident: {sum(resident.values()) // 1024} KiB of {sum(total.values()) // 1024} KiB"
          f" ({len(present)} pages present)")
    for crate, size in resident.most_common(top):
        print(f"{size // 1024:7d} of {total[crate] // 1024:7d} KiB  {crate}")


if __name__ == "__main__":
    main()
