"""Handing a routed turn to the reasoner: the tools it gets bound, and ``hint`` mode's system line.

A fallback decision (invalid, or below its threshold) binds its ``fallback_tools`` (the
best-scored half of a list of 5 or more; else every tool) and adds no hint; a
"no tool" decision sends the turn without tools; otherwise ``narrow`` binds the selected
tools and the decision's ``extra_tools`` (those a close call scored near them), and
``hint`` binds all of them and names the router's choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.runnables import Runnable

from openhoof_router.core.records import RoutingDecision
from openhoof_router.langchain.toolset import IdentityCache, ToolSet

Mode = Literal["route", "narrow", "hint"]
MODES: tuple[str, ...] = ("route", "narrow", "hint")
DEFAULT_HINT = (
    "Tool router hint: this request most likely needs {tools} (router confidence "
    "{confidence:.2f}). All tools stay available; use your own judgement."
)


class Delegation:
    """What the reasoner gets for each decision (see the module docs).

    Args:
        reasoner: the chat model turns go to (None in ``route`` mode: nothing is delegated).
        mode: ``"narrow"`` or ``"hint"`` (``"route"`` never plans).
        hint_template: ``hint`` mode's system text (``{tools}``, ``{confidence}``).
        force_tool: in ``narrow`` mode, when exactly one tool is selected, require the
            reasoner to call it (``tool_choice``).
        bind_tools_kwargs: extra arguments for the reasoner's ``bind_tools``.
    """

    def __init__(self, reasoner: BaseChatModel | None, mode: Mode, *, hint_template: str = DEFAULT_HINT,
                 force_tool: bool = False, bind_tools_kwargs: Mapping[str, Any] | None = None) -> None:
        self.reasoner = reasoner
        self.mode = mode
        self.hint_template = hint_template
        self.force_tool = force_tool
        self.bind_tools_kwargs = dict(bind_tools_kwargs or {})
        self._bound = IdentityCache(self._bind_new, size=64)  # the bound reasoner per tool selection

    def plan(self, decision: RoutingDecision, messages: list[BaseMessage],
             toolset: ToolSet) -> tuple[Runnable, list[BaseMessage], list[str]]:
        """What the reasoner gets for ``decision``: (model, messages, names of tools sent)."""
        if self.reasoner is None:
            raise RuntimeError("this router has no reasoner (mode='route')")
        if decision.fallback:
            names = decision.fallback_tools or toolset.names
            return self._bind(names, toolset), messages, list(names)
        if not decision.tool_calls:
            return self.reasoner, messages, []
        if self.mode == "hint":
            return self._bind(toolset.names, toolset), self._hinted(messages, decision), toolset.names
        names = decision.narrow_tools
        choice = names[0] if self.force_tool and len(names) == 1 else None
        return self._bind(names, toolset, choice), messages, names

    def _bind(self, names: Sequence[str], toolset: ToolSet, tool_choice: str | None = None) -> Runnable:
        return self._bound.get(toolset.pick(names), tool_choice)

    def _bind_new(self, picked: tuple[Any, ...], tool_choice: str | None) -> Runnable:
        assert self.reasoner is not None
        kwargs = {**self.bind_tools_kwargs, **({"tool_choice": tool_choice} if tool_choice else {})}
        return self.reasoner.bind_tools(list(picked), **kwargs)

    def _hinted(self, messages: list[BaseMessage], decision: RoutingDecision) -> list[BaseMessage]:
        hint = self.hint_template.format(tools=", ".join(decision.tool_names), confidence=decision.confidence)
        # One system message, first: several chat templates (Qwen's among them) reject others.
        if messages and isinstance(messages[0], SystemMessage) and isinstance(messages[0].content, str):
            return [SystemMessage(content=f"{messages[0].content}\n\n{hint}"), *messages[1:]]
        return [SystemMessage(content=hint), *messages]
