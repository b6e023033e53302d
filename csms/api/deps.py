"""Dependencies of the /api/v1 routes: the process's services (and, later, the bearer token)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from csms.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services
