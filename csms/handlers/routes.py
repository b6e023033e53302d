"""Every message a station may send us, and the function that answers it: one screen.

An action that is not here is answered NotSupported when the version defines it and
NotImplemented when it does not (OCPP-J "Valid Error Codes"); see csms.server.session.
The same table serves 2.0.1 and 2.1: an action only 2.1 defines (blocks R, Q, the dynamic
schedule pull) is refused by the session for a 2.0.1 station before any handler runs.
"""

from __future__ import annotations

from csms.handlers import (
    authorization,
    data_transfer,
    der_control,
    diagnostics,
    firmware,
    meter_values,
    provisioning,
    security,
    smart_charging,
    transactions,
)
from csms.handlers.context import Handler, SendHandler

ROUTES: dict[str, Handler] = {
    # A: security
    "SecurityEventNotification": security.security_event_notification,
    # B: provisioning
    "BootNotification": provisioning.boot_notification,
    "Heartbeat": provisioning.heartbeat,
    "StatusNotification": provisioning.status_notification,
    "NotifyReport": provisioning.notify_report,
    # C: authorization (2.1: with allowedEnergyTransfer, Q01)
    "Authorize": authorization.authorize,
    # E: transactions
    "TransactionEvent": transactions.transaction_event,
    # J: meter values
    "MeterValues": meter_values.meter_values,
    # K: smart charging, with the 2.1 V2X additions (Q)
    "NotifyEVChargingNeeds": smart_charging.notify_ev_charging_needs,
    "NotifyEVChargingSchedule": smart_charging.notify_ev_charging_schedule,
    "NotifyChargingLimit": smart_charging.notify_charging_limit,
    "ClearedChargingLimit": smart_charging.cleared_charging_limit,
    "ReportChargingProfiles": smart_charging.report_charging_profiles,
    "PullDynamicScheduleUpdate": smart_charging.pull_dynamic_schedule_update,  # 2.1
    # L: firmware management
    "FirmwareStatusNotification": firmware.firmware_status_notification,
    # N: diagnostics
    "LogStatusNotification": diagnostics.log_status_notification,
    "NotifyEvent": diagnostics.notify_event,
    # P: data transfer
    "DataTransfer": data_transfer.data_transfer,
    # R: DER control (2.1)
    "NotifyDERAlarm": der_control.notify_der_alarm,
    "NotifyDERStartStop": der_control.notify_der_start_stop,
    "ReportDERControl": der_control.report_der_control,
}

# OCPP 2.1 SEND frames (message type 6): never answered.
SEND_ROUTES: dict[str, SendHandler] = {
    # N: diagnostics, periodic event streams
    "NotifyPeriodicEventStream": diagnostics.notify_periodic_event_stream,
}
