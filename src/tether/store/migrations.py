"""Schema migrations: numbered `.sql` files in each driver's `migrations` folder."""

from __future__ import annotations

import re
from importlib import resources


def load_migrations(package: str) -> list[tuple[int, str]]:
    """`(version, script)` for every `NNNN_name.sql` in `package`'s `migrations` folder,
    in version order."""
    folder = resources.files(package) / "migrations"
    found = []
    for entry in folder.iterdir():
        match = re.match(r"(\d+)_.*\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text()))
    return sorted(found)
