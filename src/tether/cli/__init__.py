"""The `tether` command line (Typer + Rich).

Each command lives in a small module of this package that registers itself on the root
Typer app (`tether.cli.root.cli`) when imported; adding a command means adding a module
and naming it in `COMMAND_MODULES`.
"""

from __future__ import annotations

import importlib

from tether.cli.root import cli

COMMAND_MODULES = (
    "tether.cli.worker",
    "tether.cli.tasks",
    "tether.cli.watch",
    "tether.cli.migrate",
    "tether.cli.demo",
    "tether.cli.approvals",
    "tether.cli.server",
    "tether.cli.webhooks",
    "tether.cli.schedules",
    "tether.cli.rollouts",
    "tether.cli.dlq",
    "tether.cli.breakers",
    "tether.cli.spend",
)
"""Modules whose import registers commands (server, token, approvals, dlq... go here)."""

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:
    """Entry point of the `tether` console script."""
    cli(prog_name="tether")


__all__ = ["cli", "main"]
