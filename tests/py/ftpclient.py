#!/usr/bin/env python3
"""Scripted ftplib client for the ftpsgate tests (run inside a lab namespace).

    ftpclient.py --host H --port P [--ca FILE] [--cert FILE --key FILE] [--plain] [--active] STEP...

Explicit FTPS (AUTH TLS, PBSZ 0, PROT P) unless --plain. Data connections resume the
control connection's TLS session (ftplib does not do that by itself; vsftpd and ftpsgate
refuse data connections that do not). `trust_server_pasv_ipv4_address = True`: like lftp,
it connects to the address printed in 227, so a wrong advertised address fails.

Steps (arguments separated by "~~", since FTP commands like EPRT contain '|'):
  get~~REMOTE~~LOCAL            RETR into LOCAL
  put~~LOCAL~~REMOTE            STOR from LOCAL
  pasv                          send PASV, print "REPLY <227 ...>"
  epsv                          send EPSV, print "REPLY <229 ...>"
  cmd~~LINE                     send LINE, print "REPLY <reply>" (errors too, never fails)
  expect_err~~LINE              send LINE, must get 4xx/5xx; prints "REPLY <reply>"
  try_active_get~~REMOTE~~LOCAL active-mode RETR that must be refused with 4xx/5xx;
                                prints "ACTIVE_REFUSED <reply>", then back to passive
  active~~on / active~~off      switch ftplib between PORT and PASV
  hold_get~~REMOTE~~LOCAL~~GO   PASV, print "PASV_ADDR host port", wait until file GO
                                exists, then connect to that address and RETR
Prints "DONE" and exits 0 when every step succeeded; a traceback and exit 1 otherwise.
"""

import argparse
import ftplib
import os
import socket
import ssl
import sys
import time


class ResumingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def say(*parts):
    print(*parts, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=21)
    ap.add_argument("--ca")
    ap.add_argument("--cert", help="client certificate (PEM) to present")
    ap.add_argument("--key", help="its private key (PEM)")
    ap.add_argument("--user", default="ftpsgatetest")
    ap.add_argument("--password", default="ftpsgate-pass")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--active", action="store_true")
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("steps", nargs="*")
    args = ap.parse_args()

    if args.plain:
        ftp = ftplib.FTP()
    else:
        ctx = ssl.create_default_context(cafile=args.ca)
        if args.cert:
            ctx.load_cert_chain(certfile=args.cert, keyfile=args.key)
        ftp = ResumingFTP_TLS(context=ctx)
    ftp.trust_server_pasv_ipv4_address = True
    say("GREETING", ftp.connect(args.host, args.port, timeout=args.timeout))
    if not args.plain:
        ftp.auth()
    ftp.login(args.user, args.password)
    if not args.plain:
        ftp.prot_p()
    ftp.voidcmd("TYPE I")
    ftp.set_pasv(not args.active)

    for step in args.steps:
        op, *rest = step.split("~~")
        say("STEP", step)
        if op == "get":
            remote, local = rest
            with open(local, "wb") as f:
                say("REPLY", ftp.retrbinary("RETR " + remote, f.write))
        elif op == "put":
            local, remote = rest
            with open(local, "rb") as f:
                say("REPLY", ftp.storbinary("STOR " + remote, f))
        elif op == "pasv":
            say("REPLY", ftp.sendcmd("PASV"))
        elif op == "epsv":
            say("REPLY", ftp.sendcmd("EPSV"))
        elif op == "cmd":
            try:
                say("REPLY", ftp.sendcmd(rest[0]))
            except ftplib.Error as e:
                say("REPLY", e)
        elif op == "expect_err":
            try:
                reply = ftp.sendcmd(rest[0])
            except (ftplib.error_perm, ftplib.error_temp) as e:
                say("REPLY", e)
            else:
                raise SystemExit("expected an error reply to %r, got %r" % (rest[0], reply))
        elif op == "try_active_get":
            remote, local = rest
            ftp.set_pasv(False)
            try:
                with open(local, "wb") as f:
                    reply = ftp.retrbinary("RETR " + remote, f.write)
            except (ftplib.error_perm, ftplib.error_temp) as e:
                say("ACTIVE_REFUSED", e)
            else:
                raise SystemExit("active-mode RETR unexpectedly worked: %r" % reply)
            finally:
                ftp.set_pasv(True)
        elif op == "active":
            ftp.set_pasv(rest[0] != "on")
        elif op == "hold_get":
            remote, local, go = rest
            reply = ftp.sendcmd("PASV")
            say("REPLY", reply)
            host, port = ftplib.parse227(reply)
            say("PASV_ADDR", host, port)
            deadline = time.time() + 30
            while not os.path.exists(go):
                if time.time() > deadline:
                    raise SystemExit("go file never appeared")
                time.sleep(0.05)
            sock = socket.create_connection((host, port), timeout=args.timeout)
            say("REPLY", ftp.sendcmd("RETR " + remote))
            conn = sock
            if not args.plain:
                conn = ftp.context.wrap_socket(
                    sock, server_hostname=ftp.host, session=ftp.sock.session
                )
            with open(local, "wb") as f:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    f.write(chunk)
            if not args.plain:
                conn.unwrap()
            conn.close()
            say("REPLY", ftp.voidresp())
        else:
            raise SystemExit("unknown step %r" % step)

    try:
        ftp.quit()
    except (ftplib.Error, OSError):
        pass
    say("DONE")


if __name__ == "__main__":
    sys.exit(main())
