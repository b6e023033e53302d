"""One module per OCPP functional block. Each turns a request into store writes and a reply.

Handlers take and return the spec's camelCase JSON, already validated against the official
schema (ocppj.schemas), and hold no business rules about programs: those plug in
through `csms.policies`. The whole routing table is `csms.handlers.routes.ROUTES`.
"""
