"""Websocket transport: handshake, station authentication, one session per station.

Knows OCPP-J framing and nothing of V2G: messages are handed to `csms.handlers`.
"""
