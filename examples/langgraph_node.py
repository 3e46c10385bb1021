"""The router as a LangGraph node: it routes, calls the reasoner with the chosen tools, and
LangGraph's ToolNode runs the calls.

    python examples/langgraph_node.py --stand-in
"""

from __future__ import annotations

import json

from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from _common import QUESTIONS, TOOLS, parser, reasoner
from openhoof_router import OutcomeCallbackHandler, ToolRouter
from openhoof_router.langchain import router_node


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner(args), threshold=args.threshold,
                        data_dir=args.data_dir)
    graph = StateGraph(MessagesState)
    graph.add_node("agent", router_node(router))
    graph.add_node("tools", ToolNode(TOOLS))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    app = graph.compile()
    handler = OutcomeCallbackHandler(router.service.outcome_log)  # tool results land in outcomes.jsonl
    for question in args.questions or QUESTIONS:
        state = app.invoke({"messages": [("human", question)]},
                           config={"callbacks": [handler], "recursion_limit": 8})
        print(json.dumps({"question": question, "messages": len(state["messages"]),
                          "reply": state["messages"][-1].text[:120]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
