"""Drop-in agent chain: ``prompt | ToolRouter(mode="narrow")`` in front of the reasoner.

The 270M router picks the tools for the turn; only those are bound to the reasoner, which
answers or calls them. Unsure decisions fall back to all tools (to the best-scored half of
5 or more); every decision is logged.

    python examples/drop_in_chain.py                       # Qwen3-8B at OPENHOOF_REASONER_URL (Ollama default)
    python examples/drop_in_chain.py --stand-in            # no reasoner server needed
    python examples/drop_in_chain.py --mode hint "notify ops that the backup failed"
"""

from __future__ import annotations

import json

from langchain_core.prompts import ChatPromptTemplate

from _common import QUESTIONS, TOOLS, parser, reasoner
from openhoof_router import ToolRouter, decision_info


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["narrow", "hint", "route"], default="narrow")
    args = p.parse_args()
    router = ToolRouter(TOOLS, mode=args.mode, reasoner=reasoner(args), threshold=args.threshold,
                        data_dir=args.data_dir)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are OpenHoof, an operations agent. Use a tool when the request needs one."),
        ("human", "{question}"),
    ])
    chain = prompt | router
    for question in args.questions or QUESTIONS:
        out = chain.invoke({"question": question})
        if args.mode == "route":
            print(json.dumps({"question": question, "tools": out.tool_names, "confidence": out.confidence,
                              "fallback": out.fallback}))
            continue
        info = decision_info(out)
        print(json.dumps({"question": question, "router_selected": info["selected"],
                          "sent_to_reasoner": info["sent_tools"], "fallback": info["fallback"],
                          "tool_calls": [c["name"] for c in out.tool_calls],
                          "reply": out.text[:120]}, ensure_ascii=False))
    print(f"decisions logged to {router.service.decision_log.path}")


if __name__ == "__main__":
    main()
