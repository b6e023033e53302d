"""Every message a station may send us, and the function that answers it: one screen.

An action that is not here is answered NotSupported when the version defines it and
NotImplemented when it does not (OCPP-J "Valid Error Codes"); see csms.server.session.
"""

from __future__ import annotations

from csms.handlers import provisioning
from csms.handlers.context import Handler, SendHandler

ROUTES: dict[str, Handler] = {
    # B: provisioning
    "BootNotification": provisioning.boot_notification,
    "Heartbeat": provisioning.heartbeat,
    "StatusNotification": provisioning.status_notification,
    "NotifyReport": provisioning.notify_report,
}

# OCPP 2.1 SEND frames (message type 6): never answered.
SEND_ROUTES: dict[str, SendHandler] = {}
