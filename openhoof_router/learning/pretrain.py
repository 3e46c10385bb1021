"""``hoof-train pretrain``: rebuild the general adapter from the public corpus.

Builds the general training set (:mod:`.general`), trains one LoRA adapter from the bare
base (GPU when one is visible, else CPU), merges it into a GGUF, calibrates its verdict
rule on held-out corpus requests, evaluates
it on the general gate sample and the bundled OpenHoof held-out split, and writes a
manifest with the data hashes, the figures, the wall time and the hardware. ``--ship``
copies the adapter, its manifest and the fixed samples derived from the corpus (gate,
calibration, replay) into the package's data folder: that is how the adapter that ships
with the package is made. A general run's safe side never follows "no tool"
(:mod:`.evaluation.safe_side`).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from openhoof_router.learning.config import OPENHOOF_PASSES, SEAL_GROUPS, TrainConfig
from openhoof_router.learning.data.general_corpus import (
    SEAL_ATTRIBUTION,
    general_groups,
    load_extras,
    load_seal,
    seal_groups,
)
from openhoof_router.learning.data.shipped_samples import (
    CALIBRATION_FILE,
    GATE_FILE,
    REPLAY_FILE,
    SAMPLE_FILES,
    gate_records,
    group_to_row,
    write_jsonl,
)
from openhoof_router.learning.procedure import RunClock, RunPlan, carry_out
from openhoof_router.learning.run import general_items, held_out_items, start_adapter
from openhoof_router.models.base_model import resolve_base_model
from openhoof_router.models.lora import ADAPTER_CONFIG, PEFT_WEIGHTS
from openhoof_router.store.paths import Paths, resolve_paths
from openhoof_router.store.runs import GENERAL_DIR, ModelRegistry, RunError, RunFiles, RunLayout, RunManifest

GENERAL_DEFAULTS = TrainConfig(epochs=1, batch_size=8, lr=2e-4, seed=0, val_fraction=0.0, start_from="none",
                               replay=0)
"""The general adapter's training settings (with :data:`SEAL_GROUPS`, :data:`OPENHOOF_PASSES`, data seed 1)."""
REPLAY_GROUPS = 150


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_samples(corpus_dir: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """The fixed samples derived from the corpus: gate, calibration and replay files."""
    corpus = load_seal(corpus_dir)
    gate, calibration = gate_records(corpus, seed=seed)
    replay = seal_groups(corpus, load_extras(), random.Random(seed + 100), REPLAY_GROUPS)
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        GATE_FILE.name: write_jsonl(out / GATE_FILE.name, gate),
        CALIBRATION_FILE.name: write_jsonl(out / CALIBRATION_FILE.name, calibration),
        REPLAY_FILE.name: write_jsonl(out / REPLAY_FILE.name, (group_to_row(g) for g in replay)),
    }
    return {"files": counts, "replay_examples": sum(len(g.samples) for g in replay),
            "seal_train_requests": len(corpus.train), "seal_held_out_requests": len(corpus.held)}


