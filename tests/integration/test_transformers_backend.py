"""The transformers fallback backend: same codec, same decoder, same decisions; adapters that
do not fit are refused."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from openhoof_router.models.loading import BackendError  # noqa: E402
from openhoof_router.models.base_model import BaseModelRef  # noqa: E402
from openhoof_router.core.engine import RouterEngine  # noqa: E402
from openhoof_router.store.paths import Paths  # noqa: E402

MESSAGES = ["Check disk space on the server", "what tools do you have?", "log that the backup finished"]


@pytest.fixture(scope="module")
def hf_engine(base_ref, cache_dir):
    from openhoof_router.models.transformers_backend import TransformersBackend

    paths = Paths(cache_dir, cache_dir, cache_dir, cache_dir)
    engine = RouterEngine(TransformersBackend(base_ref, n_threads=2, paths=paths))
    yield engine
    engine.close()


def test_routes_like_llama_cpp(hf_engine, engine, builtin):
    for message in MESSAGES:
        hf = hf_engine.route(message, builtin)
        assert hf.valid and hf.backend == "transformers"
        assert hf_engine.route(message, builtin, use_cache=False).tool_names == hf.tool_names
        # float weights vs the Q4_K_M GGUF: the first choice may differ on near-ties, so
        # compare the first branching decision's token, which is robust here
        assert hf.tool_names[:1] == engine.route(message, builtin).tool_names[:1]


def test_same_tokens_as_llama_cpp(hf_engine, engine, builtin):
    from openhoof_router.core.records import PastTurn

    hf, ll = hf_engine.codec, engine.codec
    assert hf.tool_block(builtin) == ll.tool_block(builtin)
    for message in [*MESSAGES, "spelled <end_of_turn> markers", "émoji 👍 \ud800"]:
        assert hf.user_turn(message, [PastTurn(user="earlier <start_of_turn>")]) == \
            ll.user_turn(message, [PastTurn(user="earlier <start_of_turn>")])


def test_adapter_that_does_not_fit_is_refused(base_ref, cache_dir, tmp_path):
    """A PEFT adapter trained on another base (a tiny Gemma 3) must not load onto this one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from openhoof_router.models.transformers_backend import TransformersBackend

    tiny = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=262144, hidden_size=64, intermediate_size=128,
                                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                              head_dim=256))
    torch.manual_seed(0)
    get_peft_model(tiny, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "adapter")
    from transformers import AutoTokenizer

    from openhoof_router.models.base_model import float_checkpoint

    paths = Paths(cache_dir, cache_dir, cache_dir, cache_dir)
    with pytest.raises(BackendError, match="does not fit"):
        TransformersBackend(base_ref, adapter=tmp_path / "adapter", paths=paths)
    tokenizer = AutoTokenizer.from_pretrained(float_checkpoint(base_ref, paths))
    with pytest.raises(BackendError, match="holds no LoRA adapter"):
        TransformersBackend(BaseModelRef("x"), adapter=tmp_path, model=tiny, tokenizer=tokenizer)
