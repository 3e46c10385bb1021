"""GGUF export: llama.cpp running the exported weights picks the same next token as transformers.

Real models end to end: a PEFT LoRA merged into the embedded base GGUF with numpy
(``merge_lora_gguf``, what serving and ``hoof-train run`` use) against transformers + PEFT;
and the tiny random Gemma 3 the training tests use as a base (``support.tiny_gguf``).
Prompts go through the serving path (cached tool block, then the user turn) on both sides,
with the very same token ids.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("llama_cpp")

from openhoof_router.models.llamacpp import LlamaCppBackend  # noqa: E402
from openhoof_router.models.gguf_file import read_metadata  # noqa: E402
from openhoof_router.models.merge import merge_lora_gguf  # noqa: E402
from support.tiny_gguf import write_tiny_gguf  # noqa: E402
from openhoof_router.core.tools import builtin_tools  # noqa: E402
from openhoof_router.learning.config import TARGET_MODULES  # noqa: E402

pytestmark = pytest.mark.slow

MESSAGES = [
    "read my notes file",
    "what's the weather in Paris?",
    "Remember that my favourite colour is green, then search the web for green paint.",
    "Hi there, how are you?",
]
# Q8_0 re-quantization moves logits by a few tenths; only a near-tie in transformers' own
# logits may then be ordered the other way, and even then llama.cpp must pick its runner-up.
NEAR_TIE = 0.3


Prompts = tuple[list[int], list[list[int]]]  # (tool block ids, one user turn's ids per message)


@pytest.fixture(scope="module")
def prompts(engine) -> Prompts:
    """Token ids as the router builds them (the codec over the base GGUF's own tokenizer)."""
    block = list(engine.codec.tool_block(builtin_tools()))
    return block, [engine.codec.user_turn(m) for m in MESSAGES]


GGUF_PARSES: list[str] = []
"""Files the conversion in ``hf_base`` parsed with ``gguf.GGUFReader``, in order."""


@pytest.fixture(scope="module")
def hf_base(base_ref):
    import gguf

    from openhoof_router.models.base_model import load_gguf_as_transformers

    original = gguf.GGUFReader

    def counting(path, mode="r"):
        GGUF_PARSES.append(str(path))
        return original(path, mode)

    gguf.GGUFReader = counting
    try:
        model, _ = load_gguf_as_transformers(base_ref.gguf)
    finally:
        gguf.GGUFReader = original
    return model.eval()


def test_converting_the_gguf_parses_it_once(hf_base, base_ref):
    """transformers reads the GGUF for the tokenizer, the config and the weights; each parse
    walks the whole 262k-token vocabulary (~13 s here), so the conversion shares one."""
    assert GGUF_PARSES == [str(base_ref.gguf)]


@pytest.fixture(scope="module")
def base_logits(hf_base, prompts) -> list[np.ndarray]:
    return hf_next_logits(hf_base, prompts)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


def hf_next_logits(model, prompts: Prompts) -> list[np.ndarray]:
    """transformers' next-token logits after each prompt, the tool block's KV computed once."""
    from transformers import DynamicCache, Gemma3ForCausalLM

    # transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns)
    arg = "cache" if "cache" in inspect.signature(Gemma3ForCausalLM.forward).parameters else "past_key_values"
    block, users = prompts
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(torch.tensor([block]), use_cache=True, logits_to_keep=1, **{arg: cache})
        return [
            model(torch.tensor([user]), use_cache=True, logits_to_keep=1, **{arg: copy.deepcopy(cache)})
            .logits[0, -1].float().numpy()
            for user in users
        ]


def llama_next_logits(gguf: Path, prompts: Prompts) -> list[np.ndarray]:
    """llama.cpp's next-token logits, through the router's backend and its prefix cache."""
    block, users = prompts
    backend = LlamaCppBackend(gguf, n_ctx=1024, n_threads=2)
    try:
        from openhoof_router.core.prompt import PromptCodec

        # the copied tokenizer must tokenize exactly like the base's
        assert list(PromptCodec(backend).tool_block(builtin_tools())) == block
        out = []
        for user in users:
            backend.start(block)
            out.append(backend.feed(user))
        return out
    finally:
        backend.close()


def assert_same_choice(reference: list[np.ndarray], served: list[np.ndarray], label: str) -> None:
    for i, (ref, got) in enumerate(zip(reference, served)):
        top_ref, top_got = np.argsort(-ref)[:5], np.argsort(-got)[:5]
        margin = ref[top_ref[0]] - ref[top_ref[1]]
        drift = np.abs(ref[top_ref] - got[top_ref]).max()
        print(f"{label}[{i}]: argmax {top_ref[0]}/{top_got[0]} margin {margin:.3f} "
              f"top-5 overlap {len(set(top_ref) & set(top_got))} top-5 drift {drift:.3f}")
        if margin >= NEAR_TIE:
            assert top_got[0] == top_ref[0], f"{label}: prompt {i} next token differs"
        else:
            assert top_got[0] in top_ref[:2], f"{label}: prompt {i} next token outside the near-tied pair"
        assert len(set(top_ref) & set(top_got)) >= 4, f"{label}: prompt {i} top-5 disagree"
        assert drift < 1.5, f"{label}: prompt {i} logits drift by {drift}"


def test_lora_merged_export_matches_peft(hf_base, base_ref, prompts, base_logits, out_dir):
    from peft import LoraConfig, get_peft_model

    work = copy.deepcopy(hf_base)  # the module's base stays pristine for the other tests
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=list(TARGET_MODULES))
    torch.manual_seed(0)  # A's init draws from the global generator
    peft_model = get_peft_model(work, lora)
    with torch.no_grad():  # B starts at zero: give it small random values so the delta is real
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    peft_logits = hf_next_logits(peft_model, prompts)
    peft_dir = out_dir / "adapter"
    peft_model.save_pretrained(peft_dir)

    # the adapter is read back from disk and merged into the base GGUF (numpy, no torch)
    out = merge_lora_gguf(base_ref.gguf, peft_dir, out_dir / "router-q8_0.gguf")
    print(f"router q8_0 GGUF: {out.stat().st_size / 1e6:.1f} MB")
    assert not list(out_dir.glob(".*.tmp"))  # the temp file was renamed, not left behind
    meta, template = read_metadata(out), read_metadata(base_ref.gguf)
    assert all(meta[k] == template[k] for k in template if k.startswith("tokenizer."))
    served = llama_next_logits(out, prompts)
    assert_same_choice(peft_logits, served, "lora")

    # ...and the delta really is in the served weights: far from the base, not noise-close
    export_noise = np.mean([np.abs(p - s).mean() for p, s in zip(peft_logits, served)])
    lora_shift = np.mean([np.abs(b - s).mean() for b, s in zip(base_logits, served)])
    print(f"mean |logit diff|: served vs PEFT {export_noise:.3f}, served vs base {lora_shift:.3f}")
    assert lora_shift > 3 * export_noise
    assert any(b.argmax() != s.argmax() for b, s in zip(base_logits, served))


