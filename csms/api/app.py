"""The FastAPI application: /healthz, /openapi.json and the /api/v1 routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

import csms
from csms.api import enrolments, events, stations
from csms.api import reports as report_routes

if TYPE_CHECKING:
    from csms.services import Services


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="V2G CSMS",
        version=csms.__version__,
        description="OCPP 2.1 / 2.0.1 central system for bidirectional EV chargers.",
    )
    app.state.services = services

    @app.get("/healthz", tags=["health"], summary="Liveness and connected stations")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "node": services.settings.node_id,
            "connected_stations": len(services.registry),
        }

    app.include_router(stations.router)
    app.include_router(events.router)
    app.include_router(enrolments.router)
    app.include_router(report_routes.router)
    return app
