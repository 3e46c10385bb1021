"""A LangChain user's first day, without a model: what the install brings, one-line hints for
missing packages, the command-line conventions (``error:``, ``--json``, exit 5 for unusable
data, help text), honest samples for ``eval --limit`` and ``calibrate``, and the log join
being iterable as documented."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from importlib.metadata import packages_distributions

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from support import ROOT

from openhoof_router.cli.route import main as route_main
from openhoof_router.cli.train import main as train_main
from openhoof_router.core.records import NO_TOOL, RoutingDecision, ToolCall
from openhoof_router.core.tools import builtin_tools
from openhoof_router.learning.evaluation.calibrate import (
    MIN_SUPPORT,
    SCORE_GRID,
    Scored,
    fit_tool_thresholds,
    out_of_reach,
    support,
)
from openhoof_router.learning.evaluation.evaluate import sample_items
from openhoof_router.store.logs import DecisionLog, read_joined


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_closure(extra: str) -> dict[str, set[str]]:
    """Distribution -> extras it is installed with, for ``pip install 'openhoof-router[extra]'``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted, todo, seen = {}, [extra], set()
    pending = [Requirement(r) for r in project["dependencies"]]
    while todo or pending:
        for req in pending:
            if _name(req.name) == "openhoof-router":
                todo += sorted(req.extras)
            else:
                wanted.setdefault(_name(req.name), set()).update(req.extras)
        pending = []
        if todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                pending = [Requirement(r) for r in project["optional-dependencies"][name]]
    return wanted


def test_readme_command_1_installs_langchain_and_the_stand_in_server():
    assert '.venv/bin/pip install -e ".[cpu]"' in (ROOT / "README.md").read_text()
    cpu = install_closure("cpu")
    assert {"langchain", "langchain-openai", "langgraph", "llama-cpp-python", "torch"} <= set(cpu)
    assert "server" in cpu["llama-cpp-python"]  # --stand-in runs llama_cpp.server (models.llama_server)
    assert "llama_cpp.server" in (ROOT / "tests" / "support" / "loopback_server.py").read_text()


