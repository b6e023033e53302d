"""Our thin OCPP-J layer over the `ocpp` library: frames, schema validation, field names.

The library ships the official JSON schemas, message dataclasses and enums; this package closes
the gaps measured in shared/OCPP-LIB-NOTES.md (silent unknown actions, broken case conversion,
slow per-message validation, no message types 5 and 6) without patching the library.
"""
