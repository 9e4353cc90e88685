"""A stub of the Google Drive API v3, for the tests (127.0.0.1 only): Drive has no emulator.

It follows the published REST reference (https://developers.google.com/drive/api/reference/rest/v3)
for exactly the calls the gdrive destination makes, with Google's status codes and JSON shapes:

- resumable upload (https://developers.google.com/drive/api/guides/manage-uploads#resumable):
  POST /upload/drive/v3/files?uploadType=resumable with the file's metadata opens a session
  (its URI in `Location`); PUTs to it carry `Content-Range: bytes a-b/total` (chunks in
  multiples of 256 KiB but the last) and get `308` with `Range: bytes=0-N` until the last,
  which gets 200 and the file resource; `Content-Range: bytes */total` asks the status;
  DELETE cancels the session (499);
- files.list: GET /drive/v3/files?q=...&pageToken=... (pages may hold fewer files than
  pageSize, as Drive's may; here at most 2, so clients must follow nextPageToken);
- files.get with alt=media: GET /drive/v3/files/ID?alt=media;
- files.delete: DELETE /drive/v3/files/ID (204);
- and the OAuth2 token endpoint (POST /token, see google_oauth.py), whose tokens are the
  only ones the API accepts: anything else gets 401 as Drive answers it.

Every request is recorded (google_oauth.Recorder); completed files are also written to
--store as ID (the bytes) and ID.json (the metadata), for the tests to read back.

Faults, for the tests: --unauthorized (every API call gets 401), --fail-once-at OFFSET
(the first chunk starting at OFFSET gets 503), --quota-bytes N (a chunk that would store
more than N bytes gets 403 storageQuotaExceeded).
"""

import base64
import json
import os
import re
import secrets
import threading
import time
import urllib.parse

import google_oauth

CHUNK_GRANULARITY = 256 * 1024
PAGE_LIMIT = 2
QUERY = re.compile(r"^'([\w-]+)' in parents and trashed=false(?: and name = '((?:[^'\\]|\\.)*)')?$")


def error(code, message, reason, status=None):
    body = {"error": {"code": code, "message": message,
                      "errors": [{"domain": "global", "reason": reason, "message": message}]}}
    if status:
        body["error"]["status"] = status
    return body


