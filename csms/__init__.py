"""OCPP 2.1 / 2.0.1 central system for bidirectional (V2G) EV chargers."""

__version__ = "0.1.0"
