"""One Lambda instance: imports one function's handler from an exact sys.path and serves invocations.

Started by devstack.runtime as `python -I [-S] lambda_worker.py FD CONFIG_JSON`. Standard library
only, so it runs under whichever interpreter plays Lambda's runtime (Python 3.13 for `sam build`'s
output) and imports nothing from devstack's own virtualenv. CONFIG_JSON gives the function name,
handler ("module.attr"), memory, timeout and the import path, in Lambda's order: the function's
folder, each layer's python/lib/python3.13/site-packages and python/, then the managed runtime's
packages (boto3). Requests and replies are JSON messages on the connection at file descriptor FD.
"""

import importlib
import json
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection


class LambdaContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, config: dict, request_id: str) -> None:
        self.function_name = config["function"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = config["arn"]
        self.memory_limit_in_mb = config["memory_mb"]
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{config['function']}"
        self.log_stream_name = f"devstack/{os.getpid()}"
        self._deadline = time.monotonic() + config["timeout_s"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict:
    return {"errorMessage": str(exc), "errorType": error_type or type(exc).__name__,
            "stackTrace": traceback.format_exception(exc)}


def _load(handler: str):
    module_name, attr = handler.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), attr)


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    sys.path[:0] = config["path"]
    os.chdir(config["path"][0])
    handler = None
    init_error = None
    init_ms = 0.0
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except (EOFError, OSError, KeyboardInterrupt):
            return
        started = time.perf_counter()
        cold = handler is None and init_error is None
        if cold:
            try:
                handler = _load(config["handler"])
            except Exception as exc:
                init_error = _error(exc, "Runtime.ImportModuleError")
                traceback.print_exc()
            init_ms = (time.perf_counter() - started) * 1000
        if init_error is not None:
            reply = {"status": "error", "payload": init_error}
        else:
            try:
                result = handler(request["event"], LambdaContext(config, request["request_id"]))
                reply = {"status": "ok", "payload": result}
            except Exception as exc:
                traceback.print_exc()
                reply = {"status": "error", "payload": _error(exc)}
        reply.update(duration_ms=(time.perf_counter() - started) * 1000, cold=cold,
                     init_ms=init_ms if cold else 0.0)
        try:
            data = json.dumps(reply).encode()
        except (TypeError, ValueError) as exc:
            data = json.dumps({**reply, "status": "error",
                               "payload": _error(exc, "Runtime.MarshalError")}).encode()
        sys.stdout.flush()
        sys.stderr.flush()
        conn.send_bytes(data)


if __name__ == "__main__":
    main()
