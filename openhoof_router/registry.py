"""Trained runs and the ``latest`` pointer that says which one serves.

``models_dir/runs/ID/`` holds one run (``manifest.json``, ``peft/``, ``*.gguf``, ``mlx/``).
``models_dir/latest.json`` names the promoted run; it is replaced atomically
(write a temp file, ``os.replace``), so readers see the old run or the new one, never a
half-written pointer. Routers watch its modification time to hot-reload.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .paths import Paths


class ModelRegistry:
    def __init__(self, paths: Paths | None = None) -> None:
        self.paths = paths or Paths.resolve()

    @property
    def pointer(self) -> Path:
        return self.paths.latest_pointer

    def new_run_dir(self, prefix: str = "run") -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = self.paths.runs_dir / f"{prefix}-{stamp}"
        path, n = base, 1
        while path.exists():
            path = base.with_name(f"{base.name}-{n}")
            n += 1
        path.mkdir(parents=True)
        return path

    def latest(self) -> dict[str, Any] | None:
        """The pointer's content (``run_id``, ``path``, ``promoted_at``, ``metrics``), or None."""
        try:
            return json.loads(self.pointer.read_text())
        except (OSError, ValueError):
            return None

    def latest_dir(self) -> Path | None:
        info = self.latest()
        if not info:
            return None
        path = Path(info["path"])
        return path if path.is_dir() else None

    def pointer_stamp(self) -> tuple[int, int] | None:
        """Cheap change detector for hot reload (mtime, size)."""
        try:
            st = self.pointer.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def promote(self, run_dir: Path, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """Point ``latest`` at ``run_dir`` atomically."""
        run_dir = Path(run_dir).resolve()
        info = {
            "run_id": run_dir.name,
            "path": str(run_dir),
            "promoted_at": time.time(),
            "metrics": metrics or {},
        }
        self.pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pointer.with_name(f".{self.pointer.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.pointer)
        return info

    def runs(self) -> list[dict[str, Any]]:
        """Manifests of all runs, oldest first (unreadable ones are skipped)."""
        out = []
        if not self.paths.runs_dir.is_dir():
            return out
        for run in sorted(self.paths.runs_dir.iterdir()):
            try:
                manifest = json.loads((run / "manifest.json").read_text())
            except (OSError, ValueError):
                continue
            manifest.setdefault("run_id", run.name)
            manifest["path"] = str(run)
            out.append(manifest)
        return out
