"""Regenerate the schema-2 report fixtures of tests/reports/data from real, small audits.

    .venv/bin/python scripts/make_report_fixtures.py [--out tests/reports/data]

Writes (a few minutes on a CPU, deterministic up to floating point and timestamps):

- report_pass.json: the bundled nuclei model on 4 test tiles, engines pytorch, ort-fp32,
  ort-int8 and tensorrt-fp16 (unavailable without a GPU: an unavailable engine record);
  fgsm and pgd at 2/255 and 8/255 with losses bce and dice, the targeted asma (2 panels per
  cell, 100 bootstrap resamples, latency of batch 1), gated by a lenient policy that passes.
- report_fail.json: the same audit, edited by this script (said here, not hidden) to carry
  what a real run rarely produces: the last PGD cell failed with a hostile error message, an
  engine evaluation error on ort-int8, a hostile image name in a panel; then gated by a
  strict policy (with markup in its names) that fails.
- report_classify.json: the shipped patch classifier (task "classification") on its seed
  ε sweep restricted to 0, 4/255 and 0.1, fgsm, pgd and the skipped asma, with a failed cell
  injected by this script, no verdict.

Each is written with its integrity entry (segshield.results.integrity.content_hash), as
segshield writes report.json. report_v1.json (a schema-1 report) is kept as written by an
older segshield, not made here, so it has none (the gate reads it as unverified).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

from segshield.api import classifier_config
from segshield.audits import AuditConfig, run_audit
from segshield.gate import evaluate, policy_from_dict
from segshield.results import AuditReport
from segshield.results.integrity import content_hash

HOSTILE = "<script>alert('pwned')</script>"
LENIENT = {
    "policy": {"name": "lenient"},
    "rules": [
        {"name": "clean Dice", "metric": "dice", "attack": "clean", "min": 0.5,
         "engine": ["pytorch", "ort-fp32", "ort-int8"]},
        {"name": "PGD Dice at 2/255", "metric": "dice", "attack": "pgd", "epsilon": "2/255",
         "engine": ["pytorch", "ort-fp32"], "min": 0.1},
        {"name": "fp32 disagreement", "metric": "disagreement", "engine": "ort-fp32", "max": 0.5},
        {"name": "SSIM", "metric": "ssim_min", "attack": ["fgsm", "pgd"], "min": 0.1},
    ],
}  # fmt: skip
STRICT = {
    "policy": {"name": "strict <release>"},
    "rules": [
        {"name": "clean Dice", "metric": "dice", "attack": "clean", "min": 0.5,
         "engine": ["pytorch", "ort-fp32"]},
        {"name": "FGSM Dice at 8/255 stays >= 0.95 <strict>", "metric": "dice",
         "attack": "fgsm", "epsilon": "8/255", "min": 0.95},
        {"name": "every engine at 2/255", "metric": "dice", "attack": "pgd",
         "epsilon": "2/255", "min": 0.0},
        {"name": "SSIM", "metric": "ssim_min", "attack": "fgsm", "min": 0.1},
    ],
}  # fmt: skip


def _dump(raw: dict, path: Path) -> None:
    """Write a fixture as segshield writes report.json: with its content hash (the edits of
    this script are made before it, so the fixture verifies like a written report)."""
    raw = {**raw, "integrity": content_hash(raw)}
    path.write_text(json.dumps(raw, indent=2, sort_keys=True, allow_nan=False) + "\n")
    print(f"wrote {path}")


def _segmentation(work: Path) -> AuditReport:
    config = AuditConfig(
        out_dir=work / "seg",
        limit=4,
        engines=("pytorch", "ort-fp32", "ort-int8", "tensorrt-fp16"),
        attacks=("fgsm", "pgd", "asma"),
        losses=("bce", "dice"),
        epsilons=(2 / 255, 8 / 255),
        steps=3,
        asma_steps=20,
        n_boot=100,
        panels=2,
        bench=True,
        bench_batch_sizes=(1,),
        batch_size=4,
    )
    return run_audit(config, command="scripts/make_report_fixtures.py")


def _break(raw: dict) -> dict:
    """The injected failures of report_fail.json (see the module docstring)."""
    raw = copy.deepcopy(raw)
    cells = raw["cells"]
    last_pgd = max(
        (i for i, c in enumerate(cells) if c["attack"] == "pgd" and c["loss"] == "bce"),
        key=lambda i: cells[i]["epsilon"],
    )
    cell = cells[last_pgd]
    cell.update(status="error", error=f'RuntimeError: "NaN" in {HOSTILE}', engines={},
                perturbation=None, panels=[])  # fmt: skip
    fgsm = max(
        (c for c in cells if c["attack"] == "fgsm" and c["loss"] == "bce"),
        key=lambda c: c["epsilon"],
    )
    fgsm["engines"]["ort-int8"] = {
        "engine": "ort-int8",
        "status": "error",
        "error": "bad input <b>here</b>",
    }
    for c in cells:
        for panel in c.get("panels") or []:
            panel["image"] = "<img src=x onerror=alert(1)>" + panel["image"]
            break
    return raw


def _classification(work: Path) -> dict:
    config = classifier_config(
        work / "cls",
        attacks=("fgsm", "pgd", "asma"),
        epsilons=(0.0, 4 / 255, 0.1),
        steps=2,
        n_boot=100,
        limit=None,
    )
    raw = run_audit(config, command="scripts/make_report_fixtures.py").to_dict()
    # An attack that fails at every ε is not producible from a valid config: injected.
    for eps in (0.0, 4 / 255, 0.1):
        cell_id = f"nope/{raw['cells'][0]['loss']}/{eps:.6g}"
        raw["cells"].append(
            {"id": cell_id, "attack": "nope", "loss": raw["cells"][0]["loss"], "epsilon": eps,
             "status": "error", "error": "ValueError: unknown attack 'nope'", "engines": {}}
        )  # fmt: skip
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/reports/data"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = _segmentation(work)
        report.verdict = evaluate(report, policy_from_dict(LENIENT)).to_dict()
        assert report.verdict["passed"], report.verdict
        raw = report.to_dict()
        _dump(raw, args.out / "report_pass.json")
        broken = AuditReport.from_dict(_break(raw))
        broken.verdict = evaluate(broken, policy_from_dict(STRICT)).to_dict()
        assert not broken.verdict["passed"]
        _dump(broken.to_dict(), args.out / "report_fail.json")
        _dump(_classification(work), args.out / "report_classify.json")


if __name__ == "__main__":
    main()
