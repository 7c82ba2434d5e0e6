"""Reproducibility: a cell's random start depends on the cell's definition, the seed and the
image only — not on the other attacks in the audit, the epsilon list or the batch size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from segshield.audits import AuditConfig, run_audit
from segshield.audits.plan import cell_seed, image_seed

FAST = {
    "limit": 2,
    "epsilons": (2 / 255, 8 / 255),
    "steps": 2,
    "engines": ("pytorch",),
    "bench": False,
    "n_boot": 0,
}


def _cells(report, attack: str) -> dict[str, dict]:
    out = {}
    for cell in report.cells:
        if cell.attack == attack:
            ev = cell.engines["pytorch"]
            out[cell.id] = {
                "metrics": ev.metrics,
                "per_image": ev.per_image,
                "l2": cell.perturbation.per_image["l2"],
                "linf": cell.perturbation.per_image["linf"],
            }
    return out


def alone_config(tmp_path: Path) -> AuditConfig:
    return AuditConfig(tmp_path / "a", attacks=("pgd",), **FAST)


def test_pgd_cells_do_not_depend_on_the_other_attacks(tmp_path: Path) -> None:
    alone = run_audit(alone_config(tmp_path))
    mixed = run_audit(AuditConfig(tmp_path / "b", attacks=("fgsm", "bim", "pgd"), **FAST))
    assert _cells(alone, "pgd") == _cells(mixed, "pgd")
    assert len(_cells(alone, "pgd")) == 2
    seeds = {c.id: c.params["random_start_seed"] for c in mixed.cells if c.attack == "pgd"}
    assert seeds == {c.id: c.params["random_start_seed"] for c in alone.cells}
    assert seeds[alone.cells[0].id] == cell_seed("pgd", "bce", 2 / 255, alone_config(tmp_path))
    assert all("random_start_seed" not in c.params for c in mixed.cells if c.attack != "pgd")


def test_a_cell_does_not_depend_on_the_other_epsilons(tmp_path: Path) -> None:
    both = run_audit(AuditConfig(tmp_path / "a", attacks=("pgd",), **FAST))
    one = run_audit(
        AuditConfig(tmp_path / "b", attacks=("pgd",), **{**FAST, "epsilons": (8 / 255,)})
    )
    assert _cells(one, "pgd") == {
        k: v for k, v in _cells(both, "pgd").items() if k in _cells(one, "pgd")
    }


def test_random_starts_do_not_depend_on_the_batch_size(tmp_path: Path) -> None:
    reports = [
        run_audit(
            AuditConfig(tmp_path / str(b), attacks=("pgd",), batch_size=b, **{**FAST, "limit": 4})
        )
        for b in (2, 8)
    ]
    small, large = (_cells(r, "pgd") for r in reports)
    assert small.keys() == large.keys()
    for key in small:
        assert small[key]["metrics"] == large[key]["metrics"], key
        assert small[key]["l2"] == pytest.approx(large[key]["l2"], rel=0, abs=1e-6), key


def test_the_seed_still_matters(tmp_path: Path) -> None:
    a = run_audit(AuditConfig(tmp_path / "a", attacks=("pgd",), seed=0, **FAST))
    b = run_audit(AuditConfig(tmp_path / "b", attacks=("pgd",), seed=1, **FAST))
    assert _cells(a, "pgd") != _cells(b, "pgd")


def test_cell_seed_is_a_function_of_the_cell(tmp_path: Path) -> None:
    base = AuditConfig(tmp_path, attacks=("pgd",), steps=10)
    other = AuditConfig(tmp_path, attacks=("fgsm", "bim", "pgd"), losses=("dice", "bce"), steps=10)
    assert cell_seed("pgd", "bce", 8 / 255, base) == cell_seed("pgd", "bce", 8 / 255, other)
    seeds = {
        cell_seed("pgd", "bce", 8 / 255, base),
        cell_seed("pgd", "dice", 8 / 255, base),
        cell_seed("pgd", "bce", 4 / 255, base),
        cell_seed("segpgd", "bce", 8 / 255, base),
        cell_seed("pgd", "bce", 8 / 255, AuditConfig(tmp_path, steps=5)),
        cell_seed("pgd", "bce", 8 / 255, AuditConfig(tmp_path, steps=10, alpha=0.01)),
        cell_seed("pgd", "bce", 8 / 255, AuditConfig(tmp_path, steps=10, seed=1)),
    }
    assert len(seeds) == 7
    one = next(iter(seeds))
    assert len({image_seed(one, i) for i in range(100)}) == 100


def test_cell_seed_is_the_same_in_another_process(tmp_path: Path) -> None:
    """hashlib, not hash(): string hashing is salted per process."""
    code = (
        "from pathlib import Path; from segshield.audits import AuditConfig;"
        "from segshield.audits.plan import cell_seed;"
        "print(cell_seed('pgd', 'bce', 8 / 255, AuditConfig(Path('x'))))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(s)},
        ).stdout.strip()
        for s in (1, 2)
    }
    assert runs == {str(cell_seed("pgd", "bce", 8 / 255, AuditConfig(Path("x"))))}
