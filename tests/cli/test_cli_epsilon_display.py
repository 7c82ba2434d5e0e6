"""ε is shown one way in the terminal (k/255 when exact, else a decimal), as
`segshield.epsilon.format_epsilon` writes it: in progress lines and in the library's sentences
that name a cell id, whose ε keeps 6 digits (``pgd/bce/0.0313725``)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from segshield.cli.progress import cell_progress, readable_epsilons
from segshield.cli.render import print_problems
from segshield.results.types import AuditCell


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_every_8_bit_step_reads_as_k_over_255() -> None:
    for k in range(256):
        cell_id = AuditCell.make_id("pgd", "bce", k / 255)
        # k = 51, 102, ... are also 0.2, 0.4, ...: a short decimal, as in advunet's sweep
        short = round(k / 255, 2) == k / 255
        expected = f"{k / 255:g}" if short else f"{k}/255"
        assert readable_epsilons(cell_id) == f"pgd/bce/{expected}"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pgd/bce/0.0313725", "pgd/bce/8/255"),  # 8/255 = 0.03137254..., 6 digits
        ("fgsm/dice_focal/0.03", "fgsm/dice_focal/0.03"),  # 7.65/255: a decimal
        ("apgd/pkg.mod:fn/0.00392157 on ort-int8", "apgd/pkg.mod:fn/1/255 on ort-int8"),
        ("worst_case/*/0.0156863.", "worst_case/*/4/255."),
        ("fgsm/bce/0.1", "fgsm/bce/0.1"),
        ("fgsm/bce/1e-05", "fgsm/bce/1e-05"),
        ("out/pgd/bce/0.0313725", "out/pgd/bce/0.0313725"),  # a path, not a cell id
        ("see 3/255 and 0.0313725", "see 3/255 and 0.0313725"),
    ],
)
def test_cell_ids_in_sentences(text: str, shown: str) -> None:
    assert readable_epsilons(text) == shown


def test_progress_lines_show_k_over_255() -> None:
    console, out = _console()
    with cell_progress(console, "preparing") as on_cell:
        on_cell(AuditCell.make_id("pgd", "bce", 8 / 255), 1, 2)
        on_cell(AuditCell.make_id("fgsm", "bce", 0.03), 2, 2)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2] pgd/bce/8/255 done · ")
    assert lines[1].startswith("[2/2] fgsm/bce/0.03 done · ")


def test_strict_problems_show_k_over_255() -> None:
    console, out = _console()
    print_problems(console, ["cell pgd/bce/0.0156863 failed: out of [memory]"], strict=True)
    assert "strict: cell pgd/bce/4/255 failed: out of [memory]" in out.getvalue()
