#!/usr/bin/env python3
"""Lab self-test server: listens on every PORT given (IPv4 and IPv6 wildcard) and
answers each connection with "PEER <client ip> <local port>\\n", then closes it.
Runs until killed.

    peer_echo.py PORT...
"""

import selectors
import socket
import sys


def main():
    sel = selectors.DefaultSelector()
    for port in map(int, sys.argv[1:]):
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port))
            s.listen(16)
            sel.register(s, selectors.EVENT_READ)
    print("READY", flush=True)
    while True:
        for key, _ in sel.select():
            conn, peer = key.fileobj.accept()
            local_port = conn.getsockname()[1]
            try:
                conn.sendall(("PEER %s %d\n" % (peer[0], local_port)).encode())
            finally:
                conn.close()


if __name__ == "__main__":
    sys.exit(main())
