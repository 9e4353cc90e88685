# Records every request as a JSON line; `/status/500…` answers 500, `/slow…` never answers
# in time. For notifiers whose services have no emulator (webhook, Slack, Discord,
# HipChat, ping): the tests check the recorded requests against the documented payloads.
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
log = open(sys.argv[2], "a")
class H(BaseHTTPRequestHandler):
    def handle_any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        log.write(json.dumps({"method": self.command, "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}) + "\n")
        log.flush()
        if "/slow" in self.path:
            time.sleep(60)
        code = 500 if "/status/500" in self.path else 200
        self.send_response(code)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_POST = do_PUT = do_GET = handle_any
    def log_message(self, *a): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
