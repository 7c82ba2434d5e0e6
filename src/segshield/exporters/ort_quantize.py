"""Running onnxruntime's quantizers quietly: on an optionally pre-processed copy of the model
in a temp folder, with their stdout and root-logger warnings moved to the debug log, and any
failure raised as an ExportError. onnxruntime is imported when a quantizer runs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from segshield.errors import ExportError

logger = logging.getLogger(__name__)


def quantize_quietly(
    quantize: Callable[[Path], None],
    src: Path,
    dst: Path,
    *,
    preprocess: bool,
    tmp_prefix: str,
    failure: str,
) -> str:
    """Run `quantize(model_input)` writing `dst`, on `src` pre-processed in a temp folder next
    to `dst` when `preprocess`; ORT's stdout is captured and returned, its root-logger warnings
    go to the debug log. Any failure raises ExportError("<failure>: <error>")."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=tmp_prefix, dir=dst.parent) as tmp:
        model_input = _preprocessed(src, Path(tmp)) if preprocess else src
        chatter = io.StringIO()
        try:
            with contextlib.redirect_stdout(chatter), quiet_ort_quantization():
                quantize(model_input)
        except Exception as exc:
            raise ExportError(f"{failure}: {type(exc).__name__}: {exc}") from exc
    return chatter.getvalue()


def preprocessed_copy(src: Path, tmp: Path) -> Path:
    """onnxruntime's quant_pre_process of `src` into the folder `tmp` (the model
    `quantize_quietly(preprocess=True)` quantizes, so its node names are the ones
    `nodes_to_exclude` must use); falls back to `src` with a warning."""
    return _preprocessed(src, tmp)


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """chdir into ``path`` for the block (contextlib.chdir is Python 3.11+)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _preprocessed(src: Path, tmp: Path) -> Path:
    """onnxruntime's quant_pre_process into `tmp`; falls back to `src` with a warning."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "preprocessed.onnx"
    try:
        # ORT's symbolic shape inference saves "sym_shape_infer_temp.onnx" and a <uuid>.data
        # into the working folder when it cannot infer every shape (dynamic H/W, 3-D graphs):
        # run it from the temp folder so nothing lands in the user's folder.
        with _working_dir(tmp):
            # auto_merge: with symbolic height/width, inference otherwise stops at a U-Net's
            # skip Concat (the two inputs' dims are different symbols of the same size)
            quant_pre_process(str(src.resolve()), str(out.resolve()), auto_merge=True)
    except Exception as exc:
        logger.warning("quant_pre_process failed on %s (%s); quantizing it as is", src.name, exc)
        return src
    return out


class _OrtQuantizationChatter(logging.Filter):
    """Moves onnxruntime.quantization's root-logger warnings (e.g. pre-processing hints) to
    this module's debug log; errors pass through."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        if "onnxruntime/quantization" in path and record.levelno < logging.ERROR:
            logger.debug("onnxruntime.quantization: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def quiet_ort_quantization() -> Iterator[None]:
    """onnxruntime.quantization's root-logger warnings go to this module's debug log."""
    root = logging.getLogger()
    chatter = _OrtQuantizationChatter()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)


__all__ = ["preprocessed_copy", "quantize_quietly", "quiet_ort_quantization"]
