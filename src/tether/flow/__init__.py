"""Flow control: the engine-facing policies that decide when steps may run (ADR 87).

Each is a step gate (`tether.engine.gates`) with its state in the store, so it holds
across every worker and server. Budgets (`budgets.py`, `spending.py`; ADR 92) keep
steps within their spend limits in money and tokens.
"""

from tether.flow.budgets import BudgetBook
from tether.flow.spending import SpendGate

__all__ = ["BudgetBook", "SpendGate"]
