"""Where openhoof-router keeps its files: the one place that knows the layout.

Everything lives under ``OPENHOOF_HOME`` (default ``~/.openhoof``)::

    data/function_pipeline/      synthetic_training.jsonl, training_data.jsonl, outcomes.jsonl
    models/tool_router/runs/ID/  one training run: adapter, merged GGUF, manifest.json
    models/tool_router/latest.json   the promoted run (switched atomically)
    cache/                       the assembled base GGUF and its float conversion

``OPENHOOF_DATA_DIR`` and ``OPENHOOF_MODELS_DIR`` move the data and model folders on
their own; constructor arguments win over both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYNTHETIC_FILE = "synthetic_training.jsonl"
DECISIONS_FILE = "training_data.jsonl"
OUTCOMES_FILE = "outcomes.jsonl"
LATEST_POINTER = "latest.json"


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


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
    ) -> "Paths":
        """Arguments first, then environment variables, then the defaults."""
        root = Path(home).expanduser() if home else (_env_path("OPENHOOF_HOME") or Path.home() / ".openhoof")
        data = Path(data_dir).expanduser() if data_dir else (
            _env_path("OPENHOOF_DATA_DIR") or root / "data" / "function_pipeline"
        )
        models = Path(models_dir).expanduser() if models_dir else (
            _env_path("OPENHOOF_MODELS_DIR") or root / "models" / "tool_router"
        )
        cache = _env_path("OPENHOOF_CACHE_DIR") or root / "cache"
        return cls(home=root, data_dir=data, models_dir=models, cache_dir=cache)

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


PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"
BUILTIN_TOOLS_FILE = PACKAGE_DATA / "openhoof_tools.json"
CURATED_TRAIN_FILE = PACKAGE_DATA / "curated_train.jsonl"
CURATED_EVAL_FILE = PACKAGE_DATA / "curated_eval.jsonl"
CURATED_EXTRA_FILE = PACKAGE_DATA / "curated_extra_train.jsonl"
FOLLOWUPS_TRAIN_FILE = PACKAGE_DATA / "followups_train.jsonl"
FOLLOWUPS_EVAL_FILE = PACKAGE_DATA / "followups_eval.jsonl"
