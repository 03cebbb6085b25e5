#!/usr/bin/env python3
"""Connects to HOST PORT like a pinhole thief would, sending nothing.

Prints "REFUSED <how>" and exits 0 if the connection is refused, or closed/reset without
any data within WITHIN seconds (default 3); prints "SERVED <why>" and exits 1 if it stays
open or data arrives.
"""

import socket
import sys


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    within = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        print("REFUSED connect failed:", e, flush=True)
        return 0
    sock.settimeout(within)
    try:
        data = sock.recv(256)
    except socket.timeout:
        print("SERVED connection held open for", within, "s", flush=True)
        return 1
    except OSError as e:
        print("REFUSED reset:", e, flush=True)
        return 0
    if not data:
        print("REFUSED closed without data", flush=True)
        return 0
    print("SERVED received", len(data), "bytes", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
