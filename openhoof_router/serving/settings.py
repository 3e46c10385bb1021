"""RouterSettings: every setting of a router in one typed object, each with its environment variable.

Read the way llama-cpp-python's server settings are: a pydantic-settings ``BaseSettings``
whose fields come from keyword arguments, else ``OPENHOOF_<FIELD>`` variables, else the
defaults below. :meth:`RouterSettings.of` adds per-call overrides to a settings object, so
the precedence is: keyword arguments > a settings object passed in > environment >
defaults. :class:`~openhoof_router.serving.service.RouterService`,
:class:`~openhoof_router.langchain.runnable.ToolRouter`, the agent middleware, the LangGraph
node and ``hoof-route`` all take one.

The folder fields come from :class:`~openhoof_router.store.paths.PathSettings` and the model
fields from :class:`~openhoof_router.models.device.ModelSettings`, so each variable is
declared once, where the layer that also reads it without a router lives
(``Paths.resolve()``, a bare ``RouterEngine.load``).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, InstanceOf, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from openhoof_router.core.prompt import CONTEXT_TURNS
from openhoof_router.models.base_model import BaseModelRef
from openhoof_router.models.device import ModelSettings
from openhoof_router.store.logs import DEFAULT_MAX_MESSAGE_CHARS
from openhoof_router.store.paths import ENV_PREFIX, SETTINGS_CONFIG, PathSettings
from openhoof_router.store.runs import ServedRun

DEFAULT_THRESHOLD = 0.5
"""Score a decision needs to be followed when neither the caller nor the run sets one."""
DEFAULT_NO_TOOL_THRESHOLD = 0.9
"""Score a "no tool" answer needs when nobody set or fitted one: a wrong "no tool" leaves the
reasoner without the tool it needs, so it must be surer than a tool choice."""
DEFAULT_FALLBACK_SHARE = 0.5
"""Share of a long tool list (the best-scored) that a fallback binds in ``narrow`` mode and
the middleware (:class:`~openhoof_router.serving.policy.ThresholdPolicy`)."""


class SettingsError(ValueError):
    """A setting has an invalid value (the message names its field and environment variable)."""


class RouterSettings(PathSettings, ModelSettings):
    """Everything a router is configured with; see each field for its ``OPENHOOF_*`` variable.

    Raises:
        SettingsError: a value (given, or read from the environment) is invalid.
    """

    model_config = SettingsConfigDict(**SETTINGS_CONFIG, arbitrary_types_allowed=True)

    model: str | InstanceOf[ServedRun] | None = Field(
        None, description="What to serve (OPENHOOF_MODEL). Unset: the promoted run, else the shipped general "
                          "adapter, else the base, following promotions. 'general', 'base', a run folder or a "
                          "GGUF file pins that model (no fallback, no hot reload).")
    # widened from ModelSettings' text: a router may also be given a resolved base model
    base_model: str | InstanceOf[BaseModelRef] | None = Field(  # type: ignore[assignment]
        None, description="Base model: 'embedded' (Gemma 3 270M), a .gguf file or a Hugging Face folder "
                          "(OPENHOOF_BASE_MODEL).")
    max_tools: int = Field(3, ge=1, description="Most tools one decision may name (OPENHOOF_MAX_TOOLS).")
    threshold: float | None = Field(
        None, ge=0, description="Score a decision needs to be followed, else it is a fallback to all tools "
                                "(OPENHOOF_THRESHOLD; 0: follow every valid decision, > 1: never). Unset: "
                                f"the run's fitted value, else {DEFAULT_THRESHOLD}.")
    tool_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-tool thresholds, 'none' for the no-tool answer; they override "
                                          "the run's fitted ones (OPENHOOF_TOOL_THRESHOLDS, as JSON).")
    keep_threshold: float | None = Field(
        None, ge=0, description="narrow mode and the middleware also bind every tool scoring at least this "
                                "(OPENHOOF_KEEP_THRESHOLD; > 1: the answer's tools only). Unset: the run's "
                                "fitted value, else the answer's tools only.")
    fallback_share: float = Field(
        DEFAULT_FALLBACK_SHARE, gt=0, le=1, description="On a fallback over 5 or more tools, narrow mode and the "
        "middleware bind this share of them, the best-scored (OPENHOOF_FALLBACK_SHARE; 1: every tool).")
    context_turns: int = Field(CONTEXT_TURNS, ge=0, description="Earlier turns of the conversation the router "
                                                                "reads (OPENHOOF_CONTEXT_TURNS).")
    log_decisions: bool = Field(True, description="Append decisions to training_data.jsonl "
                                                  "(OPENHOOF_LOG_DECISIONS).")
    max_logged_chars: int | None = Field(DEFAULT_MAX_MESSAGE_CHARS, ge=0, description="Cap on the logged "
                                         "message (None: no cap; OPENHOOF_MAX_LOGGED_CHARS).")
    hot_reload: bool | None = Field(None, description="Follow promotions of latest.json (OPENHOOF_HOT_RELOAD); "
                                                      "unset: on unless the model is pinned.")
    reload_interval: float = Field(2.0, ge=0, description="Seconds between checks of latest.json "
                                                          "(OPENHOOF_RELOAD_INTERVAL).")
    reload_in_background: bool = Field(True, description="Load a promoted run on a background thread, so no "
                                                         "call waits (OPENHOOF_RELOAD_IN_BACKGROUND).")
    turn_memory: int = Field(1024, ge=0, description="Human turns remembered; each is routed and logged once "
                                                     "(OPENHOOF_TURN_MEMORY).")
    prefetch_turns: bool = Field(True, description="When an agent's turn is over (its reply is out), read the "
                                 "conversation so far in the background, so the next turn reads only its "
                                 "message (OPENHOOF_PREFETCH_TURNS; agent middleware).")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_explain(type(self), exc)) from None

    @field_validator("model", "base_model", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("tool_thresholds", mode="after")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v < 0 for v in value.values()):
            raise ValueError("thresholds must be >= 0")
        return value

    @classmethod
    def of(cls, settings: RouterSettings | None = None, /, **overrides: Any) -> RouterSettings:
        """``settings`` (default: read from the environment) with ``overrides`` applied, validated.

        ``None`` for a setting whose default is unset means "not given", as keyword arguments
        always have: ``data_dir=None`` keeps ``OPENHOOF_DATA_DIR``. Raises ``TypeError`` for a
        name that is not a setting, :class:`SettingsError` for a bad value.
        """
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"unknown router setting(s): {', '.join(unknown)} "
                            f"(settings: {', '.join(cls.model_fields)})")
        overrides = {k: v for k, v in overrides.items() if v is not None or _none_is_a_value(cls, k)}
        if settings is None:
            return cls(**overrides)
        if not overrides:
            return settings
        return cls(**{**dict(settings), **overrides})  # every field given: the environment is not read again

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of ``field``."""
        alias = cls.model_fields[field].validation_alias
        return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Every field and its environment variable."""
        return {name: cls.env_name(name) for name in cls.model_fields}


def _none_is_a_value(settings: type[RouterSettings], field: str) -> bool:
    info = settings.model_fields[field]
    return info.default is not None and info.default_factory is None  # max_logged_chars=None: no cap


def _explain(settings: type[RouterSettings], exc: ValidationError) -> str:
    by_name = {name: name for name in settings.model_fields}
    by_name.update({str(info.validation_alias): name for name, info in settings.model_fields.items()
                    if isinstance(info.validation_alias, str)})
    lines = []
    for error in exc.errors():
        name = by_name.get(str(error["loc"][0]) if error["loc"] else "", str(error["loc"][:1]))
        env = settings.env_name(name) if name in settings.model_fields else "?"
        lines.append(f"{name} ({env}): {error['msg']}, got {error.get('input')!r}")
    return "invalid router setting " + "; ".join(lines)
