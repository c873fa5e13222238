"""One execution of one claimed task, split by concern (ADR 59).

- `state`: the run's fields, constants, `LeaseLost`;
- `log`: sequence numbers, replay, held results, commits, quiescence;
- `waits`: timers, signals, approvals, and the shape of a wait (`Wait`, `suspension`);
- `children`: child tasks, started once per call site, and waiting for them (ADR 82);
- `steps`: executing steps, retries, failure records;
- `outcome`: concluding a run (suspend, finish);
- `task`: `TaskRun`, which starts and drives the workflow.
"""

from tether.engine.run.state import HOLD_LIMIT, INLINE_BACKOFF_MAX, LeaseLost
from tether.engine.run.task import TaskRun

__all__ = ["HOLD_LIMIT", "INLINE_BACKOFF_MAX", "LeaseLost", "TaskRun"]
