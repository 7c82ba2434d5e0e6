"""How strong each attack is on a model, and what the SEA ensemble and the worst case add
(issue 11): one audit with every untargeted L∞ attack at the same step count, printed as
a Dice table per ε with the worst case, the per-cell crafting time and the masking warnings.

    .venv/bin/python scripts/evaluation_study.py [--steps 100] [--out /tmp/strength-study]

Defaults: the bundled U-Net on the bundled nuclei test tiles, ε = 2, 4, 8/255, BCE as the
cell loss, the PyTorch source only. Pass --model/--data as for `segshield audit` (a factory
and an images/+masks/ folder) to run it on your own model. Prints Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from segshield.api import audit
from segshield.audits import AuditConfig
from segshield.epsilon import format_epsilon, parse_epsilons
from segshield.models import ModelSpec

ATTACKS = ("fgsm", "bim", "pgd", "segpgd", "cospgd", "apgd", "sea")


def _row(name: str, values: list[float | None], seconds: float | None) -> str:
    cells = " | ".join("—" if v is None else f"{100 * v:.2f}" for v in values)
    return f"| {name} | {cells} | {'' if seconds is None else f'{seconds:.1f}'} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--epsilons", default="2/255,4/255,8/255")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--losses", default="bce")
    parser.add_argument("--model", default=None)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("strength-study"))
    args = parser.parse_args()
    model = ModelSpec() if args.model is None else ModelSpec(args.model, weights=args.weights)
    config = AuditConfig(
        out_dir=args.out,
        model=model,
        data=args.data,
        attacks=tuple(args.attacks.split(",")),
        losses=tuple(args.losses.split(",")),
        epsilons=parse_epsilons(args.epsilons),
        steps=args.steps,
        engines=("pytorch",),
        bench=False,
        panels=0,
    )
    report = audit(config).report
    epsilons = sorted({c.epsilon for c in report.cells})
    head = " | ".join(format_epsilon(e) for e in epsilons)
    print(f"Dice (%) on the source, {args.steps} steps, loss {args.losses}\n")
    print(f"| attack | {head} | crafting s (all ε) |")
    print("|---" * (len(epsilons) + 2) + "|")
    for attack in config.attacks:
        for loss in config.losses:
            cells = [c for c in report.cells if c.attack == attack and c.loss == loss]
            by_eps = {c.epsilon: c.engines["pytorch"].value("dice") for c in cells if c.engines}
            seconds = sum(c.seconds for c in cells)
            print(_row(f"{attack} ({loss})", [by_eps.get(e) for e in epsilons], seconds))
    evaluation = report.evaluation
    if evaluation is not None:
        worst = {w.epsilon: w.engines["pytorch"].value("dice") for w in evaluation.worst_case}
        print(_row("worst case (per image)", [worst.get(e) for e in epsilons], None))
        print(f"\nwarnings: {len(evaluation.warnings)}")
        for warning in evaluation.warnings:
            print(f"- {warning['check']}: {warning['message']}")
    for cell in report.cells:
        if cell.ensemble:
            wins = ", ".join(
                f"{m} {w}" for m, w in zip(cell.ensemble["members"], cell.ensemble["wins"],
                                           strict=True)
            )  # fmt: skip
            print(f"- {cell.id}: images kept per member: {wins}")
    print(f"\naudit {report.provenance['seconds']:.0f} s")


if __name__ == "__main__":
    main()
