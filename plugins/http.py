"""Built-in ``http_request`` operator: call any HTTP API from a service task.

Parameters (``spiffworkflow:parameter`` ids): ``method`` (default GET), ``url`` (http or
https), ``headers`` (dict), ``json`` (a body sent as JSON), ``timeout`` (seconds, default 10).
The result is ``{"status": int, "headers": {...}, "json": ... | None, "text": str}``.
Failures follow the operator contract: a connection error, a timeout or a 5xx response is a
technical failure (retried with backoff, then an incident); a 4xx response is a
``BusinessError`` with code ``HTTP_<status>`` (e.g. ``HTTP_404``) that a BPMN error boundary
event on the service task can catch. The call's idempotency key is sent as the
``Idempotency-Key`` header so a target that supports it ignores a repeated request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from engine.hookspecs import hookimpl
from engine.operators import BusinessError

ALLOWED_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
MAX_BODY = 5 * 1024 * 1024


@hookimpl(trylast=True)
def register_operators(register):
    register("http_request", http_request, description="HTTP call: method, url, headers, json, timeout")


def http_request(params: dict, call) -> dict:
    request = _build(params, call.idempotency_key)
    timeout = float(params.get("timeout") or 10)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked
            return _result(response.status, response.headers, response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_BODY)
        if 400 <= exc.code < 500:
            raise BusinessError(
                f"HTTP_{exc.code}",
                f"{request.get_method()} {request.full_url} answered {exc.code}",
                _result(exc.code, exc.headers, body),
            ) from exc
        raise ConnectionError(f"{request.get_method()} {request.full_url} answered {exc.code}") from exc


def _build(params: dict, key: str) -> urllib.request.Request:
    url = str(params.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"http_request needs an http(s) url, got {url!r}")
    method = str(params.get("method") or "GET").upper()
    if method not in ALLOWED_METHODS:
        raise ValueError(f"http_request method {method!r} is not one of {sorted(ALLOWED_METHODS)}")
    headers = {"Idempotency-Key": key, **{str(k): str(v) for k, v in (params.get("headers") or {}).items()}}
    data = None
    if params.get("json") is not None:
        data = json.dumps(params["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    return urllib.request.Request(url, data=data, headers=headers, method=method)


def _result(status: int, headers, body: bytes) -> dict:
    text = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text) if text else None
    except ValueError:
        payload = None
    return {"status": status, "headers": dict(headers.items()) if headers else {}, "json": payload, "text": text}
