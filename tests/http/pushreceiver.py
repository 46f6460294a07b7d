"""A Web Push service for the push tests: http.server on 127.0.0.1 (or TLS), keeping what is POSTed."""

import http.server
import ssl
import threading


class PushReceiver:
    """
    Records ``(path, headers (names lower case), body)`` of every POST in ``received`` and
    answers ``status``; ``certFile``/``keyFile`` make it https.
    """

    def __init__(self, certFile=None, keyFile=None, host="127.0.0.1"):
        self.host = host  # another address of this machine: e.g. the test's side of a node's namespace
        self.received = []
        self.status = 201
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.scheme = "http"
        if certFile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certFile, keyFile)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/push/1"):
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