def test_merge_refuses_adapters_that_do_not_fit(base_ref, out_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Gemma3ForCausalLM

    get_peft_model(Gemma3ForCausalLM(tiny_config()), LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(
        tmp_path / "tiny-adapter")
    with pytest.raises(Exception, match="does not fit"):
        merge_lora_gguf(base_ref.gguf, tmp_path / "tiny-adapter", out_dir / "refused-merge.gguf")
    with pytest.raises(Exception, match="holds no LoRA adapter"):
        merge_lora_gguf(base_ref.gguf, tmp_path, out_dir / "refused-merge.gguf")
    assert not (out_dir / "refused-merge.gguf").exists()


def tiny_config(**overrides):
    from transformers import Gemma3TextConfig

    settings = dict(vocab_size=262144, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                    max_position_embeddings=2048, initializer_range=0.1)
    return Gemma3TextConfig(**{**settings, **overrides})


def test_tiny_random_config_f32(base_ref, prompts, out_dir):
    from transformers import Gemma3ForCausalLM

    torch.manual_seed(0)
    model = Gemma3ForCausalLM(tiny_config()).eval()
    with torch.no_grad():  # norms start at 0 (= scale 1): randomize them so the +1 shift is tested
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.normal_(0.0, 0.3)
    two = (prompts[0], prompts[1][:2])
    out = write_tiny_gguf(model, base_ref.gguf, out_dir / "tiny-f32.gguf")
    print(f"tiny f32 GGUF: {out.stat().st_size / 1e6:.1f} MB")
    meta = read_metadata(out)
    assert meta["gemma3.block_count"][0] == 2 and meta["gemma3.embedding_length"][0] == 64
    reference, served = hf_next_logits(model, two), llama_next_logits(out, two)
    for ref, got in zip(reference, served):
        assert got.argmax() == ref.argmax()
        assert np.abs(ref - got).max() < 0.05  # F32: only float rounding apart
