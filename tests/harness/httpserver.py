#!/usr/bin/python3
"""A local HTTP server standing in for a slow third-party API (tests, demo, benchmarks).

asyncio, one thread: thousands of requests can wait in /delay at once, which the I/O-bound
benchmark needs (2000 concurrent calls that each take 1 s). Listens on 127.0.0.1 (port 0
unless given) and prints its port as the first line of stdout.
  /status/<code>   answers with that status
  /delay/<seconds> answers 200 after sleeping
  /delay/<seconds>/<key>  the same, counting the calls per key (a task's runs)
  /hits/<key>      how many calls /delay/.../<key> has had: "N T1 T2 ..." (arrival times, Unix s)
  /hitkeys         every key counted so far: JSON {"<key>": [T1, T2, ...]}
  /echo            echoes the request body (any method)
  /json            a small JSON document
  /redirect        302 to /json
HTTP/1.1 keep-alive. Exits on SIGTERM or SIGINT.
"""
import asyncio
import json
import signal
import sys
import time

HITS = {}

REASONS = {200: "OK", 302: "Found", 404: "Not Found", 500: "Internal Server Error"}


async def respond(writer, code, body=b"", ctype="text/plain", extra=""):
    head = (f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n")
    writer.write(head.encode() + body)
    await writer.drain()


async def handle(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0") or 0)
            data = await reader.readexactly(n) if n else b""
            parts = path.split("?")[0].strip("/").split("/")
            if parts[0] == "status" and len(parts) == 2:
                await respond(writer, int(parts[1]), b"status\n")
            elif parts[0] == "delay" and len(parts) in (2, 3):
                if len(parts) == 3:
                    HITS.setdefault(parts[2], []).append(time.time())
                await asyncio.sleep(float(parts[1]))
                await respond(writer, 200, b"slept\n")
            elif parts[0] == "hitkeys" and len(parts) == 1:
                await respond(writer, 200, json.dumps(HITS).encode(), "application/json")
            elif parts[0] == "hits" and len(parts) == 2:
                times = HITS.get(parts[1], [])
                text = " ".join([str(len(times))] + [f"{t:.3f}" for t in times])
                await respond(writer, 200, text.encode() + b"\n")
            elif parts[0] == "echo":
                await respond(writer, 200, data, headers.get("content-type", "text/plain"))
            elif parts[0] == "json":
                await respond(writer, 200, json.dumps({"ok": True, "n": 42}).encode(),
                              "application/json")
            elif parts[0] == "redirect":
                await respond(writer, 302, b"", extra="Location: /json\r\n")
            else:
                await respond(writer, 404, b"not found\n")
            if method == "HEAD" or headers.get("connection", "").lower() == "close":
                break
    except (ConnectionError, ValueError, asyncio.IncompleteReadError):
        pass
    except asyncio.CancelledError:
        pass  # shutdown with requests still waiting in /delay: end quietly, no traceback
    finally:
        writer.close()


async def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=8192)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