def test_every_example_imports_only_what_the_cpu_extra_installs():
    cpu, dists = install_closure("cpu"), packages_distributions()
    local = {"_common", "support", "openhoof_router", "__future__"}
    missing = {}
    for example in sorted((ROOT / "examples").glob("*.py")):
        for node in ast.walk(ast.parse(example.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for top in {n.split(".")[0] for n in names} - local - set(sys.stdlib_module_names):
                if not {_name(d) for d in dists.get(top, [top])} & set(cpu):
                    missing.setdefault(example.name, []).append(top)
    assert not missing, f"imports that pip install -e '.[cpu]' does not bring: {missing}"


def test_a_missing_optional_package_is_one_line_naming_the_pip_command():
    code = ("import sys; sys.modules['langchain'] = None  # as if LangChain were not installed\n"
            "from openhoof_router.langchain import ToolRouterMiddleware")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError") and "pip install 'openhoof-router[langchain]'" in last


def test_importing_llama_cpp_through_the_router_leaves_no_unclosed_dev_null():
    code = ("import llama_cpp\nfrom openhoof_router.models.quiet import quiet_llama_cpp\n"
            "assert quiet_llama_cpp(llama_cpp) is False\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr and proc.stderr == ""


@pytest.mark.parametrize("main", [route_main, train_main])
def test_usage_errors_are_spelled_error_like_every_other_error(main):
    result = CliRunner().invoke(main, ["--no-such-option"])
    assert result.exit_code == 2
    assert "error: No such option" in result.stderr and "Error:" not in result.stderr + result.stdout


def test_hoof_route_accepts_json_logs_by_default_and_shows_no_private_path():
    help_text = " ".join(CliRunner().invoke(route_main, ["--help"]).stdout.split())
    assert "../shared" not in help_text and "--json" in help_text and "--log / --no-log" in help_text
    assert "[default: log]" in help_text
    given = CliRunner().invoke(route_main, ["--json"], input="")  # accepted: only the message is missing
    assert given.exit_code == 2 and "error: give a message" in given.stderr


def test_run_and_its_alias_train_are_listed_once():
    listed = CliRunner().invoke(train_main, ["--help"]).stdout
    commands = listed[listed.index("Commands:"):].split()
    assert "run" in commands and "train" not in commands
    alias = CliRunner().invoke(train_main, ["train", "--help"])
    assert alias.exit_code == 0 and "Assemble data, train" in alias.stdout


@pytest.mark.parametrize("content", ["{not json\n", "[{\"broken\": ", "\n\n", '{"input": {}}\n'])
def test_unusable_data_exits_5_with_one_error_line(tmp_path, content):
    data = tmp_path / "records.jsonl"
    data.write_text(content)
    result = CliRunner().invoke(train_main, ["--home", str(tmp_path / "home"), "eval", "--data", str(data)])
    assert result.exit_code == 5, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and str(data) in result.stderr


# -- honest samples ----------------------------------------------------------------------------

def test_eval_limit_samples_across_classes_and_tools_with_a_seed():
    from openhoof_router.learning.run import held_out_items

    items = held_out_items()
    first = items[:20]
    assert len({t for it in first for t in it.expected}) <= 2  # what --limit 20 used to evaluate on
    sample = sample_items(items, 20, seed=0)
    assert len(sample) == 20 and len(set(map(id, sample))) == 20
    assert [items.index(it) for it in sample] == sorted(items.index(it) for it in sample)  # file order kept
    classes, shares = Counter(it.klass for it in sample), Counter(it.klass for it in items)
    assert set(classes) == {"none", "one", "two+"}
    for klass, n in shares.items():  # each class in proportion (largest remainder)
        assert abs(classes[klass] - 20 * n / len(items)) < 1
    assert len({t for it in sample for t in it.expected}) >= 8
    assert sample_items(items, 20, seed=0) == sample and sample_items(items, 20, seed=1) != sample
    assert sample_items(items, len(items) + 5, seed=3) == items


def _scored(names: list[str], score: float, right: bool) -> Scored:
    got = frozenset(names)
    expected = got if right else frozenset({"exec"} if got != {"exec"} else {"notify"})
    return Scored(got, {n: score for n in names}, score if not names else 0.0, expected)


def test_calibration_fits_no_threshold_on_fewer_than_the_stated_minimum():
    # 24 decisions, as in the report: 7 no-tool answers, 3 of them wrong at every score
    items = ([_scored([], 0.6 + 0.05 * i, right=i % 2 == 0) for i in range(7)]
             + [_scored(["exec"], 0.9, right=True) for _ in range(17)])
    loose = fit_tool_thresholds(items, target=0.9, min_support=5)[1]
    assert loose[NO_TOOL] == SCORE_GRID[-1]  # what 5 decisions would fit: nearly every no-tool turn falls back
    default, per_tool = fit_tool_thresholds(items, target=0.9)
    assert MIN_SUPPORT == 20 and NO_TOOL not in per_tool and "exec" not in per_tool  # 7 and 17: too few
    assert default is not None  # 24 decisions in all: the default is fitted
    assert support(items) == {NO_TOOL: 7, "exec": 17}
    more = items + [_scored(["exec"], 0.9, right=True) for _ in range(3)]
    assert fit_tool_thresholds(more, target=0.9)[1] == {"exec": 0.0}
    assert out_of_reach(items, 0.9, MIN_SUPPORT) == []  # the default reaches 90 % at 0.7
    hopeless = [_scored(["exec"], 0.5 + 0.02 * i, right=i % 3 == 0) for i in range(24)]
    assert fit_tool_thresholds(hopeless, target=0.9) == (SCORE_GRID[-1], {"exec": SCORE_GRID[-1]})
    assert out_of_reach(hopeless, 0.9, MIN_SUPPORT) == ["(default)", "exec"]  # said, not silent


# -- the documented API -----------------------------------------------------------------------

def test_read_joined_is_iterable_over_the_joined_decisions(tmp_path):
    log = DecisionLog(data_dir=tmp_path)
    made = [RoutingDecision(tool_calls=[ToolCall(name=n)], scores={n: 0.9}) for n in ("exec", "notify")]
    for decision in made:
        log.record(decision, "check disk", builtin_tools(), mode="route")
    joined = read_joined(data_dir=tmp_path)
    assert len(joined) == 2
    assert [j.decision_id for j in joined] == [d.decision_id for d in made]
    assert json.dumps([j.status for j in read_joined(data_dir=tmp_path)]) == '["pending", "pending"]'
