"""Default vs searched static INT8 (issue 13) on the bundled U-Net and three variants of it.

    .venv/bin/python scripts/int8_search_study.py [--out /tmp/int8-study]

Variants (every one computes the bundled model's masks; only the logit scale or the
internal ranges change):
  plain    the bundled U-Net as shipped (logits about ±22)
  scaled   its 1x1 head scaled by 45.2 (logits about ±1000)
  pushed   z -> 0.36·relu(z) - 66·relu(-z) after the head, as two 1x1 convs that INT8
           quantizes like the rest (logits [-1440, 8], the range of the issue's model)
  outlier  pushed, and in each decoder block channel 0 of the first conv scaled by 300 and
           the second conv's input channel 0 by 1/300 (function-preserving: the classic
           outlier-channel case that per-tensor activation ranges cannot hold)

For each: `build_engines(["ort-int8"])` with int8_search "off" and "auto", calibrated on
the bundled training tiles (which also score the recipes) and checked on the 4 test tiles;
then interleaved latency of FP32, default INT8 and searched INT8 (one ORT thread, min and
median). Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segshield.data import bundled_dataset
from segshield.engines.build import BuildOptions, build_engines
from segshield.models import bundled_model


class Push(nn.Module):
    """z -> pos·relu(z) - neg·relu(-z) after `model`, as two 1x1 convs (quantized by INT8)."""

    def __init__(self, model: nn.Module, pos: float = 0.36, neg: float = 66.0) -> None:
        super().__init__()
        self.model = model
        self.split, self.merge = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.split.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.split.bias.zero_()
            self.merge.weight.copy_(torch.tensor([pos, -neg]).view(1, 2, 1, 1))
            self.merge.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.relu(self.split(self.model(x))))


def variant(kind: str) -> nn.Module:
    model = bundled_model().module.eval()
    with torch.no_grad():
        if kind == "scaled":
            model.head.weight.mul_(45.2)
            model.head.bias.mul_(45.2)
        if kind == "outlier":
            for block in model.decoders:
                block[0].weight[0].mul_(300.0)
                block[0].bias[0].mul_(300.0)
                block[2].weight[:, 0].div_(300.0)
    return Push(model).eval() if kind in ("pushed", "outlier") else model


def latency(paths: dict[str, Path], images: np.ndarray, rounds: int) -> dict[str, list[float]]:
    import onnxruntime as ort

    def session(path: Path):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    sessions = {k: session(p) for k, p in paths.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        s.run(None, {"images": images})
    for _ in range(rounds):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {"images": images})
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: [round(min(v), 1), round(statistics.median(v), 1)] for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/int8-study")
    parser.add_argument("--variants", default="plain,scaled,pushed,outlier")
    args = parser.parse_args()
    train = bundled_dataset("nuclei", "train").images
    test = bundled_dataset("nuclei", "test").images
    for kind in args.variants.split(","):
        model = variant(kind)
        with torch.no_grad():
            logits = model(torch.from_numpy(train)).numpy()
        row: dict = {"variant": kind, "logits": [round(float(logits.min()), 1),
                                                 round(float(logits.max()), 1)]}  # fmt: skip
        paths = {}
        for mode in ("off", "auto"):
            out = Path(args.out) / f"{kind}-{mode}"
            [built] = build_engines(["ort-int8"], model, train, out, sample=test,
                                    options=BuildOptions(int8_search=mode))  # fmt: skip
            record = built.record
            search = record.details.get("int8_search") or {}
            row[mode] = {
                "int8_build_s": record.build_seconds,
                "test_mask_dice": round(record.parity["mask_dice"], 4),
                "calibration_mask_dice": search.get("chosen", {}).get("mask_dice"),
                "note": record.notes[0],
                "trials": [
                    [
                        t["recipe"]["label"],
                        t["mask_dice"] and round(t["mask_dice"], 4),
                        t["health"],
                        t["chosen"],
                    ]
                    for t in search.get("trials", [])
                ],
            }
            paths["fp32"] = out / "model.onnx"
            paths[f"int8 {mode}"] = Path(record.artifacts[0].path)
        row["latency_ms_min_median_b1"] = latency(paths, test[:1], 40)
        row["latency_ms_min_median_b8"] = latency(paths, np.concatenate([test, test]), 15)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
