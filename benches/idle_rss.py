#!/usr/bin/env python3
"""RSS per idle keep-alive HTTP connection of a running server (loopback only).

Usage: benches/idle_rss.py PID PORT [N]

Opens N (default 8000) connections to 127.0.0.1:PORT, sends one keep-alive request on each,
reads each response, keeps them all open and idle, and prints the growth of the server's
VmRSS (from /proc/PID/status) divided by N. Raise `ulimit -n` above N first.
"""
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
    before = rss_kib(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\n" not in data or not data.endswith(b"Hello World!"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("server closed a keep-alive connection")
            data += chunk
    time.sleep(0.5)
    after = rss_kib(pid)
    print(f"{n} idle keep-alive connections: {(after - before) * 1024 / n:.0f} bytes RSS each "
          f"(VmRSS {before} -> {after} KiB)")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
