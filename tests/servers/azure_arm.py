"""A stub of Microsoft Entra ID's token endpoint and of Azure Resource Manager's
Microsoft.Compute disks and snapshots, for the `azure-managed-disk` source's tests.

No emulator covers ARM compute (Azurite is storage only). This follows the published
REST API for exactly the calls the source makes, on two ports like Azure's two hosts:

- login port: `POST /{tenant}/oauth2/v2.0/token`, the OAuth 2.0 client-credentials grant
  (form-encoded `grant_type=client_credentials`, `client_id`, `client_secret`, `scope`),
  refused as Entra ID refuses it: 400 `invalid_request` AADSTS90002 (unknown tenant),
  400 `unauthorized_client` AADSTS700016 (unknown application), 401 `invalid_client`
  AADSTS7000215 (wrong secret), 400 `invalid_scope` AADSTS70011, 400
  `unsupported_grant_type` AADSTS70003.
- ARM port, api-version 2023-04-02 (a missing or other version is refused with ARM's
  `MissingApiVersionParameter` / `InvalidApiVersionParameter`), bearer tokens it issued
  only (401 `InvalidAuthenticationToken` otherwise):
  `GET …/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{disk}` (404
  `ResourceNotFound`, `ResourceGroupNotFound`, `SubscriptionNotFound`);
  `PUT …/snapshots/{name}` with `createOption: Copy` from a disk, answered 202 with
  `Azure-AsyncOperation`, `Location` and `Retry-After` headers; the operation's status
  document is `InProgress` for the first `--polls-in-progress` polls, then `Succeeded`
  (or `Failed` with an ARM error, for the first `--fail-snapshots` creations; the failed
  snapshot stays, `Failed`, as ARM leaves it); the `Location` URL answers
  202 while running, then 200 (`--location-only` leaves `Azure-AsyncOperation` out);
  `GET …/snapshots/{name}`; `GET …/snapshots` in pages of `--page-size` with `nextLink`;
  `DELETE …/snapshots/{name}`, 202 with the same headers (the snapshot goes when the
  operation completes), 204 for a snapshot that does not exist.

Every request is recorded (stub_common); state.json holds the disks, snapshots,
operations and the tokens issued.

    python3 azure_arm.py --port ARM_PORT --login-port LOGIN_PORT --log requests.jsonl \
        --store DIR --tenant T --client-id C --client-secret S --subscription SUB \
        --disk RG/NAME [--disk …] --group RG [--group …] \
        [--snapshot RG/NAME=TAGS_JSON …] [--page-size N] [--polls-in-progress N] \
        [--retry-after SECONDS] [--fail-snapshots COUNT] [--echo-client-secret] [--location-only]
        [--fault OPERATION:500|cut:COUNT]
"""

import datetime
import json
import re
import secrets
import threading
from urllib.parse import unquote, urlencode

from stub_common import Answer, Stub, common_arguments

API_VERSION = "2023-04-02"
SCOPE = "https://management.azure.com/.default"
LOCATION = "northeurope"
RESOURCE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/(?P<type>disks|snapshots)(?:/(?P<name>[^/]+))?$",
    re.IGNORECASE,
)
OPERATION = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)"
    r"/(?P<kind>DiskOperations|operationResults)/(?P<id>[^/]+)$",
    re.IGNORECASE,
)


def arm_error(status, code, message):
    return Answer(status, {"error": {"code": code, "message": message}})


def oauth_error(status, error, code, text):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    trace = secrets.token_hex(8)
    return Answer(
        status,
        {
            "error": error,
            "error_description": f"{code}: {text} Trace ID: {trace} Correlation ID: {trace} Timestamp: {now}",
            "error_codes": [int(code[len("AADSTS"):])],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": trace,
        },
    )


