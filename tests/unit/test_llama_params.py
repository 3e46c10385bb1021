"""How llama.cpp loads models: never through ggml's AMX kernels where the CPU reports AMX
(a VM that reports it without enabling it kills the process at the first matrix product),
and the setting that overrides that."""

from __future__ import annotations

import llama_cpp
import pytest

from openhoof_router.models.llama_params import EXTRA_BUFFERS_ENV, cpu_flags, extra_buffers_allowed, model_params

AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_int8"})
PLAIN = frozenset({"avx2", "fma"})


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_tile\n\nprocessor\t: 1\n"
                    "flags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(("flags", "env", "allowed"), [
    (AMX, {}, False),
    (PLAIN, {}, True),
    (AMX, {EXTRA_BUFFERS_ENV: "1"}, True),
    (PLAIN, {EXTRA_BUFFERS_ENV: "off"}, False),
    (AMX, {EXTRA_BUFFERS_ENV: " "}, False),
])
def test_extra_buffers_are_off_where_the_cpu_reports_amx_unless_told(flags, env, allowed):
    assert extra_buffers_allowed(flags, env) is allowed


def test_model_params_load_on_the_cpu_under_that_rule(monkeypatch):
    for value, expected in (("0", False), ("1", True)):
        monkeypatch.setenv(EXTRA_BUFFERS_ENV, value)
        params = model_params(llama_cpp)
        assert params.n_gpu_layers == 0 and params.use_extra_bufts is expected
