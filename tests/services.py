"""Reaching the machine's real services from tests: skip on a laptop, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
POSTGRES_ADMIN_URL = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


def services_required() -> bool:
    return os.environ.get("CSMS_REQUIRE_SERVICES", "") not in ("", "0")


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(host: str, port: int, name: str) -> None:
    """Skip when the service is down, unless CSMS_REQUIRE_SERVICES says it must be there."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if services_required():
        pytest.fail(message + " (CSMS_REQUIRE_SERVICES=1: a missing service is a failure)")
    pytest.skip(message)
