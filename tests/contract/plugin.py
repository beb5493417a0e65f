"""pytest plugin: every API response a test receives must match Lago 1.51's schema for its path, method and status.

It wraps Django's request handler in the test process, so both the test client (APIClient) and the live server
(lago-python-client, schemathesis) are checked. A live server answers in another thread, so a mismatch is
recorded rather than raised and the test fails at the end of its call with every mismatch listed. Operations Lago
does not have (the hub's own), statuses Lago does not declare and non-JSON bodies are not checked.

`expect_violations()` captures mismatches for a test that sends a broken body on purpose.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from . import lago

_lock = threading.Lock()
_found: list[str] = []
_capturing: list[list[str]] = []
_checked = {"responses": 0}


class ContractViolation(AssertionError):
    pass


def _record(message: str) -> None:
    with _lock:
        (_capturing[-1] if _capturing else _found).append(message)


def check(method: str, path: str, response) -> None:
    contract = lago.contract()
    if contract is None or response.streaming:
        return
    body = lago.json_body(response)
    if body is None:
        return
    op, errors = contract.errors(method, path, response.status_code, body)
    if op is not None:
        _checked["responses"] += 1
    for error in errors[:20]:
        _record(f"{method} {path} -> {response.status_code} ({op.key}, {op.operation_id}): {error}")


def _install() -> None:
    from django.core.handlers.base import BaseHandler

    if getattr(BaseHandler.get_response, "_lago_contract", False):
        return
    original = BaseHandler.get_response

    def get_response(self, request):
        response = original(self, request)
        check(request.method, request.path, response)
        return response

    get_response._lago_contract = True
    BaseHandler.get_response = get_response


@contextmanager
def expect_violations():
    """The mismatches of the requests made inside the block, taken away from the test's own."""
    captured: list[str] = []
    with _lock:
        _capturing.append(captured)
    try:
        yield captured
    finally:
        with _lock:
            _capturing.remove(captured)


def pytest_configure(config):
    _install()


def pytest_report_header(config):
    contract = lago.contract()
    if contract is None:
        return "lago contract: document not found (LAGO_OPENAPI or shared/contracts/); responses are NOT checked"
    return f"lago contract: {contract.path} (Lago {contract.version}, {len(contract.operations)} operations)"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item):
    with _lock:
        _found.clear()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item):
    result = yield
    with _lock:
        found, _found[:] = list(_found), []
    if found:
        listed = "\n  ".join(dict.fromkeys(found))
        raise ContractViolation(f"{len(found)} response(s) break Lago 1.51's schema:\n  {listed}")
    return result
