"""The HTTP API (FastAPI): tasks, events, health, metrics; JWT and API-key auth.

`create_app(tether_app, settings)` builds the ASGI app; `tether.api.server.serve(...)`
runs it on uvicorn. See docs/api.md.
"""

from __future__ import annotations

from tether.api.app import create_app

__all__ = ["create_app"]
