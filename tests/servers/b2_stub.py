"""A stub of the Backblaze B2 native API (version 2), for the `b2` destination's tests.

Backblaze has no emulator. This follows the published API definitions for exactly the
calls the destination makes: paths, methods, the headers B2 requires (Authorization,
X-Bz-File-Name, Content-Type, Content-Length, X-Bz-Content-Sha1, X-Bz-Part-Number),
the JSON shapes of requests and answers, and B2's error bodies
(`{"status", "code", "message"}`) and codes. It checks what B2 checks (keys and tokens,
SHA-1s of files and parts, part numbers, the minimum part size, at least two parts per
large file), keeps file versions like B2 (a large file exists only once finished), and
records every request. Every URL it hands out (API, download, upload) is its own.

    python3 b2_stub.py --port P --log requests.jsonl --store DIR \
        --key-id ID --key KEY --bucket NAME [--fault OPERATION:500|cut:COUNT]
"""

import base64
import secrets
import time
from urllib.parse import unquote

from stub_common import Answer, Stub, common_arguments, sha1_hex

MIN_PART_SIZE = 5_000_000
RECOMMENDED_PART_SIZE = 100_000_000
MAX_PARTS = 10_000
ACCOUNT_ID = "0a1b2c3d4e5f"
API = "/b2api/v2/"


def error(status, code, message):
    return Answer(status, {"status": status, "code": code, "message": message})


def bad_request(message):
    return error(400, "bad_request", message)


