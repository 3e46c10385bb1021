"""The promotion gate: promote a run only on differences the held-out data can resolve.

Two models are compared on the *same* messages, message by message. Only the messages
where they disagree (one right, the other wrong) carry information; McNemar's exact test
asks whether the candidate's wins and losses among those could be a coin toss.

A candidate is promoted unless
  - it is *significantly worse* than the model in place on the user's held-out data
    (one-sided exact McNemar test, ``alpha``), or
  - it loses more than ``margin`` points of accuracy on the fixed general sample
    (general skill forgotten while learning the user's tools).
A tie (no difference the data can resolve) promotes the candidate: it was trained on
more data, and a bare ``>=`` on a few hundred messages would decide on noise either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

from pydantic import BaseModel

ALPHA = 0.05
GENERAL_MARGIN = 0.03


def mcnemar_worse_p(candidate: Sequence[int], incumbent: Sequence[int]) -> tuple[float, int, int]:
    """(one-sided exact p-value that the candidate is worse, candidate wins, candidate losses)."""
    if len(candidate) != len(incumbent):
        raise ValueError("paired results must cover the same messages")
    wins = sum(1 for c, i in zip(candidate, incumbent, strict=True) if c and not i)
    losses = sum(1 for c, i in zip(candidate, incumbent, strict=True) if i and not c)
    n = wins + losses
    if n == 0:
        return 1.0, 0, 0
    # P(X <= wins) for X ~ Binomial(n, 1/2): few wins among the disagreements means "worse"
    p = sum(comb(n, k) for k in range(wins + 1)) / 2 ** n
    return min(1.0, p), wins, losses


class Comparison(BaseModel):
    name: str
    n: int
    candidate_accuracy: float
    incumbent_accuracy: float
    wins: int
    losses: int
    p_worse: float
    p_better: float
    verdict: str
    """``better`` / ``worse`` (significant), or ``tie``."""


def compare(name: str, candidate: Sequence[int], incumbent: Sequence[int], alpha: float = ALPHA) -> Comparison:
    p_worse, wins, losses = mcnemar_worse_p(candidate, incumbent)
    p_better, _, _ = mcnemar_worse_p(incumbent, candidate)
    verdict = "worse" if p_worse < alpha else "better" if p_better < alpha else "tie"
    n = len(candidate)
    return Comparison(name=name, n=n, candidate_accuracy=sum(candidate) / max(1, n),
                      incumbent_accuracy=sum(incumbent) / max(1, n), wins=wins, losses=losses,
                      p_worse=p_worse, p_better=p_better, verdict=verdict)


class GateDecision(BaseModel):
    promote: bool
    reason: str
    user: Comparison
    general: Comparison | None = None
    margin: float = GENERAL_MARGIN
    alpha: float = ALPHA


def decide(user: Comparison, general: Comparison | None, *, margin: float = GENERAL_MARGIN,
           alpha: float = ALPHA) -> GateDecision:
    if user.verdict == "worse":
        reason = (f"worse on the held-out data: {user.candidate_accuracy:.1%} vs {user.incumbent_accuracy:.1%}, "
                  f"{user.wins} wins / {user.losses} losses, p = {user.p_worse:.3f} < {alpha}")
        return GateDecision(promote=False, reason=reason, user=user, general=general, margin=margin, alpha=alpha)
    if general is not None:
        drop = general.incumbent_accuracy - general.candidate_accuracy
        if drop > margin:
            reason = (f"forgets general skill: {general.candidate_accuracy:.1%} vs {general.incumbent_accuracy:.1%} "
                      f"on the general sample, a loss of {drop:.1%} > the {margin:.0%} margin")
            return GateDecision(promote=False, reason=reason, user=user, general=general, margin=margin, alpha=alpha)
    reason = (f"{user.verdict} on the held-out data ({user.candidate_accuracy:.1%} vs {user.incumbent_accuracy:.1%}, "
              f"{user.wins} wins / {user.losses} losses)")
    if general is not None:
        reason += f"; general sample {general.candidate_accuracy:.1%} vs {general.incumbent_accuracy:.1%}"
    return GateDecision(promote=True, reason=reason, user=user, general=general, margin=margin, alpha=alpha)
