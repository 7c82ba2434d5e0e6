"""Target-mask builders for targeted attacks."""

from __future__ import annotations

import pytest
import torch

from segshield.attacks import empty_target, other_image_target, scaled_target, shifted_target


def square(n: int = 2, size: int = 8, lo: int = 2, hi: int = 5) -> torch.Tensor:
    """``(n, 1, size, size)`` float masks with a square of ones at rows/cols lo..hi-1."""
    m = torch.zeros(n, 1, size, size)
    m[..., lo:hi, lo:hi] = 1.0
    return m


def test_empty_target() -> None:
    for masks in (square(), torch.randint(0, 3, (2, 8, 8)), square().bool()):
        out = empty_target(masks)
        assert out.shape == masks.shape and out.dtype == masks.dtype and not out.any()


def test_other_image_target_rolls_the_batch() -> None:
    masks = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = other_image_target(masks)
    assert torch.equal(out[1], masks[0]) and torch.equal(out[2], masks[1])
    assert torch.equal(out[0], masks[2])
    with pytest.raises(ValueError, match="at least 2"):
        other_image_target(masks[:1])


def test_shifted_target() -> None:
    masks = square()
    out = shifted_target(masks, 1, -2)  # one down, two left
    expected = torch.zeros_like(masks)
    expected[..., 3:6, 0:3] = 1.0
    assert torch.equal(out, expected)  # fully inside: nothing lost
    assert torch.equal(shifted_target(masks, 0, 0), masks)
    assert torch.equal(shifted_target(masks, 6, 0)[..., :6, :], torch.zeros(2, 1, 6, 8))
    assert not shifted_target(masks, 8, 0).any() and not shifted_target(masks, 0, -9).any()
    labels = torch.randint(0, 3, (2, 8, 8))
    moved = shifted_target(labels, -1, 3)
    assert torch.equal(moved[:, :7, 3:], labels[:, 1:, :5])
    assert not moved[:, 7, :].any() and not moved[:, :, :3].any()  # uncovered: background
    assert shifted_target(masks, 1, 1).data_ptr() != masks.data_ptr()


def _shift(masks: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: torch.roll, then blank what wrapped around."""
    out = torch.roll(masks, shifts=(dy, dx), dims=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


@pytest.mark.parametrize(("dy", "dx"), [(1, 2), (-3, 1), (0, -5), (7, 7), (-2, -2)])
def test_shifted_target_matches_roll_reference(dy: int, dx: int) -> None:
    masks = (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    assert torch.equal(shifted_target(masks, dy, dx), _shift(masks, dy, dx))


def test_scaled_target() -> None:
    masks = square(size=9, lo=3, hi=6)  # 3x3 square centred on pixel (4, 4)
    assert torch.equal(scaled_target(masks, 1.0), masks)
    grown = scaled_target(masks, 3.0)  # 3 -> 9 pixels wide: the whole image
    assert torch.equal(grown, torch.ones_like(masks))
    shrunk = scaled_target(masks, 1 / 3)
    assert shrunk[0, 0].sum().item() == 1.0 and shrunk[0, 0, 4, 4].item() == 1.0  # centre pixel
    labels = torch.zeros(1, 9, 9, dtype=torch.long)
    labels[0, 3:6, 3:6] = 2
    out = scaled_target(labels, 5 / 3)  # 3 -> 5 pixels wide
    assert out.dtype == torch.long and set(out.unique().tolist()) == {0, 2}
    assert torch.equal(out[0, 2:7, 2:7], torch.full((5, 5), 2))
    assert out.sum().item() == 2 * 25
    for bad in (0.0, -1.0, float("nan"), float("inf"), "big"):
        with pytest.raises(ValueError, match="factor"):
            scaled_target(masks, bad)  # type: ignore[arg-type]


def test_bad_masks() -> None:
    for fn in (empty_target, other_image_target):
        with pytest.raises(ValueError, match=r"\(8, 8\)"):
            fn(torch.zeros(8, 8))
    with pytest.raises(TypeError, match="tensor"):
        shifted_target([[0, 1]], 1, 1)  # type: ignore[arg-type]
