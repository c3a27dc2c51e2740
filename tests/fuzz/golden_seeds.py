#!/usr/bin/python3
"""golden_seeds.py GOLDEN_DIR OUT_DIR - seed corpus for fuzz_codec from the Celery captures.

Each task_*, malformed_* and result_* capture becomes one input in fuzz_codec's format:
SEL HEADERS '\\0' PROPS '\\0' BODY (see fuzz_codec.c), with SEL 0 (every header in its own
AMQP kind, default depth limit) and, for task captures, copies with SEL 0x7f (most headers in
another kind) and 0x80 (depth limit 2).
"""
import base64
import glob
import json
import os
import sys


def body_bytes(raw):
    if isinstance(raw, dict) and "$bytes_b64" in raw:
        return base64.b64decode(raw["$bytes_b64"])
    return raw.encode("utf-8", "surrogatepass")


def seed(capture):
    props = capture.get("properties", {})
    keep = {k: props[k] for k in ("content_type", "content_encoding", "reply_to",
                                  "correlation_id", "priority", "delivery_mode") if k in props}
    # 0x2000: the headers flag in the captured property flag word
    has_headers = int(capture.get("property_flags", "0x2000"), 16) & 0x2000
    hdr = json.dumps(capture.get("headers") or {}).encode() if has_headers else b""
    return hdr + b"\0" + json.dumps(keep).encode() + b"\0" + body_bytes(capture["body_raw"])


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n = 0
    for path in sorted(glob.glob(os.path.join(src, "*.json"))):
        name = os.path.basename(path)[:-5]
        if not name.startswith(("task_", "malformed_", "result_")):
            continue
        with open(path, encoding="utf-8") as f:
            capture = json.load(f)
        if not isinstance(capture, dict) or "body_raw" not in capture:
            continue
        data = seed(capture)
        sels = [0, 0x7F, 0x80] if name.startswith("task_") else [0]
        for sel in sels:
            with open(os.path.join(out, "golden-%s-%02x" % (name, sel)), "wb") as f:
                f.write(bytes([sel]) + data)
            n += 1
    if n == 0:
        sys.exit("golden_seeds: no captures in %s" % src)
    print("golden_seeds: %d seeds from %s" % (n, src))


if __name__ == "__main__":
    main()
