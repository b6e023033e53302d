"""Charge-point simulators: a separate OCPP client that must never import `csms`.

Network-free building blocks (pure, driven by times passed in):
- `simulators.catalog`: the hardware catalog (`hardware_models()`, `get_hardware(id)`).
- `simulators.physics`: `Plant.for_pair(hw, ev)` and `Plant.step(state, command_w, dt_s)`.
- `simulators.profiles`: `ProfileEngine` (K01 install, K08 composite, Q01-Q12 V2X execution).
EV models and the matched-pair rule come from `iso15118_profiles`; time from `simclock`.
"""
