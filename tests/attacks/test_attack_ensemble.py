"""SEA, the ensemble: per image the worst of its members by construction, ``last_winners``,
per-sample budgets, generators, pass counts and early validation of the members."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import APGD, SEA, SegPGD, get_attack, iou_to_target
from segshield.attacks.ensemble import DEFAULT_MEMBERS, parse_members
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case, CaseFactory

EPS = 8 / 255


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


class Counting(nn.Module):
    """Counts forward passes and backward passes through the output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.forwards, self.backwards = inner, 0, 0

    def forward(self, x: Tensor) -> Tensor:
        self.forwards += 1
        out = self.inner(x)
        if out.requires_grad:
            out.register_hook(self._backward)
        return out

    def _backward(self, grad: Tensor) -> None:
        self.backwards += 1


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_each_image_keeps_its_worst_member(kind: str, case_factory: CaseFactory) -> None:
    """Each member run alone with the same generators gives exactly the example SEA took from
    it; per image SEA keeps the first member of lowest score, so its score is <= every one."""
    case = case_factory(kind)
    seeds = [7, 8, 9, 10]
    sea = SEA(case.model, "bce", EPS, steps=3, generator=_gens(seeds))
    adv = sea(case.images, case.targets)
    alone, scores = [], []
    for k in range(len(DEFAULT_MEMBERS)):
        member_adv = sea.member(k, EPS, tuple(_gens(seeds)))(case.images, case.targets)
        alone.append(member_adv)
        with torch.no_grad():
            scores.append(iou_to_target(case.model(member_adv), case.targets))
    table = torch.stack(scores, dim=1)  # (N, members)
    with torch.no_grad():
        final = iou_to_target(case.model(adv), case.targets)
    assert bool((final[:, None] <= table).all())
    winners = sea.last_winners
    assert winners is not None and winners.shape == (4,) and winners.dtype == torch.long
    first_min = (table == table.min(dim=1, keepdim=True).values).int().argmax(dim=1)
    assert torch.equal(winners, first_min)
    for i, w in enumerate(winners.tolist()):
        assert torch.equal(adv[i], alone[w][i])


def test_members_are_apgd_with_the_sea_schedule_and_segpgd(binary_case: Case) -> None:
    sea = SEA(binary_case.model, "dice", EPS, steps=4, random_start=False)
    built = [sea.member(k, EPS) for k in range(4)]
    assert [type(m) for m in built] == [APGD, APGD, APGD, SegPGD]
    assert [m.loss.__name__ for m in built] == [
        "masked_ce_loss",
        "balanced_masked_ce_loss",
        "js_loss",
        "dice_loss",  # "*": the ensemble's own loss
    ]
    assert all(m.steps == 4 and m.random_start is False for m in built)
    assert all(m.schedule == "sea" for m in built[:3])
    params = sea.attack_params()
    assert params == {
        "eps": EPS,
        "steps": 4,
        "members": list(DEFAULT_MEMBERS),
        "random_start": False,
        "selection": "iou_to_target",
    }
    assert json.loads(json.dumps(params)) == params


def test_per_sample_budgets_and_zero_budgets(binary_case: Case) -> None:
    n = binary_case.images.shape[0]
    budgets = [2 / 255, 8 / 255]
    x = binary_case.images.repeat(2, 1, 1, 1)
    y = binary_case.targets.repeat(2, 1, 1, 1)
    seeds = [[10 * k + i for i in range(n)] for k in range(2)]
    sea = SEA(binary_case.model, "bce", 1.0, steps=3, generator=_gens(seeds[0] + seeds[1]))
    stacked = sea(x, y, eps=[b for b in budgets for _ in range(n)])
    stacked_winners = sea.last_winners
    assert stacked_winners is not None
    for k, eps in enumerate(budgets):
        alone = SEA(binary_case.model, "bce", eps, steps=3, generator=_gens(seeds[k]))
        expected = alone(binary_case.images, binary_case.targets)
        torch.testing.assert_close(stacked[k * n : (k + 1) * n], expected, rtol=0, atol=1e-6)
        assert torch.equal(stacked_winners[k * n : (k + 1) * n], alone.last_winners)
        delta = (stacked[k * n : (k + 1) * n] - binary_case.images).abs().amax()
        assert delta.item() <= eps + 1e-6
    # a zero budget: the image comes back as is, and no member is credited with it
    sea = SEA(binary_case.model, "bce", 1.0, steps=3, generator=_gens(seeds[0]))
    adv = sea(binary_case.images, binary_case.targets, eps=[0.0, EPS, 0.0, EPS])
    assert torch.equal(adv[0], binary_case.images[0]) and torch.equal(adv[2], binary_case.images[2])
    assert sea.last_winners is not None
    assert sea.last_winners[[0, 2]].tolist() == [-1, -1]
    assert all(0 <= w < 4 for w in sea.last_winners[[1, 3]].tolist())
    counting = Counting(binary_case.model)
    empty = SEA(counting, "bce", 0.0, steps=3)
    assert torch.equal(empty(binary_case.images, binary_case.targets), binary_case.images)
    assert empty.last_winners is not None and empty.last_winners.tolist() == [-1] * n
    assert counting.forwards == 0


