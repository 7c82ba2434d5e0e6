#!/usr/bin/env bash
# The run step of the segshield GitHub Action (action.yml): audit, gate, compare, then write the
# step outputs and the job summary. The action passes its inputs as INPUT_* variables; a test
# (tests/cli/test_cli_action.py) runs this file with the environment GitHub gives a step.
#
# Exit code: the audit's (0 pass, 1 a gate rule crossed or --strict problems, 2 bad input or an
# error), written to the outputs first so later steps (upload, junit) can use them. With
# INPUT_FAIL_ON_GATE=false a crossed gate (1) exits 0; an error (2) always fails the step, so a
# crash never passes as green.
set -uo pipefail  # no -e: the audit's exit code is captured, not fatal

out="${INPUT_OUT:-segshield-out}"
outputs_file="${GITHUB_OUTPUT:-/dev/null}"
summary_file="${GITHUB_STEP_SUMMARY:-/dev/null}"

set_output() {  # name value: one key=value line (values here are paths and words, no newlines)
  printf '%s=%s\n' "$1" "$2" >>"$outputs_file"
}

# Files older than this stamp are a previous run's (the same --out reused): never reported as ours.
stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT

existing() {  # path: the path when this run wrote the file, else empty
  if [[ -f "$1" && "$1" -nt "$stamp" ]]; then printf '%s' "$1"; fi
}

finish() {  # exit_code: outputs, job summary, then the step's exit code
  local rc="$1" verdict
  case "$rc" in
    0) verdict=pass ;;
    1) verdict=fail ;;
    *) verdict=error ;;
  esac
  set_output verdict "$verdict"
  set_output exit-code "$rc"
  set_output report-json "$(existing "$out/report.json")"
  set_output report-html "$(existing "$out/report.html")"
  set_output report-md "$(existing "$out/report.md")"
  set_output junit "$(existing "$out/junit.xml")"
  set_output summary "$(existing "$out/summary.md")"
  set_output comparison-md "$(existing "$out/compare/comparison.md")"
  if [[ -n "$(existing "$out/summary.md")" ]]; then
    cat "$out/summary.md" >>"$summary_file"
  else
    printf '### segshield audit: %s (exit %s)\n\nNo report was written; the step log says why.\n' \
      "$verdict" "$rc" >>"$summary_file"
  fi
  if [[ -n "$(existing "$out/compare/comparison.md")" ]]; then
    printf '\n' >>"$summary_file"
    cat "$out/compare/comparison.md" >>"$summary_file"
  fi
  echo "segshield: verdict $verdict (exit $rc)"
  if [[ "$rc" == 1 && "${INPUT_FAIL_ON_GATE:-true}" == false ]]; then
    exit 0
  fi
  exit "$rc"
}

bad_input() {  # message: an input the action cannot use is bad input, like the CLI's exit 2
  echo "::error::segshield action: $1"
  finish 2
}

for flag in INPUT_STRICT INPUT_FAIL_ON_GATE; do
  value="${!flag:-true}"
  if [[ "$value" != true && "$value" != false ]]; then
    name="${flag#INPUT_}"
    name="${name,,}"
    bad_input "input ${name//_/-} must be 'true' or 'false', got '$value'"
  fi
done

args=(audit --out "$out")
model="${INPUT_MODEL:-}"
weights="${INPUT_WEIGHTS:-}"
if [[ -n "$model" && -f "$model" ]]; then
  # A file is a whole model (TorchScript, model card, checkpoint): segshield reads it as --weights.
  if [[ -n "$weights" ]]; then
    bad_input "model '$model' is a file (a whole model) and weights '$weights' is set too; set only one, or give model a factory pkg.module:function"
  fi
  args+=(--weights "$model")
elif [[ -n "$model" ]]; then
  args+=(--model "$model")
fi
if [[ -n "$weights" ]]; then args+=(--weights "$weights"); fi
if [[ -n "${INPUT_DATA:-}" ]]; then args+=(--data "$INPUT_DATA"); fi
if [[ -n "${INPUT_ENGINES:-}" ]]; then args+=(--engines "${INPUT_ENGINES// /}"); fi

policy="${INPUT_POLICY:-}"
if [[ "$policy" == example ]]; then
  # The example policy shipped with segshield, tuned for the bundled model.
  if ! policy="$(python -c 'from segshield.gate import example_policy_path as p; print(p())')"; then
    bad_input "policy 'example': cannot import segshield with '$(command -v python)'"
  fi
fi
if [[ -n "$policy" ]]; then args+=(--policy "$policy"); fi
if [[ "${INPUT_STRICT:-true}" == true ]]; then args+=(--strict); fi

if [[ -n "${INPUT_EXTRA_ARGS:-}" ]]; then
  # Shell-style quoting without eval: Python's shlex splits, NUL-separated for mapfile.
  split_py='import shlex, sys; sys.stdout.write("".join(a + "\0" for a in shlex.split(sys.argv[1])))'
  if ! python -c "$split_py" "$INPUT_EXTRA_ARGS" >/dev/null 2>&1; then
    bad_input "extra-args cannot be split like a shell command line: '$INPUT_EXTRA_ARGS'"
  fi
  mapfile -d '' -t extra < <(python -c "$split_py" "$INPUT_EXTRA_ARGS")
  args+=("${extra[@]}")
fi

echo "+ segshield ${args[*]}"
segshield "${args[@]}"
rc=$?

baseline="${INPUT_BASELINE:-}"
if [[ -n "$baseline" && -n "$(existing "$out/report.json")" ]]; then
  if [[ -f "$baseline" ]]; then
    # Informational: a failed comparison warns and leaves the verdict alone.
    echo "+ segshield compare $baseline $out/report.json --out $out/compare"
    if ! segshield compare "$baseline" "$out/report.json" --out "$out/compare"; then
      echo "::warning::segshield compare failed; the audit's verdict is unchanged"
    fi
  else
    echo "::notice::baseline '$baseline' not found: no comparison (the first run has none)"
  fi
fi
finish "$rc"
