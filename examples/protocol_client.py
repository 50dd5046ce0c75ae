#!/usr/bin/env python3
"""A complete Luminary protocol client in plain Python, for bridge authors.

Usage: protocol_client.py SOCKET PHOTO PRESET [INTENSITY]

Speaks docs/PROTOCOL.md directly: 4-byte little-endian length + JSON frames, hello/welcome,
one enhance request, progress events until exactly one done or error. Prints each event as
a JSON line; exits 0 on done, 1 on error.
"""
import json
import socket
import struct
import sys


def send(sock, msg):
    body = json.dumps(msg).encode()
    sock.sendall(struct.pack("<I", len(body)) + body)


def recv(sock):
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            buf += chunk
        return buf

    (length,) = struct.unpack("<I", exact(4))
    return json.loads(exact(length))


def main():
    path, photo, preset = sys.argv[1], sys.argv[2], sys.argv[3]
    intensity = float(sys.argv[4]) if len(sys.argv) > 4 else None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    send(sock, {"type": "hello", "protocol": "1.0", "client": "protocol_client.py/1"})
    welcome = recv(sock)
    if welcome.get("type") != "welcome":
        print(json.dumps(welcome))
        return 1
    request = {"type": "enhance", "id": "1", "source": photo, "preset": preset}
    if intensity is not None:
        request["intensity"] = intensity
    send(sock, request)
    while True:
        event = recv(sock)
        print(json.dumps(event), flush=True)
        if event.get("id") == "1" and event["type"] in ("done", "error"):
            return 0 if event["type"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
