"""Inbound signed webhooks: named hooks that start workflows or signal tasks."""

from tether.inbound.hooks import (
    HookBook,
    HookDef,
    HookMappingError,
    HookOptions,
    make_hook,
    path_getter,
)

__all__ = ["HookBook", "HookDef", "HookMappingError", "HookOptions", "make_hook", "path_getter"]
