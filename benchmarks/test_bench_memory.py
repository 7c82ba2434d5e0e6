"""Peak memory of an audit as the dataset grows: 16 vs 256 images (the bundled nuclei
training tiles, repeated), each audit in its own process, peak RSS from getrusage.

Target: the 256-image audit's peak RSS at most 1.3x the 16-image one's (the engines replay
batch by batch; what grows with N is the images, one cell's adversarial images, per-image
counts and predictions).

Run: `.venv/bin/python -m pytest benchmarks/test_bench_memory.py --benchmark-only -s`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segshield.data.loaders import bundled_dataset_path

AUDIT = [
    "--attacks", "fgsm,pgd", "--steps", "2", "--epsilons", "2/255,8/255",
    "--engines", "pytorch,ort-fp32", "--no-bench", "--no-engine-cache",
]  # fmt: skip


def tiled(folder: Path, n: int) -> Path:
    """An images/ + masks/ folder of ``n`` images: the bundled training tiles, repeated."""
    src = bundled_dataset_path("nuclei", "train")
    names = sorted(p.name for p in (src / "images").glob("*.png"))
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = names[i % len(names)]
        for sub in ("images", "masks"):
            shutil.copyfile(src / sub / name, folder / sub / f"{i:04d}_{name}")
    return folder


def peak_rss_mib(data: Path, out: Path) -> float:
    """Peak RSS (MiB) of one `segshield audit` process on ``data``."""
    code = (
        "import resource, sys, runpy; sys.argv = ['segshield', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('segshield', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\n"
        "sys.exit(code)"
    )
    cmd = [sys.executable, "-c", code, "audit", "--data", str(data), "--out", str(out), *AUDIT]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    peak = [line for line in done.stdout.splitlines() if line.startswith("PEAK")]
    return int(peak[-1].split()[1]) / 1024  # ru_maxrss is KiB on Linux


@pytest.mark.slow
def test_peak_rss_16_vs_256_images(benchmark, tmp_path: Path) -> None:
    sizes = (16, 256)
    peaks: dict[int, float] = {}

    def both() -> None:
        for n in sizes:
            data = tiled(tmp_path / f"data{n}", n)
            peaks[n] = peak_rss_mib(data, tmp_path / f"out{n}")
            report = json.loads((tmp_path / f"out{n}" / "report.json").read_text())
            assert report["dataset"].get("n_images", n) == n

    benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = peaks[256] / peaks[16]
    benchmark.extra_info |= {"peak_rss_mib": peaks, "ratio_256_vs_16": round(ratio, 3)}
    print(f"peak RSS 16 images {peaks[16]:.0f} MiB, 256 images {peaks[256]:.0f} MiB, {ratio:.2f}x")
    assert ratio <= 1.3
