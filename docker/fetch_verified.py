"""Download a file into an image only if its SHA-256 is the one given; exit 1 and write nothing otherwise.

The Python of the base image is all it needs (the slim image has no curl), so a binary such as tini is pinned
by its checksum like every package is by its hash.

Usage:
    python fetch_verified.py URL SHA256 DEST       # DEST is written with mode 0755
"""

import hashlib
import os
import sys
import urllib.request


def main(url: str, sha256: str, dest: str) -> int:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https URL of the Dockerfile)
        data = response.read()
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        print(f"fetch_verified: {url} has SHA-256 {found}, not {sha256}; nothing written", file=sys.stderr)
        return 1
    tmp = f"{dest}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]) if len(sys.argv) == 4 else "usage: python fetch_verified.py URL SHA256 DEST")
