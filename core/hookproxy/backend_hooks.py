"""Per-backend hook callers: a per-request hook is not called at all when no plugin can act on it.

Why: ``prepare_request`` and ``stream_response`` run on every upstream call, and pluggy's call
machinery costs a few microseconds even when every implementation returns ``None`` at once
because the backend is not its own. A plugin marks such an implementation with
:func:`for_backends` (``@for_backends(MyBackend)``); the core then leaves it out for other
backends, and skips the hook entirely when nothing is left. Unmarked implementations are
called for every backend, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

if TYPE_CHECKING:
    from .backend import Backend

F = TypeVar("F", bound=Callable[..., Any])
_ATTRIBUTE = "hookproxy_backend_types"


def for_backends(*types: type[Backend]) -> Callable[[F], F]:
    """Declare that a hook implementation only ever acts on backends of these classes."""

    def mark(function: F) -> F:
        setattr(function, _ATTRIBUTE, types)
        return function

    return mark


class BackendHooks:
    """Hook callers per (hook, backend), computed on first use; ``None`` means skip the call.

    With ``skip=False`` (hook tracing on) every hook is called, so a trace shows the whole flow.
    """

    def __init__(self, pm: pluggy.PluginManager, *, skip: bool = True) -> None:
        self._pm = pm
        self._skip = skip
        self._callers: dict[tuple[str, str], Any] = {}

    def caller(self, name: str, backend: Backend) -> Any:
        key = (name, backend.id)
        try:
            return self._callers[key]
        except KeyError:
            pass
        hook = getattr(self._pm.hook, name)
        if not self._skip:
            self._callers[key] = hook
            return hook
        implementations = hook.get_hookimpls()
        elsewhere = [impl.plugin for impl in implementations
                     if not isinstance(backend, getattr(impl.function, _ATTRIBUTE, object))]
        if len(elsewhere) == len(implementations):
            caller = None
        elif not elsewhere:
            caller = hook
        else:
            caller = self._pm.subset_hook_caller(name, elsewhere)
        self._callers[key] = caller
        return caller
