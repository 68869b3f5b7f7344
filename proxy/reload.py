"""SIGHUP: read the settings again and apply what can change without a restart.

The running parts register a hook per setting they can apply (`Reloader.hook`); a
changed setting without a hook is logged as needing a restart. A setting that
becomes reloadable later (endpoints, imports) only registers its hook; the table in
proxy/settings.py says which settings are reloadable (`on_change="reload"`), and
`Reloader.hook` refuses a hook for one that is not, so the two stay in agreement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .settings import BY_NAME, SETTINGS, ConfigError, Resolved

log = logging.getLogger("mlproxy.reload")

Hook = Callable[[dict[str, Any]], None]


class Reloader:
    def __init__(self, load: Callable[[], Resolved], current: Resolved) -> None:
        self._load = load          # resolves the settings again (raises ConfigError)
        self.current = current
        self._hooks: list[tuple[tuple[str, ...], Hook]] = []

    def hook(self, names: tuple[str, ...], apply: Hook) -> None:
        """`apply` gets the new values of `names` (all of them, by name) when any of
        them changes; it raises to refuse them (the old values stay in force)."""
        for name in names:
            if BY_NAME[name].on_change != "reload":
                raise ValueError(f"setting {name} is marked on_change=restart")
        self._hooks.append((names, apply))

    def reload(self) -> None:
        try:
            new = self._load()
        except ConfigError as exc:
            log.error("reload: settings unchanged: %s", exc)
            return
        changed = {s.name for s in SETTINGS if new[s.name].value != self.current[s.name].value}
        if not changed:
            log.log(_outcome_level(), "reload: no setting changed")
            return
        applied: set[str] = set()
        for names, apply in self._hooks:
            if not changed.intersection(names):
                continue
            try:
                apply({name: new[name].value for name in names})
            except Exception as exc:  # noqa: BLE001 - the old values stay in force
                log.error("reload: %s not changed: %s", ", ".join(names), exc)
                continue
            applied.update(changed.intersection(names))
        level = _outcome_level()  # after the hooks: log_level may have just changed
        for name in sorted(applied):
            log.log(level, "reload: %s=%s (from %s)", name, BY_NAME[name].show(new[name].value),
                    new[name].source)
            self.current[name] = new[name]
        restart = sorted(changed - applied - self._failed(changed, applied))
        if restart:
            log.warning("reload: %s changed but need a restart to take effect",
                        ", ".join(restart))

    def _failed(self, changed: set[str], applied: set[str]) -> set[str]:
        """Changed settings with a hook that refused them (already logged)."""
        hooked = {name for names, _ in self._hooks for name in names}
        return (changed & hooked) - applied


def _outcome_level() -> int:
    """What a reload did is logged whatever the log level (as Postgres logs a changed
    parameter at LOG): at INFO, or at WARNING when INFO is not shown (a reload to
    log_level = "warning" still says so)."""
    return logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING
