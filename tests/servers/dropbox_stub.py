"""A stub of the Dropbox API v2, for the `dropbox` destination's tests.

Dropbox has no emulator. This follows the published API definitions for exactly the
calls the destination makes, on two ports like Dropbox's two hosts: RPC endpoints
(`files/list_folder`, `/continue`, `files/delete_v2`) on the API port take and return
JSON; content endpoints (`files/upload`, `files/upload_session/start`, `append_v2`,
`finish`, `files/download`) on the content port take their argument as JSON in the
`Dropbox-API-Arg` header (ASCII only) and bytes as the body. It checks the bearer
token (401 `invalid_access_token`), content types, session offsets (409
`incorrect_offset`), the 150 MB request limit, and answers missing paths with 409
`path/not_found` or `path_lookup/not_found`, as Dropbox does. `oauth2/token` exchanges
a refresh token (with the app's key and secret) for short-lived access tokens. Folders are implicit in
uploads and stay when emptied; a session's file appears only at `finish`. Listings come
in small pages, so `has_more` and the cursor are exercised.

    python3 dropbox_stub.py --port API_PORT --content-port CONTENT_PORT --log requests.jsonl \
        --store DIR --token TOKEN [--refresh-token R --app-key K --app-secret S]
        [--page-size N] [--fault OPERATION:500|cut:COUNT]
"""

import base64
import json
import secrets
import time
from urllib.parse import parse_qs

from stub_common import Answer, Stub, common_arguments, sha1_hex

MAX_REQUEST_BYTES = 150 * 1024 * 1024
RPC = {"files/list_folder", "files/list_folder/continue", "files/delete_v2"}
CONTENT = {
    "files/upload",
    "files/upload_session/start",
    "files/upload_session/append_v2",
    "files/upload_session/finish",
    "files/download",
}


def endpoint_error(tag, inner=None, **extra):
    """409: the endpoint's own error, with Dropbox's `error_summary`."""
    error = {".tag": tag, **extra}
    summary = tag + "/"
    if inner:
        error[tag] = {".tag": inner}
        summary += inner + "/"
    return Answer(409, {"error_summary": summary + ".", "error": error})


def bad_input(message):
    return Answer(400, f"Error in call to API function: {message}".encode(), content_type="text/plain")