class B2Stub(Stub):
    def __init__(self, args):
        super().__init__(args)
        self.url = self.base_url(args.port)
        self.buckets = {
            name: {"bucketId": f"b{i:023d}", "bucketName": name} for i, name in enumerate(args.bucket, 1)
        }
        self.account_tokens = set()
        # Upload tokens: token -> ("bucket", bucketId) or ("part", fileId).
        self.upload_tokens = {}
        # Every file version: fileId -> version dict (with "blob" for finished ones).
        self.versions = {}
        # Unfinished large files: fileId -> {"fileName", "bucketId", "parts": {n: (sha1, blob, size)}}.
        self.unfinished = {}
        self.cancelled = []
        self.clock = 0
        self.save()

    # -- plumbing ---------------------------------------------------------------------

    def server_error(self):
        return error(500, "internal_error", "injected fault: internal error")

    def length_required(self):
        return error(411, "bad_request", "Content-Length is required")

    def route(self, request, role):
        path = request.path
        if path.startswith(API + "b2_upload_file/"):
            return "b2_upload_file", self.upload_file
        if path.startswith(API + "b2_upload_part/"):
            return "b2_upload_part", self.upload_part
        if path.startswith("/file/"):
            return "b2_download_file_by_name", self.download
        if path == API + "b2_authorize_account":
            return "b2_authorize_account", self.authorize
        operation = path[len(API):] if path.startswith(API) else path
        handler = {
            "b2_list_buckets": self.list_buckets,
            "b2_get_upload_url": self.get_upload_url,
            "b2_start_large_file": self.start_large_file,
            "b2_get_upload_part_url": self.get_upload_part_url,
            "b2_finish_large_file": self.finish_large_file,
            "b2_cancel_large_file": self.cancel_large_file,
            "b2_list_unfinished_large_files": self.list_unfinished_large_files,
            "b2_list_parts": self.list_parts,
            "b2_list_file_names": self.list_file_names,
            "b2_list_file_versions": self.list_file_versions,
            "b2_delete_file_version": self.delete_file_version,
        }.get(operation)
        if handler is None:
            return operation, lambda _r: error(404, "not_found", f"no such API: {path}")
        return operation, self.api_call(handler)

    def api_call(self, handler):
        """An account-level call: POST, the account token, a JSON object body."""

        def call(request):
            if request.method != "POST":
                return error(405, "method_not_allowed", "use POST")
            if request.headers.get("authorization") not in self.account_tokens:
                return error(401, "bad_auth_token", "Invalid authorization token")
            params = request.json()
            if params is None:
                return bad_request("the request body must be a JSON object")
            with self.lock:
                answer = handler(params)
                self.save()
                return answer

        return call

    def now_ms(self):
        # Strictly increasing, so versions of one name have a defined order.
        self.clock = max(self.clock + 1, int(time.time() * 1000))
        return self.clock

    def save(self):
        with self.lock:
            self.store.write_state(
                {
                    "files": [
                        {"fileName": v["fileName"], "fileId": v["fileId"], "blob": v["blob"], "size": v["contentLength"]}
                        for v in self.visible_files(None)
                    ],
                    "unfinished": [
                        {"fileId": fid, "fileName": u["fileName"], "parts": sorted(u["parts"])}
                        for fid, u in self.unfinished.items()
                    ],
                    "cancelled": self.cancelled,
                }
            )

    def bucket_by_id(self, bucket_id):
        return next((b for b in self.buckets.values() if b["bucketId"] == bucket_id), None)

    def file_json(self, version):
        return {k: v for k, v in version.items() if k != "blob"}

    # -- account ----------------------------------------------------------------------

    def authorize(self, request):
        expected = "Basic " + base64.b64encode(f"{self.args.key_id}:{self.args.key}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return error(401, "unauthorized", "The applicationKeyId and/or the applicationKey are wrong.")
        token = "4_" + secrets.token_hex(16)
        with self.lock:
            self.account_tokens.add(token)
        return Answer(
            200,
            {
                "accountId": ACCOUNT_ID,
                "authorizationToken": token,
                "allowed": {
                    "bucketId": None,
                    "bucketName": None,
                    "capabilities": ["listBuckets", "listFiles", "readFiles", "writeFiles", "deleteFiles"],
                    "namePrefix": None,
                },
                "apiUrl": self.url,
                "downloadUrl": self.url,
                "recommendedPartSize": RECOMMENDED_PART_SIZE,
                "absoluteMinimumPartSize": MIN_PART_SIZE,
                "s3ApiUrl": self.url,
            },
        )

    def list_buckets(self, params):
        if params.get("accountId") != ACCOUNT_ID:
            return bad_request("accountId is required and must be the account's")
        found = [
            dict(b, accountId=ACCOUNT_ID, bucketType="allPrivate", bucketInfo={}, corsRules=[],
                 lifecycleRules=[], revision=1, options=[])
            for b in self.buckets.values()
            if params.get("bucketName") in (None, b["bucketName"]) and params.get("bucketId") in (None, b["bucketId"])
        ]
        return Answer(200, {"buckets": found})

    # -- simple uploads ---------------------------------------------------------------

    def get_upload_url(self, params):
        bucket = self.bucket_by_id(params.get("bucketId"))
        if bucket is None:
            return bad_request(f"Invalid bucketId: {params.get('bucketId')}")
        token = "4_upload_" + secrets.token_hex(12)
        self.upload_tokens[token] = ("bucket", bucket["bucketId"])
        return Answer(
            200,
            {
                "bucketId": bucket["bucketId"],
                "uploadUrl": f"{self.url}{API}b2_upload_file/{bucket['bucketId']}/c001_v0001013_t0020",
                "authorizationToken": token,
            },
        )

    def checked_upload(self, request, kind, target):
        """What b2_upload_file and b2_upload_part both check; an Answer when it fails."""
        if request.method != "POST":
            return error(405, "method_not_allowed", "use POST")
        if self.upload_tokens.get(request.headers.get("authorization")) != (kind, target):
            return error(401, "bad_auth_token", "Invalid upload authorization token")
        claimed = request.headers.get("x-bz-content-sha1")
        if claimed is None:
            return bad_request("Missing header: X-Bz-Content-Sha1")
        if claimed != "do_not_verify" and claimed.lower() != sha1_hex(request.body):
            return bad_request("Checksum did not match data received")
        return None

    def upload_file(self, request):
        bucket_id = request.path[len(API + "b2_upload_file/"):].split("/")[0]
        with self.lock:
            failed = self.checked_upload(request, "bucket", bucket_id)
            if failed:
                return failed
            raw_name = request.headers.get("x-bz-file-name")
            if raw_name is None:
                return bad_request("Missing header: X-Bz-File-Name")
            if request.headers.get("content-type") is None:
                return bad_request("Missing header: Content-Type")
            name = unquote(raw_name)
            if not name or name.startswith("/") or "//" in name or len(name.encode()) > 1024:
                return bad_request(f"Bad file name: {name!r}")
            version = self.new_version(bucket_id, name, request.body, sha1_hex(request.body), request.headers["content-type"])
            self.save()
            return Answer(200, self.file_json(version))

    def new_version(self, bucket_id, name, data, sha1, content_type):
        file_id = "4_z" + secrets.token_hex(20)
        version = {
            "accountId": ACCOUNT_ID,
            "action": "upload",
            "bucketId": bucket_id,
            "contentLength": len(data),
            "contentSha1": sha1,
            "contentType": "application/octet-stream" if content_type == "b2/x-auto" else content_type,
            "fileId": file_id,
            "fileInfo": {},
            "fileName": name,
            "uploadTimestamp": self.now_ms(),
            "blob": self.store.put_blob(data),
        }
        self.versions[file_id] = version
        return version

    # -- large files ------------------------------------------------------------------

    def start_large_file(self, params):
        bucket = self.bucket_by_id(params.get("bucketId"))
        if bucket is None:
            return bad_request(f"Invalid bucketId: {params.get('bucketId')}")
        if not params.get("fileName") or not params.get("contentType"):
            return bad_request("fileName and contentType are required")
        file_id = "4_z" + secrets.token_hex(20)
        started = {
            "accountId": ACCOUNT_ID,
            "action": "start",
            "bucketId": bucket["bucketId"],
            "contentType": params["contentType"],
            "fileId": file_id,
            "fileInfo": params.get("fileInfo") or {},
            "fileName": params["fileName"],
            "uploadTimestamp": self.now_ms(),
        }
        self.unfinished[file_id] = dict(started, parts={})
        return Answer(200, started)

    def get_upload_part_url(self, params):
        file_id = params.get("fileId")
        if file_id not in self.unfinished:
            return bad_request(f"No active upload for: {file_id}")
        token = "4_part_" + secrets.token_hex(12)
        self.upload_tokens[token] = ("part", file_id)
        return Answer(
            200,
            {
                "fileId": file_id,
                "uploadUrl": f"{self.url}{API}b2_upload_part/{file_id}/c001_v0001013_t0020",
                "authorizationToken": token,
            },
        )

    def upload_part(self, request):
        file_id = request.path[len(API + "b2_upload_part/"):].split("/")[0]
        with self.lock:
            failed = self.checked_upload(request, "part", file_id)
            if failed:
                return failed
            if file_id not in self.unfinished:
                return bad_request(f"No active upload for: {file_id}")
            try:
                number = int(request.headers.get("x-bz-part-number", ""))
            except ValueError:
                return bad_request("Missing or bad header: X-Bz-Part-Number")
            if not 1 <= number <= MAX_PARTS:
                return bad_request(f"Part number {number} is out of range")
            sha1 = sha1_hex(request.body)
            blob = self.store.put_blob(request.body)
            self.unfinished[file_id]["parts"][number] = (sha1, blob, len(request.body))
            self.save()
            return Answer(
                200,
                {
                    "fileId": file_id,
                    "partNumber": number,
                    "contentLength": len(request.body),
                    "contentSha1": sha1,
                    "uploadTimestamp": self.now_ms(),
                },
            )

    def finish_large_file(self, params):
        file_id = params.get("fileId")
        upload = self.unfinished.get(file_id)
        if upload is None:
            return bad_request(f"No active upload for: {file_id}")
        sha1s = params.get("partSha1Array")
        parts = upload["parts"]
        if not isinstance(sha1s, list) or sorted(parts) != list(range(1, len(sha1s) + 1)):
            return bad_request("partSha1Array does not match the parts uploaded")
        if len(sha1s) < 2:
            return bad_request("large files must have at least 2 parts")
        for number, claimed in enumerate(sha1s, 1):
            sha1, _blob, size = parts[number]
            if claimed != sha1:
                return bad_request(f"Part {number} sha1 does not match")
            if number < len(sha1s) and size < MIN_PART_SIZE:
                return bad_request(f"Part number {number} is smaller than the minimum part size")
        data = b"".join(self.store.read_blob(parts[n][1]) for n in range(1, len(sha1s) + 1))
        del self.unfinished[file_id]
        version = self.new_version(upload["bucketId"], upload["fileName"], data, "none", upload["contentType"])
        # The finished file keeps the id the large file was started with.
        del self.versions[version["fileId"]]
        version["fileId"] = file_id
        self.versions[file_id] = version
        return Answer(200, self.file_json(version))

    def cancel_large_file(self, params):
        file_id = params.get("fileId")
        upload = self.unfinished.pop(file_id, None)
        if upload is None:
            return bad_request(f"No active upload for: {file_id}")
        self.cancelled.append({"fileId": file_id, "fileName": upload["fileName"]})
        return Answer(
            200,
            {"fileId": file_id, "accountId": ACCOUNT_ID, "bucketId": upload["bucketId"], "fileName": upload["fileName"]},
        )

    def list_unfinished_large_files(self, params):
        """Started, neither finished nor cancelled, ordered by file id (as B2 pages them)."""
        if self.bucket_by_id(params.get("bucketId")) is None:
            return bad_request(f"Invalid bucketId: {params.get('bucketId')}")
        prefix = params.get("namePrefix") or ""
        start = params.get("startFileId") or ""
        most = int(params.get("maxFileCount") or 100)
        matching = sorted(
            (u for u in self.unfinished.values()
             if u["bucketId"] == params["bucketId"] and u["fileName"].startswith(prefix)
             and u["fileId"] >= start),
            key=lambda u: u["fileId"],
        )
        page, rest = matching[:most], matching[most:]
        files = [{k: v for k, v in u.items() if k != "parts"} for u in page]
        return Answer(200, {"files": files, "nextFileId": rest[0]["fileId"] if rest else None})

    def list_parts(self, params):
        upload = self.unfinished.get(params.get("fileId"))
        if upload is None:
            return bad_request(f"No active upload for: {params.get('fileId')}")
        start = int(params.get("startPartNumber") or 1)
        most = int(params.get("maxPartCount") or 1000)
        numbers = sorted(n for n in upload["parts"] if n >= start)
        page, rest = numbers[:most], numbers[most:]
        parts = [
            {"fileId": upload["fileId"], "partNumber": n, "contentLength": upload["parts"][n][2],
             "contentSha1": upload["parts"][n][0]}
            for n in page
        ]
        return Answer(200, {"parts": parts, "nextPartNumber": rest[0] if rest else None})

    # -- listing, deleting, downloading ----------------------------------------------

    def visible_files(self, bucket_id):
        """The newest version of each name, as b2_list_file_names shows it."""
        newest = {}
        for v in self.versions.values():
            if bucket_id in (None, v["bucketId"]):
                if v["fileName"] not in newest or v["uploadTimestamp"] > newest[v["fileName"]]["uploadTimestamp"]:
                    newest[v["fileName"]] = v
        return sorted((v for v in newest.values() if v["action"] == "upload"), key=lambda v: v["fileName"])

    def listing(self, params):
        """(bucketId, page size, prefix) of a listing call, or the error Answer."""
        if self.bucket_by_id(params.get("bucketId")) is None:
            return bad_request(f"Invalid bucketId: {params.get('bucketId')}")
        count = params.get("maxFileCount", 100)
        if not isinstance(count, int) or not 1 <= count <= 10_000:
            return bad_request("maxFileCount out of range")
        return params["bucketId"], count, params.get("prefix") or ""

    def list_file_names(self, params):
        listing = self.listing(params)
        if isinstance(listing, Answer):
            return listing
        bucket_id, count, prefix = listing
        start = params.get("startFileName") or ""
        matching = [
            v for v in self.visible_files(bucket_id) if v["fileName"].startswith(prefix) and v["fileName"] >= start
        ]
        page, rest = matching[:count], matching[count:]
        return Answer(
            200,
            {"files": [self.file_json(v) for v in page], "nextFileName": rest[0]["fileName"] if rest else None},
        )

    def list_file_versions(self, params):
        listing = self.listing(params)
        if isinstance(listing, Answer):
            return listing
        bucket_id, count, prefix = listing
        everything = list(self.versions.values()) + [
            {k: v for k, v in u.items() if k != "parts"} for u in self.unfinished.values()
        ]
        ordered = sorted(
            (v for v in everything if v["bucketId"] == bucket_id and v["fileName"].startswith(prefix)),
            key=lambda v: (v["fileName"], -v["uploadTimestamp"]),
        )
        start_name = params.get("startFileName") or ""
        start_id = params.get("startFileId")
        begin = 0
        while begin < len(ordered) and ordered[begin]["fileName"] < start_name:
            begin += 1
        if start_id is not None:
            ids = [v["fileId"] for v in ordered]
            if start_id in ids[begin:]:
                begin = ids.index(start_id, begin)
        page, rest = ordered[begin:begin + count], ordered[begin + count:]
        return Answer(
            200,
            {
                "files": [self.file_json(v) for v in page],
                "nextFileName": rest[0]["fileName"] if rest else None,
                "nextFileId": rest[0]["fileId"] if rest else None,
            },
        )

    def delete_file_version(self, params):
        file_id, name = params.get("fileId"), params.get("fileName")
        version = self.versions.get(file_id)
        if file_id in self.unfinished and self.unfinished[file_id]["fileName"] == name:
            # Deleting an unfinished large file cancels it.
            del self.unfinished[file_id]
            return Answer(200, {"fileId": file_id, "fileName": name})
        if version is None or version["fileName"] != name:
            return bad_request(f"File not present: {name} {file_id}")
        del self.versions[file_id]
        return Answer(200, {"fileId": file_id, "fileName": name})

    def download(self, request):
        if request.method not in ("GET", "POST"):
            return error(405, "method_not_allowed", "use GET")
        token = request.headers.get("authorization") or request.query.get("Authorization")
        if token not in self.account_tokens:
            return error(401, "bad_auth_token", "Invalid authorization token")
        bucket_name, _, raw_name = request.path[len("/file/"):].partition("/")
        name = unquote(raw_name)
        bucket = self.buckets.get(unquote(bucket_name))
        with self.lock:
            version = next(
                (v for v in self.visible_files(bucket and bucket["bucketId"]) if v["fileName"] == name),
                None,
            ) if bucket else None
            if version is None:
                return error(404, "not_found", f"File with such name does not exist: {name}")
            data = self.store.read_blob(version["blob"])
        return Answer(
            200,
            data,
            headers={
                "x-bz-file-name": raw_name,
                "x-bz-file-id": version["fileId"],
                "x-bz-content-sha1": version["contentSha1"],
                "x-bz-upload-timestamp": str(version["uploadTimestamp"]),
            },
            content_type=version["contentType"],
        )


def main():
    parser = common_arguments(__doc__)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--bucket", action="append", required=True)
    args = parser.parse_args()
    B2Stub(args).serve([(args.port, "api")])


if __name__ == "__main__":
    main()
