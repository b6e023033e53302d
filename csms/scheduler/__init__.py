"""V2G event scheduling, the pure core: program rules and the discharge planner.

- `programs`: demand-response programs as data (`data/programs.toml` plus operator-defined custom
  programs), local-time event windows judged in the program's IANA zone, one function per pay
  rule (`season_pay`).
- `planner`: per-vehicle, per-interval grid-side discharge kW that maximises exported energy and
  then the lowest interval's aggregate kW, with the committed (flat) kW; an LP on HiGHS is the
  reference and a water-filling heuristic serves large fleets.

Nothing here knows about websockets, OCPP or the database (STYLE.md: the seam CitrineOS keeps);
the event service and the dispatcher call into it.
"""
