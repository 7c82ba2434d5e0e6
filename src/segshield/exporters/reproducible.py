"""Reproducible artifact bytes and content digests for engine files.

Measured on the CPU build matrix (the bundled U-Net, two builds of the same model):

* ``model.onnx`` (FP32 export), ``model.fp16.onnx`` and ``model.int8.qdq.onnx`` are
  byte-identical between builds: their SHA-256 is reproducible as is.
* ``model.ort-optimized.onnx`` (ONNX Runtime's optimised graph, written by a session with
  ``optimized_model_filepath``) differs between sessions: the names ONNX Runtime gives the
  nodes it inserts (the NCHWc layout transformer's ``ReorderOutput``,
  ``ReorderOutput_token_<n>``) are handed out in a different order each time. Graph, node
  order, tensors and edge names are the same. :func:`stabilize_ort_optimized` renames the
  inserted nodes by their position, so the file written is the same for the same model,
  CPU and onnxruntime version.
* ``model.pt2`` (AOTInductor package, a zip) differs between builds: its
  ``.data/serialization_id`` is random, and the generated C++ sources end with the
  compile/link command lines (temporary build paths) only when they were compiled rather
  than taken from the inductor cache. The compiled ``.so`` and the metadata were identical.
  The file's SHA-256 therefore says only "this file"; :func:`pt2_content_sha256` is a digest
  of what the package computes with: every entry but ``serialization_id``, C++ sources
  without those trailing command comments, names without the archive's root folder. The
  compiled library embeds the inductor cache directory's path (debug info, and kernel
  names hashed with it): builds with another ``TORCHINDUCTOR_CACHE_DIR`` give another
  library and digest (measured: two fresh processes with the same emptied cache path wrote
  byte-identical packages; a different path, a different ``.so``). That is not normalised.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ORT_INSERTED_PREFIX", "pt2_content_sha256", "stabilize_ort_optimized"]

ORT_INSERTED_PREFIX = "ort_inserted"
"""Name prefix of the nodes ONNX Runtime inserted, after :func:`stabilize_ort_optimized`."""

_CPP_COMMANDS = re.compile(rb"\n*// Compile cmd\n.*\Z", re.DOTALL)
_VOLATILE_ENTRIES = ("serialization_id",)


def stabilize_ort_optimized(
    optimized: str | os.PathLike[str], source: str | os.PathLike[str]
) -> int:
    """Rewrite ONNX Runtime's optimised model file so that its bytes are reproducible.

    Nodes whose names are not in ``source`` (the model the session was created from) were
    inserted by ONNX Runtime under names handed out in no fixed order; they are renamed
    ``ort_inserted_<op type>_<k>``, ``k`` counting them in graph order (subgraphs included).
    Nothing else changes: the graph computes the same. Returns how many nodes were renamed.
    External tensor data (models over 2 GB) is left where it is.
    """
    import onnx

    path = Path(optimized)
    kept = {n.name for n in _nodes(onnx.load(str(source), load_external_data=False).graph)}
    model = onnx.load(str(path), load_external_data=False)
    taken = {n.name for n in _nodes(model.graph)}
    renamed = 0
    for node in _nodes(model.graph):
        if node.name in kept and node.name:
            continue
        name = f"{ORT_INSERTED_PREFIX}_{node.op_type}_{renamed}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        renamed += 1
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(model.SerializeToString(deterministic=True))
    os.replace(tmp, path)
    return renamed


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies), in order."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for sub in attr.graphs:
                yield from _nodes(sub)


def pt2_content_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of an AOTInductor ``.pt2`` package's content, stable between builds.

    Over the sorted entries ``(name without the archive's root folder, SHA-256 of the
    entry)``, leaving out the random ``serialization_id`` and the compile/link command
    comments at the end of generated C++ sources. The compiled library, weights and
    metadata are all covered. Raises OSError or zipfile.BadZipFile for an unreadable file.
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(path) as archive:
        entries = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            if name.rsplit("/", 1)[-1] in _VOLATILE_ENTRIES:
                continue
            data = archive.read(info)
            if name.endswith(".cpp"):
                data = _CPP_COMMANDS.sub(b"\n", data.rstrip(b"\n") + b"\n")
            entries.append((name, hashlib.sha256(data).hexdigest()))
    for name, entry_digest in sorted(entries):
        digest.update(f"{name}\0{entry_digest}\n".encode())
    return digest.hexdigest()
