"""Where openhoof-router keeps its files: the one place that knows the layout.

Everything lives under ``OPENHOOF_HOME`` (default ``~/.openhoof``)::

    data/function_pipeline/      synthetic_training.jsonl, training_data.jsonl, outcomes.jsonl
    models/tool_router/runs/ID/  one training run: adapter, merged GGUF, manifest.json
    models/tool_router/latest.json   the promoted run (switched atomically)
    cache/base/                  the assembled base GGUF and its float conversion
    cache/merged/                runs merged into one GGUF for llama.cpp
    cache/evals/                 evaluation reports of the model in place

``OPENHOOF_DATA_DIR``, ``OPENHOOF_MODELS_DIR`` and ``OPENHOOF_CACHE_DIR`` move one
folder each; arguments win over the environment. :class:`PathSettings` is the one place
these variables are read (the router's settings extend it).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SYNTHETIC_FILE = "synthetic_training.jsonl"
DECISIONS_FILE = "training_data.jsonl"
OUTCOMES_FILE = "outcomes.jsonl"
LATEST_POINTER = "latest.json"


ENV_PREFIX = "OPENHOOF_"
SETTINGS_CONFIG = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", frozen=True,
                                     populate_by_name=True)
"""How every openhoof-router settings class reads the environment (``OPENHOOF_<FIELD>``;
an empty variable counts as unset)."""


class PathSettings(BaseSettings):
    """The folders, from arguments, else ``OPENHOOF_*`` variables, else the defaults."""

    model_config = SETTINGS_CONFIG
    home: Path | None = Field(None, description="Root of everything (OPENHOOF_HOME; default ~/.openhoof).")
    data_dir: Path | None = Field(None, description="Logs and training data (OPENHOOF_DATA_DIR; default "
                                                    "HOME/data/function_pipeline).")
    models_dir: Path | None = Field(None, description="Trained runs and latest.json (OPENHOOF_MODELS_DIR; default "
                                                      "HOME/models/tool_router).")
    cache_dir: Path | None = Field(None, description="Base GGUF, merged GGUFs, evaluation caches "
                                                     "(OPENHOOF_CACHE_DIR; default HOME/cache).")

    @field_validator("home", "data_dir", "models_dir", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    def paths(self) -> Paths:
        """The resolved folders."""
        root = self.home or Path.home() / ".openhoof"
        return Paths(home=root, data_dir=self.data_dir or root / "data" / "function_pipeline",
                     models_dir=self.models_dir or root / "models" / "tool_router",
                     cache_dir=self.cache_dir or root / "cache")


@dataclass(frozen=True)
class Paths:
    """Resolved folders for one router / trainer instance."""

    home: Path
    data_dir: Path
    models_dir: Path
    cache_dir: Path

    @classmethod
    def resolve(
        cls,
        home: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
    ) -> Paths:
        """Arguments first, then environment variables, then the defaults (:class:`PathSettings`)."""
        given: dict[str, Any] = {"home": home, "data_dir": data_dir, "models_dir": models_dir}
        return PathSettings(**{k: v for k, v in given.items() if v}).paths()

    @property
    def synthetic_file(self) -> Path:
        return self.data_dir / SYNTHETIC_FILE

    @property
    def decisions_file(self) -> Path:
        return self.data_dir / DECISIONS_FILE

    @property
    def outcomes_file(self) -> Path:
        return self.data_dir / OUTCOMES_FILE

    @property
    def runs_dir(self) -> Path:
        return self.models_dir / "runs"

    @property
    def latest_pointer(self) -> Path:
        return self.models_dir / LATEST_POINTER

    @property
    def base_cache(self) -> Path:
        """Base models: the assembled embedded GGUF and float checkpoints converted from GGUFs."""
        return self.cache_dir / "base"

    @property
    def merged_cache(self) -> Path:
        """Runs without their own GGUF, merged once into one for llama.cpp."""
        return self.cache_dir / "merged"

    @property
    def eval_cache(self) -> Path:
        """Evaluation reports of the model in place, per evaluation set (so runs do not redo them)."""
        return self.cache_dir / "evals"

    @property
    def state_cache(self) -> Path:
        """Saved llama.cpp sequence states of tool blocks (:mod:`openhoof_router.models.state_store`)."""
        return self.cache_dir / "states"


def resolve_paths(paths: Paths | None = None, data_dir: str | os.PathLike[str] | None = None) -> Paths:
    """``paths``, else the default folders (:meth:`Paths.resolve`), with ``data_dir`` overriding
    the data folder: the one way a function that takes optional ``paths`` resolves them."""
    if paths is None:
        return Paths.resolve(data_dir=data_dir)
    return dataclasses.replace(paths, data_dir=Path(data_dir).expanduser()) if data_dir else paths


PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"
BUILTIN_TOOLS_FILE = PACKAGE_DATA / "openhoof_tools.json"
CURATED_TRAIN_FILE = PACKAGE_DATA / "curated_train.jsonl"
CURATED_EVAL_FILE = PACKAGE_DATA / "curated_eval.jsonl"
CURATED_EXTRA_FILE = PACKAGE_DATA / "curated_extra_train.jsonl"
FOLLOWUPS_TRAIN_FILE = PACKAGE_DATA / "followups_train.jsonl"
FOLLOWUPS_EVAL_FILE = PACKAGE_DATA / "followups_eval.jsonl"