def pretrain(
    corpus_dir: Path,
    *,
    paths: Paths | None = None,
    cfg: TrainConfig | None = None,
    base_model: Any = None,
    seal_groups_n: int = SEAL_GROUPS,
    openhoof_passes: int = OPENHOOF_PASSES,
    data_seed: int = 1,
    extra_corpora: Sequence[tuple[Path, int]] = (),
    adjacent_share: float = 0.0,
    sibling_share: float = 0.0,
    ship: bool = False,
    progress: bool = True,
    console: Console | None = None,
    checkpoint_every: int = 250,
    resume: Path | None = None,
) -> RunManifest:
    """Train the general adapter (:func:`~openhoof_router.learning.procedure.carry_out`, never
    promoted) from the bare base, or from ``cfg.start_from`` (a run folder or a PEFT adapter
    folder); ``ship``: copy it into the package. Returns its manifest.

    ``extra_corpora``: more corpora in the Seal-Tools layout (``training/corpora``), each
    with the number of tool lists to build from it. The gate and calibration samples come
    from ``corpus_dir`` alone, so runs with and without extra corpora are judged alike.
    ``adjacent_share``: the share of Seal-Tools lists that offer a neighbour of a needed tool
    (:func:`~openhoof_router.learning.data.general_corpus.adjacent_groups`); ``sibling_share``:
    the share that offer a needed tool beside a sibling it must be told apart from
    (:func:`~openhoof_router.learning.data.general_corpus.sibling_groups`).

    CPU and CUDA training save a checkpoint every ``checkpoint_every`` steps; ``resume`` (an
    interrupted pretraining's run folder) continues from its latest one, with the same
    result as an uninterrupted run. Raises ``RunError`` when the folder has no checkpoint, or
    when the data or settings differ from those it was started with.
    """
    paths = resolve_paths(paths)
    cfg = cfg or GENERAL_DEFAULTS
    base = resolve_base_model(base_model, paths)
    layout = RunLayout(root=Path(resume) if resume else ModelRegistry(paths).new_run_dir("general"))
    if resume and not sorted(layout.checkpoints.glob("step-*")):
        raise RunError(f"nothing to resume in {layout.root}: it has no training checkpoint")
    with RunClock(console) as clock:
        with clock.stage("building the general corpus", "data_s"):
            corpus = load_seal(corpus_dir)
            samples = build_samples(corpus_dir, layout.samples)
            groups = general_groups(corpus, seal_groups_n=seal_groups_n, openhoof_passes=openhoof_passes,
                                    seed=data_seed, extra=[(load_seal(d), n) for d, n in extra_corpora],
                                    adjacent=adjacent_share, siblings=sibling_share)
            rows = json.dumps([group_to_row(g) for g in groups], ensure_ascii=False)
            groups_sha256 = hashlib.sha256(rows.encode()).hexdigest()
            n_examples = sum(len(g.samples) for g in groups)
            started_with = {"groups_sha256": groups_sha256,
                            "train": cfg.model_dump(mode="json"), "base": base.sha256}
            _check_plan(layout, started_with, resume=resume is not None)
            clock.console.print(f"  {len(groups)} tool lists, {n_examples} requests "
                                f"({SEAL_ATTRIBUTION} + {''.join(f'{Path(d).name} + ' for d, _ in extra_corpora)}"
                                "OpenHoof data)")
        start, start_name = start_adapter(cfg.start_from, base)
        plan = RunPlan(
            kind="general", run_dir=layout.root, cfg=cfg, base=base, train=groups, start_from=start,
            start_name=start_name,
            calibration=general_items(path=layout.samples / CALIBRATION_FILE.name),
            evaluations={"general_gate": general_items(path=layout.samples / GATE_FILE.name),
                         "openhoof_held_out": held_out_items()},
            data={"corpus": SEAL_ATTRIBUTION,
                  "corpus_sha256": _corpus_sha256(Path(corpus_dir)),
                  **({"extra_corpora": [{"name": Path(d).name, "groups": n, "attribution": _attribution(Path(d)),
                                         "sha256": _corpus_sha256(Path(d))}
                                        for d, n in extra_corpora]} if extra_corpora else {}),
                  "groups": len(groups), "n_examples": n_examples, "groups_sha256": groups_sha256, **samples},
            hyperparameters={"seal_groups": seal_groups_n, "openhoof_passes": openhoof_passes, "data_seed": data_seed,
                             **({"adjacent_share": adjacent_share} if adjacent_share else {}),
                             **({"sibling_share": sibling_share} if sibling_share else {})},
            checkpoint_every=checkpoint_every,
            resume=resume is not None,
            loss_title="general adapter: training loss",
        )
        manifest = carry_out(plan, paths, clock, progress=progress)
    if ship:
        ship_general(layout.root, manifest)
        clock.console.print(f"shipped into {GENERAL_DIR}")
    return manifest


def _corpus_sha256(corpus_dir: Path) -> dict[str, str]:
    return {p.name: _sha256(p) for p in sorted(corpus_dir.glob("*.jsonl"))}


def _attribution(corpus_dir: Path) -> str:
    """The first line of a corpus's README (its source and licence), or its folder name."""
    readme = corpus_dir / "README.md"
    if readme.exists():
        lines = [ln.strip("# ").strip() for ln in readme.read_text().splitlines() if ln.strip()]
        if lines:
            return lines[0]
    return corpus_dir.name


def _check_plan(layout: RunLayout, started_with: dict[str, Any], *, resume: bool) -> None:
    """Record what a run starts with; a resumed run must start with the very same."""
    if not resume:
        layout.plan.write_text(json.dumps(started_with, indent=2))
        return
    recorded = json.loads(layout.plan.read_text()) if layout.plan.exists() else {}
    differ = sorted(k for k in started_with if recorded.get(k) != started_with[k])
    if differ:
        raise RunError(f"cannot resume {layout.root.name}: its {', '.join(differ)} differ from this call's "
                       "(resume with the corpus, data options and training settings it was started with)")


def ship_general(run_dir: Path, manifest: RunManifest) -> None:
    """Copy a general run into the package: the adapter (float16, 2x smaller), its manifest
    (adapter only: routers merge it into a cached GGUF on first use), the corpus samples."""
    from safetensors.numpy import load_file, save_file

    GENERAL_DIR.mkdir(parents=True, exist_ok=True)
    adapter = run_dir / (manifest.files.peft or RunLayout.PEFT_DIR)
    weights = load_file(str(adapter / PEFT_WEIGHTS))
    save_file({k: v.astype("float16") for k, v in weights.items()}, str(GENERAL_DIR / PEFT_WEIGHTS))
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    config["base_model_name_or_path"] = manifest.base_model.name  # not this machine's cache path
    (GENERAL_DIR / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    shipped = manifest.model_copy(deep=True)
    shipped.files = RunFiles(peft=".")
    shipped.base_model.path = None
    shipped.save(GENERAL_DIR)
    for shipped_file in SAMPLE_FILES:
        shutil.copy2(RunLayout(root=run_dir).samples / shipped_file.name, shipped_file)
