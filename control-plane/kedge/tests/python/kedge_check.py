"""Small helpers the client scripts share: load the kubeconfig the Rust test
passes, and fail with a clear message (exit status 1) on any mismatch."""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def load():
    """Loads the kubeconfig named on the command line as the default."""
    if len(sys.argv) != 2:
        fail(f"usage: {sys.argv[0]} KUBECONFIG")
    config.load_kube_config(config_file=sys.argv[1])
    return client


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def eq(actual, expected, what):
    if actual != expected:
        fail(f"{what}: expected {expected!r}, got {actual!r}")
    print(f"ok: {what}", flush=True)


def true(cond, what):
    if not cond:
        fail(what)
    print(f"ok: {what}", flush=True)


def api_error(call, *args, **kwargs):
    """Calls `call` and returns (status, Status body) of the ApiException it
    must raise."""
    try:
        result = call(*args, **kwargs)
    except ApiException as e:
        try:
            body = json.loads(e.body)
        except (TypeError, ValueError):
            fail(f"{call.__name__}: the error body is not JSON: {e.body!r}")
        return e.status, body
    fail(f"{call.__name__} should have failed but returned {result!r}")
