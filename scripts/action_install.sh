#!/usr/bin/env bash
# The install step of the segshield GitHub Action (action.yml): torch first, pinned to the CPU
# wheel (an unpinned resolve pulls the CUDA build, GBs), then segshield with that torch held by a
# constraint so no dependency can replace it.
#   INPUT_TORCH_SPEC      pip arguments for torch ('' = skip, e.g. torch is already installed)
#   INPUT_SEGSHIELD_SPEC  what to pip install ('' = this action's own checkout, $GITHUB_ACTION_PATH)
#   INPUT_EXTRAS          segshield extras, comma list (e.g. medical,mlflow)
set -euo pipefail

python -m pip install --upgrade pip
if [[ -n "${INPUT_TORCH_SPEC:-}" ]]; then
  read -r -a torch_args <<<"$INPUT_TORCH_SPEC"  # plain words: a requirement and pip options
  python -m pip install "${torch_args[@]}"
fi

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# torch==X without the local label (+cpu) is satisfied by the installed CPU wheel and nothing else.
python -c 'import torch; print("torch==" + torch.__version__.split("+")[0])' >"$constraints"

spec="${INPUT_SEGSHIELD_SPEC:-${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}}"
extras="${INPUT_EXTRAS:-}"
extras="${extras// /}"
if [[ -n "$extras" ]]; then spec="${spec}[${extras}]"; fi
python -m pip install -c "$constraints" "$spec"
python -c 'import segshield, torch; print("segshield", segshield.__version__, "torch", torch.__version__)'
