"""select_output / SelectOutput: attacking models that return tuples, lists or dicts."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

from segshield.attacks import PGD, SelectOutput, get_attack, select_output
from segshield.errors import ModelOutputError

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Case

A, B, C = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)


def test_select_output_kinds() -> None:
    assert select_output(A) is A
    assert select_output((A, B)) is A  # deep supervision: the first (final) output
    assert select_output([A, B], 1) is B
    assert select_output((A, B), -1) is B
    assert select_output({"out": A, "aux": B}) is A  # torchvision segmentation models
    assert select_output({"aux": B, "out": A}, "aux") is B
    assert select_output(OrderedDict(logits=C, hidden=A)) is C  # Hugging Face-style outputs
    assert select_output({"out": (A, B)}) is A  # nested: the default applies again
    assert select_output(((B, A), C)) is B


@pytest.mark.parametrize(
    ("output", "key", "match"),
    [
        ({"aux": A}, None, r"keys \['aux'\].*default keys"),
        ({"out": A}, "main", r"no key 'main'; keys: \['out'\]"),
        ((A, B), 2, "out of range"),
        ((), None, "0 element"),
        ((A, B), "out", "integer index"),
        (A, 0, "is a tensor"),
        ("text", None, "got str"),
        ((None,), None, "got NoneType"),
    ],
)
def test_select_output_errors(output: Any, key: Any, match: str) -> None:
    with pytest.raises(ModelOutputError, match=match):
        select_output(output, key)


class DeepSupervision(nn.Module):
    """Returns (final logits, auxiliary logits) - the final map first."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.inner(x)
        return out, out.detach() * 0.5


class DictModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.inner(x), "aux": self.inner(x) * 2.0}


@pytest.mark.parametrize("wrapper", [DeepSupervision, DictModel])
def test_attack_through_select_output(wrapper: type[nn.Module], case: Case) -> None:
    wrapped = SelectOutput(wrapper(case.model))
    expected = PGD(case.model, "bce", 4 / 255, steps=3, random_start=False)(
        case.images, case.targets
    )
    for name in ("pgd",):
        got = get_attack(name, wrapped, "bce", 4 / 255, steps=3, random_start=False)(
            case.images, case.targets
        )
        assert torch.equal(got, expected)


def test_select_output_module(binary_case: Case) -> None:
    model = DictModel(binary_case.model)
    aux = SelectOutput(model, "aux")
    x = binary_case.images
    with torch.no_grad():
        assert torch.equal(aux(x), binary_case.model(x) * 2.0)
    assert set(aux.state_dict()) == {f"model.{k}" for k in model.state_dict()}
    aux.train()
    assert model.training and binary_case.model.training
    aux.eval()
    assert not model.training
    assert "key='aux'" in repr(aux)
    with pytest.raises(TypeError, match="callable"):
        SelectOutput(3)  # type: ignore[arg-type]


def test_select_output_exports(binary_case: Case) -> None:
    """The selection is plain indexing: torch.export (the ONNX exporter's front end) keeps one
    tensor output."""
    wrapped = SelectOutput(DeepSupervision(binary_case.model)).eval()
    program = torch.export.export(wrapped, (binary_case.images,))
    with torch.no_grad():
        out = program.module()(binary_case.images)
        assert isinstance(out, Tensor)
        torch.testing.assert_close(out, binary_case.model(binary_case.images))
