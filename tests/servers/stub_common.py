"""What the provider stubs share: a threaded HTTP server on 127.0.0.1, a JSON-lines
record of every request (for the tests to assert on), injected faults, a store directory
for uploaded bytes and a state file the tests read.

Only the standard library: the stubs run wherever python3 does.
"""

import argparse
import errno
import hashlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def common_arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="JSON-lines file: one line per request")
    parser.add_argument("--store", required=True, help="directory for uploaded bytes and state.json")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OPERATION:KIND:COUNT",
        help="answer the next COUNT calls of OPERATION with KIND: 500 (an error answer) or "
        "cut (read part of the body, then drop the connection without an answer)",
    )
    return parser


class Faults:
    """Faults to inject, by operation name, each for a number of calls."""

    def __init__(self, specs):
        self.remaining = {}
        for spec in specs:
            operation, kind, count = spec.rsplit(":", 2)
            if kind not in ("500", "cut"):
                sys.exit(f"unknown fault kind {kind!r}")
            self.remaining[operation] = [kind, int(count)]
        self.lock = threading.Lock()

    def take(self, operation):
        with self.lock:
            entry = self.remaining.get(operation)
            if not entry or entry[1] <= 0:
                return None
            entry[1] -= 1
            return entry[0]


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, entry):
        with self.lock:
            self.file.write(json.dumps(entry, sort_keys=True) + "\n")
            self.file.flush()


class Store:
    """Uploaded bytes, one file per blob, and the stub's state for the tests."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
        self.lock = threading.RLock()

    def put_blob(self, data):
        blob = os.path.join(self.root, "blobs", uuid.uuid4().hex)
        with open(blob, "wb") as f:
            f.write(data)
        return blob

    def read_blob(self, blob):
        with open(blob, "rb") as f:
            return f.read()

    def write_state(self, state):
        tmp = os.path.join(self.root, "state.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(self.root, "state.json"))


def sha1_hex(data):
    return hashlib.sha1(data).hexdigest()


class Answer:
    """What a route returns: a status, headers and a body (bytes, or JSON)."""

    def __init__(self, status, body=b"", headers=None, content_type=None):
        self.status = status
        self.headers = dict(headers or {})
        if isinstance(body, (bytes, bytearray)):
            self.body = bytes(body)
            self.headers.setdefault("Content-Type", content_type or "application/octet-stream")
        else:
            self.body = json.dumps(body).encode()
            self.headers.setdefault("Content-Type", "application/json")


class Request:
    def __init__(self, handler, method, body):
        url = urlsplit(handler.path)
        self.method = method
        self.path = url.path
        self.query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.headers = {k.lower(): v for k, v in handler.headers.items()}
        self.body = body

    def form(self):
        """A form body (application/x-www-form-urlencoded) as a dict, or None."""
        if "x-www-form-urlencoded" not in self.headers.get("content-type", ""):
            return None
        return {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}

    def json(self):
        """The body as a JSON object, or None when it is not one."""
        try:
            value = json.loads(self.body or b"null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


class StubHandler(BaseHTTPRequestHandler):
    """Dispatches to the server's `route(request) -> (operation, handler)`; records
    every request with its answer; injects faults by operation name."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        stub = self.server.stub
        length = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        request = Request(self, method, b"")
        operation, route = stub.route(request, self.server.role)
        fault = stub.faults.take(operation)
        entry = {
            "role": self.server.role,
            "operation": operation,
            "method": method,
            "path": request.path,
            "query": request.query,
            "headers": request.headers,
            "fault": fault,
        }
        if fault == "cut":
            # Take some of the body, then drop the connection mid-upload.
            self.rfile.read(min(int(length or 0) // 2, 1 << 20))
            entry.update(status=None, body_length=None)
            stub.recorder.write(entry)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if length is None and (chunked or method in ("POST", "PUT")):
            # The providers want the length up front.
            answer = stub.length_required()
            self.close_connection = True
        else:
            request.body = self.rfile.read(int(length or 0))
            if fault == "500":
                answer = stub.server_error()
            else:
                try:
                    answer = route(request)
                except Exception as e:  # a stub bug must show, not hang the client
                    answer = Answer(500, f"stub error: {e!r}".encode(), content_type="text/plain")
        entry.update(
            status=answer.status,
            body_length=len(request.body),
            body_sha1=sha1_hex(request.body),
            json=request.json() if "json" in request.headers.get("content-type", "") else None,
            form=request.form(),
        )
        stub.recorder.write(entry)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        # One request per connection, as the plugins make them.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(answer.body)


def bind(port):
    """A server on 127.0.0.1:`port`. The test picked a port that was free, but until it
    binds, a client connection of a test running in parallel may hold it for a moment as
    its local port: wait that out, briefly."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return ThreadingHTTPServer(("127.0.0.1", port), StubHandler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Stub:
    """A provider stub: subclasses implement `route`, `server_error` and
    `length_required`, and keep their state under `self.lock`."""

    def __init__(self, args):
        self.args = args
        self.faults = Faults(args.fault)
        self.recorder = Recorder(args.log)
        self.store = Store(args.store)
        self.lock = threading.RLock()

    def base_url(self, port):
        return f"http://127.0.0.1:{port}"

    def serve(self, ports_and_roles):
        """Binds every (port, role) first, then serves them all until killed."""
        servers = []
        for port, role in ports_and_roles:
            server = bind(port)
            server.daemon_threads = True
            server.stub = self
            server.role = role
            servers.append(server)
        for server in servers[1:]:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[0].serve_forever()
