"""A running CSMS: the store, the OCPP websocket server and the REST API in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog
import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from csms.api.app import create_app
from csms.commands import Commands
from csms.scheduler.v2g import V2G
from csms.server.app import OcppServer
from csms.services import Services
from csms.settings import Settings
from csms.store.db import Database, upgrade_schema_async
from csms.store.writer import GroupWriter

log = structlog.get_logger("csms")


class CentralSystem:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        db = Database(settings.database_url)
        self.services = Services(settings=settings, db=db, writer=GroupWriter(db))
        self.services.commands = Commands(self.services)
        self.services.v2g = V2G(self.services)
        self.ocpp = OcppServer(self.services)
        self._api: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await upgrade_schema_async(self.settings.database_url)
            await self._reset_connection_state()
        except (OSError, SQLAlchemyError) as exc:
            where = make_url(self.settings.database_url).render_as_string(hide_password=True)
            raise OSError(f"cannot open the database {where}: {exc}") from exc
        self.services.writer.start()
        await self.ocpp.start()
        await self._start_api()
        assert self.services.v2g is not None
        await self.services.v2g.start()

    async def _reset_connection_state(self) -> None:
        # After a crash the table may still say "connected" for stations this node held.
        from sqlalchemy import update

        from csms.store.models import Station

        async with self.services.db.sessions() as session, session.begin():
            await session.execute(
                update(Station)
                .where(Station.node_id == self.settings.node_id)
                .values(connected=False, node_id="")
            )

    async def _start_api(self) -> None:
        config = uvicorn.Config(
            create_app(self.services),
            host=self.settings.host,
            port=self.settings.api_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._api = uvicorn.Server(config)
        self._api.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._api_task = asyncio.create_task(self._api.serve(), name="api")
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()  # raises the bind error, e.g. port in use
                raise RuntimeError("the API server stopped during start-up")
            await asyncio.sleep(0.01)

    @property
    def ocpp_port(self) -> int:
        return self.ocpp.port

    @property
    def api_port(self) -> int:
        assert self._api is not None
        return self._api.servers[0].sockets[0].getsockname()[1]

    def banner(self) -> str:
        host = self.settings.host
        return f"ocpp ws://{host}:{self.ocpp_port}  api http://{host}:{self.api_port}"

    async def stop(self) -> None:
        """Close connections, stop the API, commit what is queued, release the database."""
        if self.services.v2g is not None:
            await self.services.v2g.stop()
        await self.ocpp.close()
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._api_task
        await self.services.writer.close()
        await self.services.db.close()


async def serve_until_signalled(settings: Settings, *, on_ready: object = None) -> None:
    # Handlers first: a supervisor may signal as soon as it reads the ready line.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    system = CentralSystem(settings)
    await system.start()
    print(system.banner(), flush=True)
    if not settings.clock.is_real:
        print(settings.clock.describe(), flush=True)
    await stop.wait()
    log.info("csms.stopping")
    await system.stop()
