"""
A TLS-terminating reverse proxy for tests, the way the http listener is
meant to be deployed: TLS with the server's own certificate, then plain
HTTP to the listener with ``X-Forwarded-Proto: https`` and
``X-Forwarded-For`` added and ``Connection: close`` (one request per
connection, like a proxy speaking HTTP/1.0 to its back end).  Threads and
select, stdlib only.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading


class TLSProxy:
    def __init__(self, backendPort, certFile, keyFile):
        self.backendPort = backendPort
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certFile, keyFile)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                client, address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, address), daemon=True).start()

    def _serve(self, client, address):
        backend = None
        try:
            client.settimeout(30)
            tls = self.context.wrap_socket(client, server_side=True)
            head = b""
            while b"\r\n" not in head:
                chunk = tls.recv(65536)
                if not chunk:
                    return
                head += chunk
            line, _, rest = head.partition(b"\r\n")
            backend = socket.create_connection(("127.0.0.1", self.backendPort))
            backend.sendall(line + b"\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: " + address[0].encode()
                            + b"\r\nConnection: close\r\n" + rest)
            tls.setblocking(False)
            backend.setblocking(False)
            self._pump(tls, backend)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (client, backend):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def _pump(self, tls, backend):
        while True:
            readable = [tls] if tls.pending() else select.select([tls, backend], [], [], 60)[0]
            if not readable:
                return
            for s in readable:
                try:
                    data = s.recv(65536)
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                if not data:
                    return
                other = backend if s is tls else tls
                other.setblocking(True)
                other.sendall(data)
                other.setblocking(False)
