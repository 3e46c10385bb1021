"""Closing the loop: decisions, the outcomes of the tools that ran, and explicit feedback.

An ``OutcomeCallbackHandler`` attached to the run writes what each tool did (ok / error)
to ``outcomes.jsonl`` under the decision's id; ``router.confirm`` / ``router.correct`` add
human feedback; ``read_joined`` puts decisions and outcomes back together for training.

    python examples/outcome_logging.py --stand-in --data-dir /tmp/openhoof-demo
"""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from _common import QUESTIONS, TOOLS, parser, reasoner
from openhoof_router import ToolRouter, decision_info, read_joined


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    # With the stand-in, the router picks one tool and the reasoner is made to call it, so the
    # whole loop (decision → tool call → outcome) shows; a real Qwen3 decides on its own.
    router = ToolRouter(TOOLS, mode="narrow", reasoner=reasoner(args), threshold=args.threshold,
                        data_dir=args.data_dir, max_tools=1 if args.stand_in else 3,
                        force_tool=args.stand_in)
    by_name = {t.name: t for t in TOOLS}

    def agent_turn(question: str, config: RunnableConfig) -> AIMessage:
        reply = router.invoke(question, config)
        for call in reply.tool_calls:  # run what the reasoner asked for, in the same traced run
            try:
                by_name[call["name"]].invoke(call, config)
            except Exception as exc:  # noqa: BLE001 - the outcome log records it
                print(f"  tool {call['name']} failed: {exc}")
        return reply

    handler = router.outcome_callback()
    chain = RunnableLambda(agent_turn, name="agent_turn")
    replies = [chain.invoke(q, config={"callbacks": [handler]}) for q in args.questions or QUESTIONS]
    ids = [decision_info(r)["decision_id"] for r in replies]
    router.confirm(ids[0], detail="operator: right tool")
    router.correct(ids[-1], [], detail="operator: no tool was needed")
    print(f"outcomes recorded by the callback: {handler.recorded} (unmatched tool runs: {handler.unmatched})")

    joined = read_joined(router.service.paths)
    for item in joined.items[-len(ids):]:
        print(json.dumps({"decision_id": item.decision_id, "message": item.decision.input.user_message,
                          "router": item.decision.tool_names, "status": item.status, "label": item.label,
                          "outcomes": [(o.kind, o.tool) for o in item.outcomes]}, ensure_ascii=False))
    print(f"logs: {router.service.decision_log.path} and {router.service.outcome_log.path}")


if __name__ == "__main__":
    main()
