"""A LangChain 1.x agent whose tool selection runs on the local router (one-line swap).

    from langchain.agents.middleware import LLMToolSelectorMiddleware
    middleware=[LLMToolSelectorMiddleware(model="openai:gpt-4o-mini", max_tools=2, always_include=["list_tools"])]
becomes
    middleware=[ToolRouterMiddleware(max_tools=2, always_include=["list_tools"])]

    python examples/agent_middleware.py --stand-in
"""

from __future__ import annotations

import json

from langchain.agents import create_agent

from _common import QUESTIONS, TOOLS, parser, reasoner
from openhoof_router.langchain import ToolRouterMiddleware


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    middleware = ToolRouterMiddleware(max_tools=2, always_include=["list_tools"],
                                      threshold=args.threshold, data_dir=args.data_dir)
    agent = create_agent(model=reasoner(args), tools=TOOLS, middleware=[middleware],
                         system_prompt="You are OpenHoof, an operations agent.")
    for question in args.questions or QUESTIONS:
        state = agent.invoke({"messages": [("human", question)]}, config={"recursion_limit": 8})
        last = state["messages"][-1]
        print(json.dumps({"question": question, "steps": len(state["messages"]), "reply": last.text[:120]},
                         ensure_ascii=False))
    print(f"decisions logged to {middleware.router.service.decision_log.path}")


if __name__ == "__main__":
    main()
