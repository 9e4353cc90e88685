"""summary-log: a backups notifier written in Python, built with componentize-py.

Appends one line per report to the file named by the entry's `file` key:

    { "id": "log", "type": "summary-log", "plugin": "python_notifier.wasm",
      "file": "/var/log/backups/runs.log", "grants": { "write": ["/var/log/backups"] } }

Build it (componentize-py from PyPI; `pip install componentize-py==0.25.1`):

    componentize-py -d ../../wit -w backups:plugin/notifier componentize app \
        -o python_notifier.wasm

and check it with `backups plugins test python_notifier.wasm --kind notifier
--config '{"file": "/tmp/x/runs.log"}' --grants '{"write": ["/tmp/x"]}'`. The component
carries a CPython interpreter (about 18 MiB); the host compiles it once and caches it.

Errors are typed: a bad config is `invalid-config` naming the key, a file that cannot be
opened is `not-found` or `denied` (no grant), anything else `permanent`.
"""

import errno
import json

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports.types import About, ErrorKind, Grants, PluginError


def fail(kind, message):
    raise Err(PluginError(kind, message))


class Plugin(exports.Plugin):
    def describe(self):
        return About(
            name="summary-log",
            version="0.1.0",
            summary="appends each run's summary to a file (written in Python)",
            config_keys=["file"],
            secret_keys=[],
            notify_on_success=True,
            notify_on_failure=True,
        )

    def requested_grants(self, config):
        return Grants(read=[], write=[], net=[], run=[], env=[])

    def configure(self, ctx, config):
        global FILE
        try:
            path = json.loads(config).get("file")
        except ValueError as e:
            fail(ErrorKind.INVALID_CONFIG, f"config: not JSON: {e}")
        if not isinstance(path, str) or not path.startswith("/"):
            fail(ErrorKind.INVALID_CONFIG, "file: must be an absolute path")
        FILE = path


FILE = None


class Notification(exports.Notification):
    def notify(self, report):
        outcome = "ok" if report.success else "FAILED"
        line = f"{report.job} on {report.hostname}: {outcome} (run {report.run_id})\n"
        try:
            with open(FILE, "a") as f:
                f.write(line)
        except OSError as e:
            kind = {
                errno.ENOENT: ErrorKind.NOT_FOUND,
                errno.EACCES: ErrorKind.DENIED,
                errno.EPERM: ErrorKind.DENIED,
            }.get(e.errno, ErrorKind.PERMANENT)
            fail(kind, f"{FILE}: {e.strerror}")
