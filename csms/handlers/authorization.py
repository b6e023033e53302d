"""Functional block C, authorization: Authorize (C01), and the id-token lookup that
TransactionEvent answers with as well (idTokenInfo)."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from csms.handlers.common import answer_has_field, note_seen
from csms.handlers.context import HandlerContext, Payload
from csms.store.models import IdToken
from simclock import iso

log = structlog.get_logger("csms.handlers.authorization")

# AuthorizationStatusEnumType (the same in 2.0.1 and 2.1).
AUTHORIZATION_STATUSES = frozenset(
    {
        "Accepted",
        "Blocked",
        "ConcurrentTx",
        "Expired",
        "Invalid",
        "NoCredit",
        "NotAllowedTypeEVSE",
        "NotAtThisLocation",
        "NotAtThisTime",
        "Unknown",
    }
)
# A station without authorisation sends this type with an empty idToken: nobody to check.
NO_AUTHORIZATION = "NoAuthorization"


def id_token_info(
    session: Session, id_token: Payload, now: datetime, accept_unknown: bool
) -> Payload:
    """IdTokenInfoType for a token: its stored status (Expired once past its expiry), or for
    a token not in the table, Accepted or Unknown as the policy says."""
    if id_token["type"] == NO_AUTHORIZATION:
        return {"status": "Accepted"}
    row = find_id_token(session, id_token["idToken"], id_token["type"])
    if row is None:
        return {"status": "Accepted" if accept_unknown else "Unknown"}
    info: Payload = {"status": _status(row, now)}
    if row.expires_at is not None:
        info["cacheExpiryDateTime"] = iso(row.expires_at)
    if row.group_id:
        info["groupIdToken"] = {"idToken": row.group_id, "type": "Central"}
    return info


def find_id_token(session: Session, token: str, kind: str) -> IdToken | None:
    """The row of a token; the spec calls IdToken case-insensitive, so an exact match first,
    then one ignoring case."""
    row = session.get(IdToken, (token, kind))
    if row is not None:
        return row
    query = select(IdToken).where(
        func.lower(IdToken.id_token) == token.lower(), IdToken.type == kind
    )
    return session.execute(query.limit(1)).scalar_one_or_none()


def _status(row: IdToken, now: datetime) -> str:
    if row.status not in AUTHORIZATION_STATUSES:
        log.warning("id_token.bad_status", id_token=row.id_token, status=row.status)
        return "Invalid"
    if row.status == "Accepted" and row.expires_at is not None and row.expires_at <= now:
        return "Expired"
    return row.status


async def authorize(ctx: HandlerContext, req: Payload) -> Payload:
    """C01: is this token allowed to charge here; on 2.1 also which energy transfer (Q01)."""
    policies = ctx.services.policies
    now, accept_unknown = ctx.now(), policies.accept_unknown_id_tokens
    async with ctx.services.db.read() as session:
        info = await session.run_sync(id_token_info, req["idToken"], now, accept_unknown)
    answer: Payload = {"idTokenInfo": info}
    if info["status"] == "Accepted" and answer_has_field(
        ctx.version, "Authorize", "allowedEnergyTransfer"
    ):
        modes = await _allowed_energy_transfer(ctx, req["idToken"]["idToken"])
        if modes:
            answer["allowedEnergyTransfer"] = modes
    note_seen(ctx)
    return answer


async def _allowed_energy_transfer(ctx: HandlerContext, id_token: str) -> list[str]:
    """Q01: the V2G policy's modes for this driver. A failing policy must not refuse the
    driver: the answer then carries no modes and the station stays charging-only."""
    policy = ctx.services.policies.allowed_energy_transfer
    try:
        return list(await policy(ctx.station_id, None, id_token) or [])
    except Exception:
        log.exception("policy.allowed_energy_transfer_failed", station_id=ctx.station_id)
        return []
