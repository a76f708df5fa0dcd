# cryopod's runtime client for python3.x functions: the Lambda Runtime API loop
# (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) with the standard library
# only, so no pip package is needed. It loads `_HANDLER` (`module.function`) from
# LAMBDA_TASK_ROOT, then asks for invocations forever and reports results and errors in the
# shape AWS's own Python runtime reports them.
import http.client
import importlib
import json
import os
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"
conn = http.client.HTTPConnection(API)


def request(method, path, body=None, headers=None):
    global conn
    for attempt in (0, 1):
        try:
            conn.request(method, BASE + path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp, resp.read()
        except (http.client.HTTPException, ConnectionError):
            # A dropped keep-alive connection: reconnect once.
            conn.close()
            conn = http.client.HTTPConnection(API)
            if attempt:
                raise


def error_body(exc, error_type=None):
    tb = traceback.extract_tb(exc.__traceback__)
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_list(tb),
    }


def post_error(path, body):
    data = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json",
        "Lambda-Runtime-Function-Error-Type": body.get("errorType", "Unhandled"),
    }
    request("POST", path, data, headers)


class Context:
    def __init__(self, headers):
        self.aws_request_id = headers.get("lambda-runtime-aws-request-id", "")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn", "")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms", "0") or 0)
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        cc = headers.get("lambda-runtime-client-context")
        self.client_context = json.loads(cc) if cc else None

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


def load_handler():
    handler = os.environ.get("_HANDLER", "")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError:
        return None, {
            "errorMessage": f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
            "errorType": "Runtime.MalformedHandlerName",
            "requestId": "",
            "stackTrace": [],
        }
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        return None, {
            "errorMessage": f"Unable to import module '{modname}': {e}",
            "errorType": "Runtime.ImportModuleError",
            "requestId": "",
            "stackTrace": [],
        }
    except SyntaxError as e:
        return None, {
            "errorMessage": f"Syntax error in module '{modname}': {e}",
            "errorType": "Runtime.UserCodeSyntaxError",
            "requestId": "",
            "stackTrace": traceback.format_list(traceback.extract_tb(e.__traceback__)),
        }
    except Exception as e:  # noqa: BLE001 - any failure of the module's own code
        return None, error_body(e)
    fn = getattr(module, fname, None)
    if fn is None:
        return None, {
            "errorMessage": f"Handler '{fname}' missing on module '{modname}'",
            "errorType": "Runtime.HandlerNotFound",
            "requestId": "",
            "stackTrace": [],
        }
    return fn, None


def main():
    fn, err = load_handler()
    if err is not None:
        print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", flush=True)
        post_error("/init/error", err)
        sys.exit(1)
    while True:
        resp, body = request("GET", "/invocation/next")
        # Header names arrive lower-cased (HTTP/1.1 names are case-insensitive).
        headers = {k.lower(): v for k, v in resp.getheaders()}
        request_id = headers.get("lambda-runtime-aws-request-id", "")
        os.environ["_X_AMZN_TRACE_ID"] = headers.get("lambda-runtime-trace-id", "")
        try:
            event = json.loads(body) if body else {}
            result = fn(event, Context(headers))
            out = json.dumps(result).encode()
        except Exception as e:  # noqa: BLE001 - reported to the caller as AWS does
            eb = error_body(e)
            eb["requestId"] = request_id
            print(f"[ERROR] {eb['errorType']}: {eb['errorMessage']}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            post_error(f"/invocation/{request_id}/error", eb)
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        request("POST", f"/invocation/{request_id}/response", out,
                {"Content-Type": "application/json"})


if __name__ == "__main__":
    main()
