"""An interrupted training run, resumed from its last checkpoint, ends with the very
adapter an uninterrupted run writes (long pretraining spans working sessions)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from openhoof_router.learning.config import TrainConfig  # noqa: E402

from .test_training import groups, tiny_model, tokenizer  # noqa: E402,F401 - tokenizer is a fixture

pytestmark = pytest.mark.slow


def _adapter(result):
    from safetensors.numpy import load_file

    return load_file(str(result.adapter_dir / "adapter_model.safetensors"))


def test_resumed_training_equals_an_uninterrupted_run(tokenizer, tmp_path, monkeypatch):  # noqa: F811
    import openhoof_router.learning.trainers.torch_lora as trainer

    cfg = TrainConfig(max_steps=6, batch_size=4, lr=1e-3, threads=2, start_from="none")
    whole = trainer.train_torch(groups(), [], cfg, tmp_path / "whole", None, progress=False, model=tiny_model(),
                          tokenizer=tokenizer)

    # the same run, killed right after its step-4 checkpoint
    run_loop = trainer.run_loop

    def killed_after_step_4(*args, **kwargs):
        save = kwargs["checkpoint"]

        def checkpoint(step, history):
            save(step, history)
            if step == 4:
                raise KeyboardInterrupt

        return run_loop(*args, **{**kwargs, "checkpoint": checkpoint})

    cut = tmp_path / "cut"
    monkeypatch.setattr(trainer, "run_loop", killed_after_step_4)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_torch(groups(), [], cfg, cut, None, progress=False, model=tiny_model(), tokenizer=tokenizer,
                      checkpoint_every=2)
    monkeypatch.setattr(trainer, "run_loop", run_loop)
    assert (cut / "checkpoints" / "step-000004").is_dir() and not (cut / "peft").exists()

    resumed = trainer.train_torch(groups(), [], cfg, cut, None, progress=False, model=tiny_model(), tokenizer=tokenizer,
                            checkpoint_every=2, resume=True)
    a, b = _adapter(whole), _adapter(resumed)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)  # bit for bit
    assert [r["step"] for r in resumed.history] == list(range(1, 7))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
