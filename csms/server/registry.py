"""The connected sessions of this process, by station id (an explicitly owned registry)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from csms.server.session import StationSession


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, StationSession] = {}

    def get(self, station_id: str) -> StationSession | None:
        return self._sessions.get(station_id)

    def replace(self, session: StationSession) -> StationSession | None:
        """Make `session` the station's current one; return the one it replaces."""
        old = self._sessions.get(session.station_id)
        self._sessions[session.station_id] = session
        return old

    def remove(self, session: StationSession) -> bool:
        """Forget `session` if it is still the current one (a replaced one is not)."""
        if self._sessions.get(session.station_id) is session:
            del self._sessions[session.station_id]
            return True
        return False

    def ids(self) -> list[str]:
        return list(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, station_id: object) -> bool:
        return station_id in self._sessions
