"""The gate of ``wdsp edit --gate``: what a batch must reach before it is committed.

Public API:
    Gate(efficacy=80.0, perplexity_ratio=1.5, locality=None, retention=None, sample=200)
    Gate.failures(figures) -> [str]       empty when every threshold is met
    Gate.to_dict()

``figures`` is ``jobs.evaluate.measure``'s document for the model with the batch applied:
    efficacy           latest.efficacy >= efficacy               (% of the batch's rewrite prompts)
    perplexity_ratio   health.perplexity_ratio <= perplexity_ratio   (held-out text, against the base)
    locality           health.locality_prompts >= locality       (% of unrelated prompts still giving the
                                                                  base model's next token)
    retention          all.score >= retention                    (Score over a fixed random sample of
                                                                  ``sample`` of every request edited so far)
None switches a check off. The defaults (efficacy 80, perplexity 1.5x) refuse a batch that did not
take or that broke the model; locality and retention depend on the model and the facts, so they
are the user's to set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Gate:
    efficacy: float | None = 80.0
    perplexity_ratio: float | None = 1.5
    locality: float | None = None
    retention: float | None = None
    sample: int = 200

    def __post_init__(self) -> None:
        problems = [f"--gate-{name.replace('_', '-')} {value:g} must be within 0..100"
                    for name, value in (("efficacy", self.efficacy), ("locality", self.locality),
                                        ("retention", self.retention)) if value is not None and not 0 <= value <= 100]
        if self.perplexity_ratio is not None and not self.perplexity_ratio > 0:
            problems.append(f"--gate-perplexity {self.perplexity_ratio:g} must be > 0 (a ratio to the base model's)")
        if self.sample < 1:
            problems.append(f"--gate-sample {self.sample} must be at least 1")
        if problems:
            raise InputError("invalid gate: " + "; ".join(problems), hint="e.g. --gate-efficacy 80 --gate-perplexity 1.5")

    @property
    def needs_health(self) -> bool:
        return self.perplexity_ratio is not None or self.locality is not None

    def failures(self, figures: dict) -> list[str]:
        out = []
        health = figures.get("health", {})
        checks = [("efficacy", self.efficacy, figures["latest"]["efficacy"], ">=", "%"),
                  ("perplexity / base", self.perplexity_ratio, health.get("perplexity_ratio"), "<=", "x"),
                  ("unrelated prompts = base", self.locality, health.get("locality_prompts"), ">=", "%"),
                  ("retention Score", self.retention, figures.get("all", {}).get("score"), ">=", "")]
        for name, limit, value, sense, unit in checks:
            if limit is None:
                continue
            met = value is not None and value == value and (value >= limit if sense == ">=" else value <= limit)
            if not met:
                out.append(f"{name} {value:.3g}{unit} is not {sense} {limit:g}{unit}" if value is not None
                           else f"{name} was not measured")
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
