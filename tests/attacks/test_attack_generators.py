"""Random starts drawn image by image: one generator per image makes a batch equal to its
images attacked one by one, and each image's start a function of its own generator only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch

from segshield.attacks import ATTACKS, get_attack

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case

RANDOM_START = [n for n in ATTACKS if "generator" in ATTACKS[n].param_names()]


def _gens(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _attack(name: str, case: Case, gens, eps: float = 4 / 255):
    return get_attack(name, case.model, "bce", eps, steps=3, generator=gens)


@pytest.mark.parametrize("name", RANDOM_START)
def test_per_image_generators_make_batches_independent(name: str, binary_case: Case) -> None:
    case = binary_case
    seeds = [11, 22, 33, 44]
    batch = _attack(name, case, _gens(seeds))(case.images, case.targets)
    for i, seed in enumerate(seeds):
        single = _attack(name, case, _gens([seed]))(case.images[i : i + 1], case.targets[i : i + 1])
        torch.testing.assert_close(batch[i : i + 1], single, rtol=0, atol=1e-6)
    # reordering the batch reorders the result: each image keeps its own start
    order = [2, 0, 3, 1]
    shuffled = _attack(name, case, _gens([seeds[j] for j in order]))(
        case.images[order], case.targets[order]
    )
    torch.testing.assert_close(shuffled, batch[order], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", RANDOM_START)
def test_per_image_start_differs_by_seed(name: str, binary_case: Case) -> None:
    case = binary_case
    a = _attack(name, case, _gens([1, 2, 3, 4]))(case.images, case.targets)
    b = _attack(name, case, _gens([1, 2, 3, 5]))(case.images, case.targets)
    assert torch.equal(a[:3], b[:3]) and not torch.equal(a[3], b[3])


def test_generator_count_must_match_the_batch(binary_case: Case) -> None:
    with pytest.raises(ValueError, match="3 generators for a batch of 4"):
        _attack("pgd", binary_case, _gens([1, 2, 3]))(binary_case.images, binary_case.targets)


def test_generator_sequence_must_hold_generators(binary_case: Case) -> None:
    with pytest.raises(TypeError, match="sequence"):
        _attack("pgd", binary_case, [torch.Generator(), 3])