def test_pass_counts(binary_case: Case) -> None:
    """Every member's passes, plus one scoring forward pass per member. SegPGD and PGD: one
    pass per step. APGD under SEA's schedule: 1, 1 and 3 updates at 2ε, 1.5ε, ε, each stage
    evaluating its start too: 2 + 2 + 4 passes."""
    counting = Counting(binary_case.model)
    members = ("apgd:js", "segpgd:*", "pgd:masked_ce")
    SEA(counting, "bce", EPS, steps=5, members=members)(binary_case.images, binary_case.targets)
    gradient_passes = 8 + 5 + 5
    assert (counting.forwards, counting.backwards) == (gradient_passes + 3, gradient_passes)


def test_generators_end_where_one_members_draw_leaves_them(binary_case: Case) -> None:
    gen, twin = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sea = SEA(binary_case.model, "bce", EPS, steps=2, generator=gen)
    first = sea(binary_case.images, binary_case.targets)
    APGD(binary_case.model, "bce", EPS, steps=2, generator=twin)(
        binary_case.images, binary_case.targets
    )
    assert torch.equal(gen.get_state(), twin.get_state())
    again = sea(binary_case.images, binary_case.targets)  # new starts, as a second PGD call
    assert not torch.equal(first, again)
    same = SEA(binary_case.model, "bce", EPS, steps=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(same(binary_case.images, binary_case.targets), first)


def test_non_finite_outputs_raise_once_all_members_ran(binary_case: Case) -> None:
    class NaNModel(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x[:, :1] * float("nan")

    counting = Counting(NaNModel())
    sea = SEA(counting, "bce", EPS, steps=2, members=("apgd:*", "segpgd:*"))
    with pytest.raises(ModelOutputError, match=r"^sea: model output contains NaN or Inf"):
        sea(binary_case.images, binary_case.targets)
    assert counting.forwards == (3 + 1) + (2 + 1)  # APGD: stages of 0, 0, 2 updates; scoring


def test_members_validated_early(binary_case: Case) -> None:
    m = binary_case.model
    with pytest.raises(ValueError, match=r"unknown member attack 'cw'.*'apgd'.*'segpgd'"):
        SEA(m, "bce", EPS, members=["apgd:js", "cw"])
    with pytest.raises(ValueError, match=r"unknown member attack 'sea'"):
        SEA(m, "bce", EPS, members=["sea"])
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'.*masked_ce"):
        SEA(m, "bce", EPS, members=["apgd:hinge"])
    with pytest.raises(ValueError, match=r"'asma' must be an untargeted Linf attack.*targeted"):
        SEA(m, "bce", EPS, members=["asma"])
    with pytest.raises(ValueError, match=r"'apgdl2' must be an untargeted Linf attack.*L2"):
        SEA(m, "bce", EPS, members=["apgdl2"])
    with pytest.raises(ValueError, match="at least one member"):
        SEA(m, "bce", EPS, members=[])
    with pytest.raises(ValueError, match="ATTACK or ATTACK:LOSS"):
        SEA(m, "bce", EPS, members=[":js"])

    def plain(logits: Tensor, target: Tensor) -> Tensor:  # SegPGD needs weight=
        return logits.flatten(1).mean(dim=1)

    with pytest.raises(ValueError, match="weight="):
        SEA(m, plain, EPS)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alpha'\]"):
        get_attack("sea", m, "bce", EPS, alpha=0.1)
    with pytest.raises(TypeError, match="generator"):
        SEA(m, "bce", EPS, generator=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^sea: 3 generators for a batch of 4"):
        SEA(m, "bce", EPS, generator=_gens([1, 2, 3]))(binary_case.images, binary_case.targets)
    assert parse_members(["APGD:JS", "segpgd", ("pgd:*")]) == (
        ("apgd", "js"),
        ("segpgd", "*"),
        ("pgd", "*"),
    )
    pairs = SEA(m, "bce", EPS, members=[("apgd", "js"), ("fgsm", "*")])
    assert pairs.members == (("apgd", "js"), ("fgsm", "*"))
    assert SEA(m, "bce", EPS, members="apgd:js").members == (("apgd", "js"),)


def test_custom_score_picks_the_member(binary_case: Case) -> None:
    """With a score that prefers the second member for even images, it wins exactly there."""
    calls = []

    def score(logits: Tensor, targets: Tensor) -> Tensor:
        calls.append(1)
        member = len(calls) - 1  # called once per member, in order
        even = torch.arange(logits.shape[0]) % 2 == 0
        return torch.where(even, torch.tensor(1.0 - member), torch.tensor(0.5))

    sea = SEA(binary_case.model, "bce", EPS, steps=2, members=("pgd:*", "apgd:*"), score=score)
    sea(binary_case.images, binary_case.targets)
    assert sea.last_winners is not None and sea.last_winners.tolist() == [1, 0, 1, 0]
    assert sea.attack_params()["selection"] == "score"
