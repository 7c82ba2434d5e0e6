"""Reproducible artifact bytes: ONNX Runtime's optimised graph rewritten with positional
names for the nodes it inserted, and the content digest of AOTInductor packages."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from segshield.exporters import onnx_from_torch
from segshield.exporters.reproducible import (
    ORT_INSERTED_PREFIX,
    pt2_content_sha256,
    stabilize_ort_optimized,
)


@pytest.fixture(scope="module")
def bundled_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled U-Net's ONNX export: wide enough for ORT's NCHWc layout nodes."""
    from segshield.models import bundled_model

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    sample = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    onnx_from_torch(bundled_model().module.eval(), sample, path)
    return path


def _optimise(source: Path, out: Path) -> Path:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(out)
    so.log_severity_level = 3
    ort.InferenceSession(str(source), so, providers=["CPUExecutionProvider"])
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ort_optimised_graph_is_written_reproducibly(bundled_onnx: Path, tmp_path: Path) -> None:
    raw, stable = set(), set()
    for k in range(4):
        path = _optimise(bundled_onnx, tmp_path / f"o{k}.onnx")
        raw.add(_sha(path))
        assert stabilize_ort_optimized(path, bundled_onnx) > 0
        stable.add(_sha(path))
    assert len(stable) == 1
    # what ORT writes on its own differs between sessions (the inserted nodes' names)
    assert len(raw) > 1, "ORT wrote identical files: the rewrite may no longer be needed"
    names = [n.name for n in onnx.load(str(tmp_path / "o0.onnx")).graph.node]
    assert len(set(names)) == len(names)
    assert any(n.startswith(ORT_INSERTED_PREFIX) for n in names)
    source_names = {n.name for n in onnx.load(str(bundled_onnx)).graph.node}
    assert any(n in source_names for n in names)  # exporter names are kept


def test_the_rewritten_graph_computes_the_same(bundled_onnx: Path, tmp_path: Path) -> None:
    path = _optimise(bundled_onnx, tmp_path / "o.onnx")
    stabilize_ort_optimized(path, bundled_onnx)
    x = np.random.default_rng(0).random((2, 1, 128, 128), dtype=np.float32)
    outs = []
    for model in (bundled_onnx, path):
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)


def _pt2(path: Path, serialization_id: str, cpp_tail: str, so: bytes, root: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/.data/serialization_id", serialization_id)
        z.writestr(f"{root}/archive_format", "pt2")
        z.writestr(f"{root}/data/aotinductor/model/abc.wrapper.cpp", "int main() {}\n" + cpp_tail)
        z.writestr(f"{root}/data/aotinductor/model/abc.wrapper.so", so)
    return path


def test_pt2_content_digest_ignores_what_varies_between_builds(tmp_path: Path) -> None:
    cmd = "\n// Compile cmd\n// g++ /tmp/torchinductor_x/abc.cpp -o abc.o\n// Link cmd\n// g++ x\n"
    a = _pt2(tmp_path / "a.pt2", "1111", "", b"ELF1", ".a.tmp")
    b = _pt2(tmp_path / "b.pt2", "2222", cmd, b"ELF1", ".b.tmp")
    assert _sha(a) != _sha(b)
    assert pt2_content_sha256(a) == pt2_content_sha256(b)
    c = _pt2(tmp_path / "c.pt2", "1111", "", b"ELF2", ".a.tmp")  # another compiled library
    assert pt2_content_sha256(c) != pt2_content_sha256(a)
    d = _pt2(tmp_path / "d.pt2", "1111", "// other code\n", b"ELF1", ".a.tmp")
    assert pt2_content_sha256(d) != pt2_content_sha256(a)
