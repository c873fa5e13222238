"""Cron schedules: ticks of a cron expression in a time zone start tasks (ADR 77).

- `cron`: the expression's ticks as epoch seconds, with the daylight-saving rules.
- `spec`: what a schedule says, validated the same way from every channel.
- `ticks`: which ticks a due schedule fires now (missed-tick policies) and their keys.
- `scheduler`: the loop that fires due schedules, in every worker and server (it is
  imported from its module: this package stays free of the store, for the client).

Managing schedules (create, list, pause, resume, delete, trigger) is
`tether.services.schedules`, which the API, the CLI and `tether.Client` call;
`@app.schedule` declares one in code. See docs/schedules.md.
"""

from tether.schedules.cron import Cron
from tether.schedules.spec import ScheduleSpec
from tether.schedules.ticks import scheduled_tick

__all__ = ["Cron", "ScheduleSpec", "scheduled_tick"]
