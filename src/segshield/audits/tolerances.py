"""How far the gradient-masking checks (checks.py) let the numbers go before they warn."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TOLERANCES", "CheckTolerances"]


@dataclass(frozen=True)
class CheckTolerances:
    """How far each check lets the numbers go before it warns (scores in [0, 1], absolute).

    eps_rise: ``non_monotone_eps`` warns when, for one attack x loss on one engine, the
        score at a larger ε exceeds the lowest score at any smaller ε by more than this.
    steps_rise: ``more_steps_weaker`` warns when an iterative L∞ attack's source score
        exceeds the one-step attack's (same loss and ε) by more than this, or when the
        probe's run with 4x the steps scores more than this above the run with the audit's.
    unbounded_dice / unbounded_accuracy: ``unbounded_fails`` warns when PGD at ε = 1 leaves
        the source's pooled Dice (segmentation) / accuracy (classification) above this.
    noise_margin: ``noise_as_strong`` warns when random ±ε noise leaves a mean per-image score
        at most this above the gradient attack's on the same images, provided the noise
        lowers the clean score by at least ``noise_min_drop`` (a budget too small to move the
        model says nothing) and the attack has not already won (its score is above the
        unbounded limit: two attacks that both reach ~0 are not a weak evaluation).
    flat_norm / flat_share: ``flat_loss`` warns when more than ``flat_share`` of the probe
        images have an input-gradient L2 norm <= ``flat_norm`` at the clean image.
    """

    eps_rise: float = 0.01
    steps_rise: float = 0.01
    unbounded_dice: float = 0.10
    unbounded_accuracy: float = 0.05
    noise_margin: float = 0.01
    noise_min_drop: float = 0.05
    flat_norm: float = 1e-12
    flat_share: float = 0.25

    def unbounded_limit(self, metric: str) -> float:
        return self.unbounded_accuracy if metric == "accuracy" else self.unbounded_dice


DEFAULT_TOLERANCES = CheckTolerances()
