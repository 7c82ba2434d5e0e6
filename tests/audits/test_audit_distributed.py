"""Sharded audits: torchrun with 2 gloo processes gives exactly a one-process audit's
metrics (audits/distributed.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segshield.audits.distributed import Ranks, shard_bounds


@pytest.mark.parametrize(
    ("n", "batch", "world", "expected"),
    [
        (8, 2, 2, [(0, 4), (4, 8)]),
        (7, 2, 2, [(0, 4), (4, 7)]),  # 4 batches, the last one short
        (6, 2, 2, [(0, 2), (2, 6)]),  # 3 batches: whole batches only, never split
        (3, 8, 2, [(0, 0), (0, 3)]),  # one batch: rank 0 gets none
        (10, 3, 1, [(0, 10)]),
    ],
)
def test_shards_are_contiguous_whole_batches(
    n: int, batch: int, world: int, expected: list
) -> None:
    bounds = [shard_bounds(n, batch, r, world) for r in range(world)]
    assert bounds == expected
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # no gap, no overlap


def test_one_process_is_rank_0_of_1() -> None:
    ranks = Ranks()
    assert ranks.root and ranks.gather("x") == ["x"] and ranks.broadcast(3) == 3


AUDIT = [
    "--limit", "6", "--batch-size", "2", "--attacks", "fgsm,pgd",
    "--epsilons", "2/255,8/255", "--engines", "pytorch,ort-fp32,ort-int8", "--no-bench",
]  # fmt: skip


def _measured(path: Path) -> dict:
    report = json.loads((path / "report.json").read_text())
    cells = [{k: v for k, v in c.items() if k != "seconds"} for c in report["cells"]]
    return {"clean": report["clean"], "cells": cells, "ranks": report["provenance"]["ranks"]}


@pytest.mark.slow
def test_two_gloo_ranks_give_exactly_the_one_process_metrics(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun ships with torch"
    # torchrun gives each rank one thread; PyTorch's CPU kernels sum in an order that depends
    # on the thread count (the source's logits move in the 9th digit), so the one-process run
    # gets one thread too: then every number is identical.
    env = {**os.environ, "SEGSHIELD_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    single = [sys.executable, "-m", "segshield", "audit", "--out", str(one), *AUDIT]
    sharded = [
        torchrun, "--standalone", "--nproc_per_node", "2",
        "-m", "segshield", "audit", "--out", str(two), *AUDIT,
    ]  # fmt: skip
    for cmd in (single, sharded):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    a, b = _measured(one), _measured(two)
    assert (a["ranks"], b["ranks"]) == (1, 2)
    assert a["clean"] == b["clean"]
    assert len(a["cells"]) == 4 and all(c["status"] == "ok" for c in a["cells"])
    for x, y in zip(a["cells"], b["cells"], strict=True):
        assert x == y, x["id"]
    assert not list(two.glob("rank*"))  # the other rank wrote nothing into --out
