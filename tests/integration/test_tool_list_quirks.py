"""Tool lists as users write them, routed by what a fresh install serves (the shipped
general adapter, at its fitted safe side): missing, duplicated or contradictory
descriptions, names with no meaning, one tool or forty, and a list that changes between
turns of one conversation. Each routes, every offered tool gets a score, and the tool a
plain request needs reaches the reasoner (in the answer, among the extra tools, or in a
fallback to all tools)."""

from __future__ import annotations

import pytest

from openhoof_router import RouterService
from openhoof_router.core.records import PastToolCall, PastTurn, RoutingDecision
from openhoof_router.core.tools import normalize_tools

RAIN = "is it raining in London right now?"
WEATHER = "Current weather and forecast for a city."
EMAIL = "Send an email to a recipient with a subject and body."
DOCS = "Search the internal documentation for a query."
TICKET = "File a bug ticket in the issue tracker."


def spec(name: str, description: str, *params: str) -> dict:
    """An OpenAI function schema, as users pass them."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {p: {"type": "string"} for p in params}}}}


@pytest.fixture(scope="module")
def service(tmp_path_factory, cache_dir):
    svc = RouterService(model="general", data_dir=tmp_path_factory.mktemp("data"), cache_dir=cache_dir,
                        n_threads=1, log_decisions=False, hot_reload=False)
    yield svc
    svc.close()


def reaching(d: RoutingDecision, offered: list[dict]) -> set[str]:
    """The tools narrow mode hands the reasoner for ``d``."""
    return {t.name for t in normalize_tools(offered)} if d.fallback else set(d.narrow_tools)


def routed(service: RouterService, message: str, tools: list[dict], **kw) -> RoutingDecision:
    d = service.route(message, tools, **kw)
    names = {t.name for t in normalize_tools(tools)}
    assert d.valid, d.error
    assert set(d.scores) == names and set(d.tool_names) <= names and set(d.extra_tools) <= names
    return d


def test_missing_descriptions_route_on_names(service):
    tools = [spec("get_weather", "", "city"), spec("send_email", ""), spec("search_docs", ""), spec("file_ticket", "")]
    assert "get_weather" in reaching(routed(service, RAIN, tools), tools)


def test_meaningless_names_route_on_descriptions(service):
    tools = [spec("f1", EMAIL, "to"), spec("tool_2", WEATHER, "city"), spec("f3", DOCS, "q"), spec("x", TICKET)]
    assert "tool_2" in reaching(routed(service, RAIN, tools), tools)


def test_duplicated_and_contradictory_descriptions_route(service):
    twins = [spec("lookup_a", "Looks things up."), spec("lookup_b", "Looks things up."), spec("get_weather", WEATHER)]
    assert "get_weather" in reaching(routed(service, RAIN, twins), twins)
    liar = [spec("get_weather", EMAIL, "to"), spec("send_email", WEATHER, "city")]  # name and description disagree
    routed(service, RAIN, liar)


@pytest.mark.parametrize("message", [RAIN, "the login page is broken, file a bug", "write me a haiku about autumn"])
def test_one_tool_routes_and_a_needed_one_is_never_cut(service, message):
    tools = [spec("get_weather", WEATHER, "city")]
    d = routed(service, message, tools)
    if message == RAIN:
        assert reaching(d, tools) == {"get_weather"}


def test_forty_tools_route_with_a_score_each(service):
    fields = ["invoice", "shipment", "payroll", "forecast", "inventory", "ticket", "lead", "contract"]
    verbs = ["create", "get", "update", "delete", "list"]
    tools = [spec(f"{v}_{f}", f"{v.capitalize()} a {f} record in the company system.", "id")
             for f in fields for v in verbs]
    assert len(tools) == 40
    d = routed(service, "delete the invoice record 4412", tools)
    assert "delete_invoice" in reaching(d, tools)


def test_a_tool_list_that_changes_between_turns_routes_on_the_new_list(service):
    first = [spec("get_weather", WEATHER, "city"), spec("send_email", EMAIL, "to")]
    d1 = routed(service, RAIN, first)
    earlier = PastTurn(user=RAIN, tools=[PastToolCall(name="get_weather", result="light rain, 12C")],
                       reply="Yes, light rain.")
    second = [spec("search_docs", DOCS, "q"), spec("file_ticket", TICKET)]  # get_weather is gone
    d2 = routed(service, "and what about Paris?", second, context=[earlier])
    assert d2.decision_id != d1.decision_id and not set(d2.narrow_tools) - {"search_docs", "file_ticket"}