class ArmStub(Stub):
    def __init__(self, args):
        super().__init__(args)
        self.arm_url = self.base_url(args.port)
        self.tokens = []
        self.last_time = None
        self.time_lock = threading.Lock()
        self.groups = {g.lower(): g for g in args.group}
        self.disks = {}
        for spec in args.disk:
            rg, name = spec.split("/", 1)
            self.groups.setdefault(rg.lower(), rg)
            self.disks[(rg.lower(), name.lower())] = {
                "id": self.resource_id(rg, "disks", name),
                "name": name,
                "type": "Microsoft.Compute/disks",
                "location": LOCATION,
                "sku": {"name": "Premium_LRS", "tier": "Premium"},
                "properties": {
                    "diskSizeGB": 32,
                    "diskState": "Attached",
                    "provisioningState": "Succeeded",
                    "timeCreated": "2024-01-15T08:00:00.0000000+00:00",
                    "creationData": {"createOption": "Empty"},
                },
            }
        self.snapshots = {}
        for spec in args.snapshot:
            where, _, tags = spec.partition("=")
            rg, name = where.split("/", 1)
            self.groups.setdefault(rg.lower(), rg)
            snapshot = self.snapshot_resource(rg, name, tags=json.loads(tags or "{}"), source=None)
            snapshot["properties"]["provisioningState"] = "Succeeded"
            snapshot["properties"]["timeCreated"] = "2020-06-01T00:00:00.0000000+00:00"
            self.snapshots[(rg.lower(), name.lower())] = snapshot
        self.operations = {}
        self.failures_left = args.fail_snapshots
        self.save()

    # -- plumbing ---------------------------------------------------------------------

    def resource_id(self, rg, kind, name):
        return f"/subscriptions/{self.args.subscription}/resourceGroups/{rg}/providers/Microsoft.Compute/{kind}/{name}"

    def now_arm(self):
        """ARM's timestamps (seven fractional digits, `+00:00`), strictly increasing."""
        with self.time_lock:
            now = datetime.datetime.now(datetime.timezone.utc)
            if self.last_time is not None and now <= self.last_time:
                now = self.last_time + datetime.timedelta(microseconds=1)
            self.last_time = now
        return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"

    def save(self):
        with self.lock:
            self.store.write_state(
                {
                    "tokens": self.tokens,
                    "disks": list(self.disks.values()),
                    "snapshots": sorted(self.snapshots.values(), key=lambda s: s["name"]),
                    "operations": self.operations,
                }
            )

    def server_error(self):
        return arm_error(500, "InternalServerError", "Encountered internal server error (injected fault).")

    def length_required(self):
        return Answer(411, b"Length Required", content_type="text/plain")

    def route(self, request, role):
        if role == "login":
            if request.method == "POST" and re.fullmatch(r"/[^/]+/oauth2/v2\.0/token", request.path):
                return "token", self.token
            return "login-unknown", lambda _r: Answer(404, b"Not Found", content_type="text/plain")
        match = RESOURCE.match(request.path)
        if match:
            kind, name = match["type"].lower(), match["name"]
            operation = {
                ("disks", "GET", True): "get-disk",
                ("snapshots", "GET", True): "get-snapshot",
                ("snapshots", "PUT", True): "put-snapshot",
                ("snapshots", "DELETE", True): "delete-snapshot",
                ("snapshots", "GET", False): "list-snapshots",
            }.get((kind, request.method, name is not None), "unsupported")
            return operation, self.checked(operation, match)
        match = OPERATION.match(request.path)
        if match and request.method == "GET":
            return "poll-operation", self.checked("poll-operation", match)
        return "unknown", lambda _r: arm_error(
            404, "InvalidResourceType", f"The resource type could not be found for {request.path}."
        )

    def checked(self, operation, match):
        """Bearer token, api-version and subscription, as ARM checks them, then the call."""

        def call(request):
            bearer = request.headers.get("authorization", "")
            if not bearer.startswith("Bearer "):
                return arm_error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
            if bearer[len("Bearer "):] not in self.tokens:
                return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
            version = request.query.get("api-version")
            if version is None:
                return arm_error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
            if version != API_VERSION:
                return arm_error(
                    400,
                    "InvalidApiVersionParameter",
                    f"The api-version '{version}' is invalid. The supported versions are '{API_VERSION}'.",
                )
            if match["sub"] != self.args.subscription:
                return arm_error(404, "SubscriptionNotFound", f"The subscription '{match['sub']}' could not be found.")
            if operation == "poll-operation":
                return self.poll(request, match)
            rg = unquote(match["rg"])
            if rg.lower() not in self.groups:
                return arm_error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            name = unquote(match["name"]) if match["name"] else None
            handler = {
                "get-disk": self.get_disk,
                "get-snapshot": self.get_snapshot,
                "put-snapshot": self.put_snapshot,
                "delete-snapshot": self.delete_snapshot,
                "list-snapshots": self.list_snapshots,
            }.get(operation)
            if handler is None:
                return arm_error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            with self.lock:
                return handler(request, rg, name)

        return call

    # -- Entra ID ---------------------------------------------------------------------

    def token(self, request):
        tenant = request.path.split("/")[1]
        form = request.form()
        if form is None:
            return oauth_error(400, "invalid_request", "AADSTS900144", "The request body must contain the following parameter: 'grant_type'.")
        if tenant != self.args.tenant:
            return oauth_error(400, "invalid_request", "AADSTS90002", f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant type.")
        if form.get("client_id") != self.args.client_id:
            return oauth_error(
                400,
                "unauthorized_client",
                "AADSTS700016",
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )
        if form.get("client_secret") != self.args.client_secret:
            # Entra ID does not echo the secret; --echo-client-secret makes a server that
            # does, to show that the host keeps it out of every output.
            echoed = f" (received {form.get('client_secret')!r})" if self.args.echo_client_secret else ""
            return oauth_error(
                401,
                "invalid_client",
                "AADSTS7000215",
                "Invalid client secret provided"
                + echoed
                + ". Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"
                + self.args.client_id
                + "'.",
            )
        if form.get("scope") != SCOPE:
            return oauth_error(400, "invalid_scope", "AADSTS70011", f"The provided value for the input parameter 'scope' is not valid. The scope {form.get('scope')} is not valid.")
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.append(token)
            self.save()
        return Answer(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    # -- disks and snapshots ----------------------------------------------------------

    def get_disk(self, _request, rg, name):
        disk = self.disks.get((rg.lower(), name.lower()))
        if disk is None:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/disks/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return Answer(200, disk)

    def snapshot_resource(self, rg, name, tags, source, incremental=False):
        return {
            "id": self.resource_id(self.groups.get(rg.lower(), rg), "snapshots", name),
            "name": name,
            "type": "Microsoft.Compute/snapshots",
            "location": LOCATION,
            "tags": tags,
            "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "properties": {
                "creationData": {"createOption": "Copy", "sourceResourceId": source}
                if source
                else {"createOption": "Empty"},
                "diskSizeGB": 32,
                "incremental": incremental,
                "provisioningState": "Updating",
                "timeCreated": self.now_arm(),
            },
        }

    def get_snapshot(self, _request, rg, name):
        snapshot = self.snapshots.get((rg.lower(), name.lower()))
        if snapshot is None:
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Compute/snapshots/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )
        return Answer(200, snapshot)

    def put_snapshot(self, request, rg, name):
        body = request.json()
        if body is None:
            return arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]", name):
            return arm_error(400, "InvalidResourceName", f"The resource name '{name}' is invalid.")
        location = body.get("location")
        if not location:
            return arm_error(400, "LocationRequired", "The location property is required for this definition.")
        creation = (body.get("properties") or {}).get("creationData") or {}
        if creation.get("createOption") != "Copy":
            return arm_error(400, "InvalidParameter", "Required parameter 'createOption' is missing or not 'Copy'.")
        source = creation.get("sourceResourceId") or ""
        disk = next((d for d in self.disks.values() if d["id"].lower() == source.lower()), None)
        if disk is None:
            return arm_error(404, "NotFound", f"Source resource '{source}' was not found.")
        if location.lower() != disk["location"]:
            return arm_error(400, "InvalidParameter", f"The snapshot must be in the source disk's location '{disk['location']}'.")
        tags = body.get("tags") or {}
        if len(tags) > 50 or any(len(k) > 512 or len(str(v)) > 256 for k, v in tags.items()):
            return arm_error(400, "InvalidTag", "Too many tags, or a tag name or value too long.")
        snapshot = self.snapshot_resource(
            rg, name, tags, disk["id"], incremental=bool((body.get("properties") or {}).get("incremental"))
        )
        self.snapshots[(rg.lower(), name.lower())] = snapshot
        outcome = "Succeeded"
        if self.failures_left > 0:
            self.failures_left -= 1
            outcome = "Failed"
        return self.accepted("create", rg, name, outcome, snapshot)

    def delete_snapshot(self, _request, rg, name):
        snapshot = self.snapshots.get((rg.lower(), name.lower()))
        if snapshot is None:
            return Answer(204, b"")
        snapshot["properties"]["provisioningState"] = "Deleting"
        return self.accepted("delete", rg, name, "Succeeded", None)

    def accepted(self, action, rg, name, outcome, body):
        """202 and the headers of a long-running operation of the disk resource provider."""
        op_id = secrets.token_hex(16)
        self.operations[op_id] = {
            "action": action,
            "group": rg,
            "snapshot": name,
            "outcome": outcome,
            "polls": 0,
            "status": "InProgress",
            "startTime": self.now_arm(),
        }
        self.save()
        base = f"{self.arm_url}/subscriptions/{self.args.subscription}/providers/Microsoft.Compute/locations/{LOCATION}"
        query = urlencode({"p": secrets.token_hex(8), "api-version": API_VERSION})
        headers = {
            "Azure-AsyncOperation": f"{base}/DiskOperations/{op_id}?{query}",
            "Location": f"{base}/DiskOperations/{op_id}?{query}&monitor=true",
            "Retry-After": str(self.args.retry_after),
        }
        if self.args.location_only:
            # Resource providers that answer with `Location` alone exist too.
            del headers["Azure-AsyncOperation"]
        return Answer(202, body if body is not None else b"", headers=headers, content_type="application/json")

    def list_snapshots(self, request, rg, _name):
        everything = sorted(
            (s for (group, _), s in self.snapshots.items() if group == rg.lower()), key=lambda s: s["name"]
        )
        start = int(request.query.get("$skiptoken", "0"))
        page = everything[start : start + self.args.page_size]
        answer = {"value": page}
        if start + self.args.page_size < len(everything):
            query = urlencode({"api-version": API_VERSION, "$skiptoken": start + self.args.page_size})
            answer["nextLink"] = f"{self.arm_url}{request.path}?{query}"
        return Answer(200, answer)

    def poll(self, request, match):
        with self.lock:
            op = self.operations.get(match["id"])
            if op is None:
                return arm_error(404, "NotFound", "The operation was not found.")
            op["polls"] += 1
            if op["status"] == "InProgress" and op["polls"] > self.args.polls_in_progress:
                self.finish(op)
            self.save()
            monitor = request.query.get("monitor") == "true"
            if op["status"] == "InProgress":
                if monitor:
                    return Answer(202, b"", headers={"Retry-After": str(self.args.retry_after)})
                return Answer(
                    200,
                    {"startTime": op["startTime"], "status": "InProgress", "name": match["id"]},
                    headers={"Retry-After": str(self.args.retry_after)},
                )
            doc = {"startTime": op["startTime"], "endTime": op["endTime"], "status": op["status"], "name": match["id"]}
            if op["status"] == "Failed":
                doc["error"] = op["error"]
            elif op["action"] == "create":
                snapshot = self.snapshots.get((op["group"].lower(), op["snapshot"].lower()))
                doc["properties"] = {"output": snapshot}
            if monitor:
                if op["status"] == "Failed":
                    return Answer(400, {"error": op["error"]})
                return Answer(200, doc.get("properties", {}).get("output") or b"")
            return Answer(200, doc)

    def finish(self, op):
        key = (op["group"].lower(), op["snapshot"].lower())
        op["status"] = op["outcome"]
        op["endTime"] = self.now_arm()
        if op["outcome"] == "Failed":
            op["error"] = {
                "code": "InternalDiskManagementError",
                "message": "An internal disk management error occurred while copying disk data (injected failure).",
            }
            if key in self.snapshots:
                self.snapshots[key]["properties"]["provisioningState"] = "Failed"
        elif op["action"] == "create":
            if key in self.snapshots:
                self.snapshots[key]["properties"]["provisioningState"] = "Succeeded"
        else:
            self.snapshots.pop(key, None)


def main():
    parser = common_arguments(__doc__)
    parser.add_argument("--login-port", type=int, required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--subscription", required=True)
    parser.add_argument("--disk", action="append", default=[], metavar="RG/NAME")
    parser.add_argument("--group", action="append", default=[], metavar="RG")
    parser.add_argument("--snapshot", action="append", default=[], metavar="RG/NAME=TAGS_JSON")
    parser.add_argument("--page-size", type=int, default=2)
    parser.add_argument("--polls-in-progress", type=int, default=1)
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--fail-snapshots", type=int, default=0, metavar="COUNT")
    parser.add_argument("--echo-client-secret", action="store_true")
    parser.add_argument("--location-only", action="store_true")
    args = parser.parse_args()
    ArmStub(args).serve([(args.port, "arm"), (args.login_port, "login")])


if __name__ == "__main__":
    main()