UNAUTHENTICATED = error(
    401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential.", "authError", "UNAUTHENTICATED")


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class Drive:
    """The files of one folder, and the open upload sessions."""

    def __init__(self, folder, store, args):
        self.folder = folder
        self.store = store
        self.args = args
        self.files = {}      # id -> metadata (id, name, parents, size, modifiedTime)
        self.sessions = {}   # upload_id -> {"meta", "total", "path", "received", "cancelled"}
        self.failed_once = False
        self.lock = threading.Lock()

    def create_session(self, meta, total):
        upload_id = secrets.token_urlsafe(12)
        path = os.path.join(self.store, f".session-{upload_id}")
        open(path, "wb").close()
        self.sessions[upload_id] = {"meta": meta, "total": total, "path": path,
                                    "received": 0, "cancelled": False}
        return upload_id

    def complete(self, session):
        file_id = "f" + secrets.token_hex(8)
        meta = {"kind": "drive#file", "id": file_id, "name": session["meta"]["name"],
                "parents": session["meta"]["parents"], "mimeType": "application/octet-stream",
                "size": str(session["received"]), "modifiedTime": now_rfc3339()}
        os.rename(session["path"], os.path.join(self.store, file_id))
        with open(os.path.join(self.store, file_id + ".json"), "w") as f:
            json.dump(meta, f)
        self.files[file_id] = meta
        return meta


class DriveHandler(google_oauth.Handler):
    drive = None

    def api(self, method):
        body = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        metadata = None
        if method == "POST" and body:
            try:
                metadata = json.loads(body)
            except ValueError:
                pass
        self.record(body, metadata=metadata)
        if self.drive.args.unauthorized or not self.issuer.valid(self.headers.get("Authorization")):
            return self.reply(401, UNAUTHENTICATED, {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        with self.drive.lock:
            if url.path == "/upload/drive/v3/files" and method == "POST":
                return self.open_session(query, metadata)
            if url.path == "/upload/drive/v3/files" and method == "PUT":
                return self.upload_chunk(query, body)
            if url.path == "/upload/drive/v3/files" and method == "DELETE":
                return self.cancel(query)
            if url.path == "/drive/v3/files" and method == "GET":
                return self.list_files(query)
            match = re.fullmatch(r"/drive/v3/files/([\w-]+)", url.path)
            if match and method == "GET":
                return self.get_file(match.group(1), query)
            if match and method == "DELETE":
                return self.delete_file(match.group(1))
        self.reply(404, error(404, "Not Found", "notFound"))

    def open_session(self, query, metadata):
        if query.get("uploadType") != "resumable":
            return self.reply(400, error(400, "Invalid uploadType", "invalid"))
        if not metadata or not metadata.get("name"):
            return self.reply(400, error(400, "A file name is required.", "required"))
        parents = metadata.get("parents") or []
        if parents != [self.drive.folder]:
            return self.reply(404, error(404, f"File not found: {','.join(parents)}.", "notFound"))
        total = self.headers.get("X-Upload-Content-Length")
        upload_id = self.drive.create_session(metadata, int(total) if total else None)
        host = self.headers.get("Host")
        location = f"http://{host}/upload/drive/v3/files?uploadType=resumable&upload_id={upload_id}"
        self.reply(200, b"", {"Location": location})

    def session(self, query):
        session = self.drive.sessions.get(query.get("upload_id", ""))
        if session is None or session["cancelled"]:
            self.reply(404, error(404, "Upload session not found or cancelled.", "notFound"))
            return None
        return session

    def progress(self, session):
        headers = {}
        if session["received"]:
            headers["Range"] = f"bytes=0-{session['received'] - 1}"
        self.reply(308, b"", headers)

    def upload_chunk(self, query, body):
        session = self.session(query)
        if session is None:
            return
        match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", self.headers.get("Content-Range", ""))
        if not match:
            return self.reply(400, error(400, "Invalid Content-Range header.", "badContent"))
        first, last, total = match.group(1), match.group(2), match.group(3)
        total = None if total == "*" else int(total)
        if first is None:  # a status query
            if total is not None and session["received"] == total:
                return self.reply(200, self.drive.complete(session))
            return self.progress(session)
        first, last = int(first), int(last)
        if last - first + 1 != len(body) or first > session["received"]:
            return self.reply(400, error(400, "Invalid Content-Range for the bytes sent.", "badContent"))
        final = total is not None and last + 1 == total
        if not final and len(body) % CHUNK_GRANULARITY:
            return self.reply(400, error(400, "Chunks must be multiples of 256 KiB.", "badContent"))
        args = self.drive.args
        if args.fail_once_at is not None and first == args.fail_once_at and not self.drive.failed_once:
            self.drive.failed_once = True
            return self.reply(503, error(503, "Service Unavailable", "backendError"))
        if args.quota_bytes is not None and last + 1 > args.quota_bytes:
            return self.reply(403, error(403, "The user's Drive storage quota has been exceeded.",
                                         "storageQuotaExceeded"))
        with open(session["path"], "r+b") as f:
            f.seek(first)
            f.write(body)
            f.truncate()
        session["received"] = last + 1
        if final:
            meta = self.drive.complete(session)
            return self.reply(200, {k: meta[k] for k in ("kind", "id", "name", "mimeType")})
        self.progress(session)

    def cancel(self, query):
        session = self.session(query)
        if session is None:
            return
        session["cancelled"] = True
        os.remove(session["path"])
        self.reply(499, b"")

    def list_files(self, query):
        match = QUERY.fullmatch(query.get("q", ""))
        if not match:
            return self.reply(400, error(400, "Invalid Value", "invalid"))
        folder, name = match.group(1), match.group(2)
        if name is not None:
            name = re.sub(r"\\(.)", r"\1", name)
        files = [f for f in self.drive.files.values()
                 if folder in f["parents"] and (name is None or f["name"] == name)]
        start = int(base64.urlsafe_b64decode(query["pageToken"]).decode()) if query.get("pageToken") else 0
        size = min(int(query.get("pageSize", 100)), PAGE_LIMIT)
        page = files[start:start + size]
        answer = {"kind": "drive#fileList", "incompleteSearch": False,
                  "files": [{k: f[k] for k in ("id", "name", "size", "modifiedTime")} for f in page]}
        if start + size < len(files):
            answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        self.reply(200, answer)

    def get_file(self, file_id, query):
        meta = self.drive.files.get(file_id)
        if meta is None:
            return self.reply(404, error(404, f"File not found: {file_id}.", "notFound"))
        if query.get("alt") != "media":
            return self.reply(200, meta)
        with open(os.path.join(self.drive.store, file_id), "rb") as f:
            self.reply(200, f.read(), content_type="application/octet-stream")

    def delete_file(self, file_id):
        if self.drive.files.pop(file_id, None) is None:
            return self.reply(404, error(404, f"File not found: {file_id}.", "notFound"))
        os.remove(os.path.join(self.drive.store, file_id))
        os.remove(os.path.join(self.drive.store, file_id + ".json"))
        self.reply(204)


if __name__ == "__main__":
    parser = google_oauth.arguments(__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="the one folder id that exists")
    parser.add_argument("--store", required=True, help="where completed files are written")
    parser.add_argument("--unauthorized", action="store_true")
    parser.add_argument("--fail-once-at", type=int)
    parser.add_argument("--quota-bytes", type=int)
    args = parser.parse_args()
    DriveHandler.drive = Drive(args.folder, args.store, args)
    google_oauth.serve(DriveHandler, args)
