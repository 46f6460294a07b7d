"""
Page weight of the webmail app (not a test).

    python bench/webmail_weight.py

Every file under mailnet/http/static/webmail/ (what a first visit loads:
index.html, app.css, js/*.js), raw and gzip-compressed (level 6, what the
static server sends when the browser accepts gzip), per file and in total.
The peer in the same run: the same files as one concatenated gzip stream,
the floor a bundler could reach (the app has no build step).
"""

from __future__ import annotations

import gzip
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mailnet", "http", "static", "webmail")


def main():
    rows, raw, packed, everything = [], 0, 0, b""
    for base, _, names in os.walk(ROOT):
        for name in sorted(names):
            path = os.path.join(base, name)
            data = open(path, "rb").read()
            z = len(gzip.compress(data, 6))
            rows.append((os.path.relpath(path, ROOT), len(data), z))
            raw += len(data)
            packed += z
            everything += data
    for name, size, z in sorted(rows):
        print(f"{name:24} {size:8} B  gzip {z:7} B")
    bundle = len(gzip.compress(everything, 6))
    print(f"{'total (' + str(len(rows)) + ' files)':24} {raw:8} B  gzip {packed:7} B")
    print(f"{'peer: one gzip stream':24} {'':8}    gzip {bundle:7} B  (files/bundle {packed / bundle:.2f}x)")


if __name__ == "__main__":
    main()