def now_stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class DropboxStub(Stub):
    def __init__(self, args):
        super().__init__(args)
        # lower-case path -> metadata (with "blob" for files); folders are implicit.
        self.files = {}
        self.folders = {}
        self.sessions = {}
        self.cursors = {}
        # The configured token, and those handed out for the refresh token.
        self.tokens = {args.token}
        self.save()

    def server_error(self):
        return Answer(500, b"Internal Server Error (injected fault)", content_type="text/plain")

    def length_required(self):
        return Answer(411, b"Length Required", content_type="text/plain")

    def route(self, request, role):
        if request.path == "/oauth2/token" and role == "api":
            return "oauth2/token", self.refresh
        endpoint = request.path[len("/2/"):] if request.path.startswith("/2/") else request.path
        handlers = {
            "files/list_folder": self.list_folder,
            "files/list_folder/continue": self.list_folder_continue,
            "files/delete_v2": self.delete,
            "files/upload": self.upload,
            "files/upload_session/start": self.session_start,
            "files/upload_session/append_v2": self.session_append,
            "files/upload_session/finish": self.session_finish,
            "files/download": self.download,
        }
        wanted_role = "api" if endpoint in RPC else "content" if endpoint in CONTENT else None
        if wanted_role != role:
            return endpoint, lambda _r: Answer(404, b"Unknown API function", content_type="text/plain")
        return endpoint, self.checked(handlers[endpoint], role)

    def checked(self, handler, role):
        """Method, bearer token, content type and argument, as Dropbox checks them."""

        def call(request):
            if request.method != "POST":
                return Answer(405, b"use POST", content_type="text/plain")
            bearer = request.headers.get("authorization", "")
            if not bearer.startswith("Bearer ") or bearer[len("Bearer "):] not in self.tokens:
                return Answer(
                    401,
                    {"error_summary": "invalid_access_token/.", "error": {".tag": "invalid_access_token"}},
                )
            if role == "api":
                if request.headers.get("content-type", "").split(";")[0] != "application/json":
                    return bad_input('Bad HTTP "Content-Type" header. Expecting "application/json".')
                arg = request.json()
            else:
                raw = request.headers.get("dropbox-api-arg")
                if raw is None or not raw.isascii():
                    return bad_input('Missing or non-ASCII "Dropbox-API-Arg" header.')
                try:
                    arg = json.loads(raw)
                except ValueError:
                    return bad_input('Bad "Dropbox-API-Arg" header: not JSON.')
                if request.body and request.headers.get("content-type") != "application/octet-stream":
                    return bad_input('Bad HTTP "Content-Type" header. Expecting "application/octet-stream".')
                if len(request.body) > MAX_REQUEST_BYTES:
                    return bad_input("request body over 150 MB: use an upload session")
            if not isinstance(arg, dict):
                return bad_input("the argument must be a JSON object")
            with self.lock:
                answer = handler(arg, request.body)
                self.save()
                return answer

        return call

    def save(self):
        self.store.write_state(
            {
                "files": sorted(
                    ({"path": f["path_display"], "size": f["size"], "blob": f["blob"]} for f in self.files.values()),
                    key=lambda f: f["path"],
                ),
                "folders": sorted(self.folders[k]["path_display"] for k in self.folders),
                "sessions": [
                    {"session_id": sid, "offset": len(s["data"]), "finished": s["finished"]}
                    for sid, s in self.sessions.items()
                ],
            }
        )

    # -- OAuth ------------------------------------------------------------------------

    def refresh(self, request):
        """`grant_type=refresh_token`, the app identified by form fields or Basic auth."""
        if request.method != "POST":
            return Answer(405, b"use POST", content_type="text/plain")
        if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return Answer(400, {"error": "invalid_request", "error_description": "form body expected"})
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        basic = request.headers.get("authorization", "")
        if basic.startswith("Basic "):
            key, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            form.setdefault("client_id", key)
            form.setdefault("client_secret", secret)
        if form.get("grant_type") != "refresh_token":
            return Answer(400, {"error": "unsupported_grant_type", "error_description": "refresh_token only"})
        if form.get("client_id") != self.args.app_key or form.get("client_secret") != self.args.app_secret:
            return Answer(400, {"error": "invalid_client", "error_description": "Invalid client_id or client_secret"})
        if not self.args.refresh_token or form.get("refresh_token") != self.args.refresh_token:
            return Answer(400, {"error": "invalid_grant", "error_description": "refresh token is invalid or revoked"})
        token = "sl.u." + secrets.token_hex(16)
        with self.lock:
            self.tokens.add(token)
        return Answer(200, {"access_token": token, "token_type": "bearer", "expires_in": 14400})

    # -- writing ----------------------------------------------------------------------

    def commit(self, commit, data):
        path = commit.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
            return endpoint_error("path", "malformed_path")
        mode = commit.get("mode", "add")
        mode = mode.get(".tag") if isinstance(mode, dict) else mode
        key = path.lower()
        if key in self.folders:
            return endpoint_error("path", "conflict")
        if key in self.files and mode == "add" and not commit.get("autorename"):
            return endpoint_error("path", "conflict")
        parts = path.split("/")
        for depth in range(2, len(parts)):
            folder = "/".join(parts[:depth])
            if folder.lower() in self.files:
                return endpoint_error("path", "conflict")
            self.folders.setdefault(
                folder.lower(), {".tag": "folder", "name": parts[depth - 1], "path_lower": folder.lower(),
                                 "path_display": folder, "id": "id:" + secrets.token_hex(8)}
            )
        meta = {
            "name": parts[-1],
            "id": "id:" + secrets.token_hex(8),
            "client_modified": now_stamp(),
            "server_modified": now_stamp(),
            "rev": secrets.token_hex(9),
            "size": len(data),
            "path_lower": key,
            "path_display": path,
            "content_hash": sha1_hex(data),
            "is_downloadable": True,
            "blob": self.store.put_blob(data),
        }
        self.files[key] = meta
        return Answer(200, self.public(meta))

    def public(self, meta):
        return {k: v for k, v in meta.items() if k != "blob"}

    def upload(self, arg, body):
        return self.commit(arg, body)

    def session_start(self, arg, body):
        session_id = "pid_upload_session:" + secrets.token_hex(16)
        self.sessions[session_id] = {"data": bytearray(body), "closed": bool(arg.get("close")), "finished": False}
        return Answer(200, {"session_id": session_id})

    def session_at(self, cursor):
        """The session a cursor names, if it is open and at the cursor's offset."""
        if not isinstance(cursor, dict):
            return None, bad_input("cursor is required")
        session = self.sessions.get(cursor.get("session_id"))
        if session is None or session["finished"]:
            return None, endpoint_error("lookup_failed", "not_found")
        if cursor.get("offset") != len(session["data"]):
            return None, Answer(
                409,
                {
                    "error_summary": "lookup_failed/incorrect_offset/.",
                    "error": {".tag": "lookup_failed", "lookup_failed": {".tag": "incorrect_offset",
                                                                         "correct_offset": len(session["data"])}},
                },
            )
        return session, None

    def session_append(self, arg, body):
        session, failed = self.session_at(arg.get("cursor"))
        if failed:
            return failed
        if session["closed"]:
            return endpoint_error("lookup_failed", "closed")
        session["data"] += body
        session["closed"] = bool(arg.get("close"))
        return Answer(200, None)

    def session_finish(self, arg, body):
        session, failed = self.session_at(arg.get("cursor"))
        if failed:
            return failed
        if not isinstance(arg.get("commit"), dict):
            return bad_input("commit is required")
        answer = self.commit(arg["commit"], bytes(session["data"] + body))
        if answer.status == 200:
            session["finished"] = True
        return answer

    def delete(self, arg, _body):
        path = (arg.get("path") or "").lower()
        if path in self.files:
            meta = self.files.pop(path)
            return Answer(200, {"metadata": dict(self.public(meta), **{".tag": "file"})})
        if path in self.folders:
            meta = self.folders.pop(path)
            for key in [k for k in self.files if k.startswith(path + "/")]:
                del self.files[key]
            for key in [k for k in self.folders if k.startswith(path + "/")]:
                del self.folders[key]
            return Answer(200, {"metadata": meta})
        return endpoint_error("path_lookup", "not_found")

    # -- reading ----------------------------------------------------------------------

    def list_folder(self, arg, _body):
        path = arg.get("path")
        if not isinstance(path, str):
            return bad_input("path is required")
        key = path.lower()
        if key and key not in self.folders:
            return endpoint_error("path", "not_found")
        recursive = bool(arg.get("recursive"))

        def inside(entry_key):
            if not entry_key.startswith(key + "/"):
                return False
            return recursive or "/" not in entry_key[len(key) + 1:]

        entries = [dict(self.folders[k]) for k in sorted(self.folders) if inside(k)]
        entries += [dict(self.public(self.files[k]), **{".tag": "file"}) for k in sorted(self.files) if inside(k)]
        return self.page(entries)

    def list_folder_continue(self, arg, _body):
        entries = self.cursors.pop(arg.get("cursor"), None)
        if entries is None:
            return endpoint_error("reset")
        return self.page(entries)

    def page(self, entries):
        size = self.args.page_size
        cursor = "AAE" + secrets.token_hex(12)
        self.cursors[cursor] = entries[size:]
        return Answer(200, {"entries": entries[:size], "cursor": cursor, "has_more": len(entries) > size})

    def download(self, arg, _body):
        meta = self.files.get((arg.get("path") or "").lower())
        if meta is None:
            return endpoint_error("path", "not_found")
        data = self.store.read_blob(meta["blob"])
        result = json.dumps(self.public(meta), ensure_ascii=True)
        return Answer(200, data, headers={"Dropbox-API-Result": result})


def main():
    parser = common_arguments(__doc__)
    parser.add_argument("--content-port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--page-size", type=int, default=3)
    parser.add_argument("--refresh-token")
    parser.add_argument("--app-key")
    parser.add_argument("--app-secret")
    args = parser.parse_args()
    DropboxStub(args).serve([(args.port, "api"), (args.content_port, "content")])


if __name__ == "__main__":
    main()
