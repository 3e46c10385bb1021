"""Reading an on/off environment setting, the one way every ``OPENHOOF_*`` switch reads."""

from __future__ import annotations

OFF = frozenset({"0", "false", "no", "off"})
ON = frozenset({"1", "true", "yes", "on"})


def env_switch(value: str | None) -> bool | None:
    """``value`` of an on/off setting: None where it is unset or blank (the caller's default
    applies), False for ``0``/``false``/``no``/``off`` (any case), True for anything else."""
    word = (value or "").strip().lower()
    if not word:
        return None
    return word not in OFF
