"""Run the Dockerfile's steps without Docker: a fresh venv stands in for the image.

Where no Docker daemon can run (or the base image cannot be pulled), this executes the same
instructions on the host: FROM checks the Python version, ARG/ENV set the environment, WORKDIR
and COPY lay the files out under a scratch root, RUN runs under `sh -c` with the fresh venv first
on PATH, and finally the ENTRYPOINT runs with the CMD and with a tiny audit. `useradd` and USER
are skipped (they need root and change the host), and said so.

    python scripts/docker_steps_check.py            # minutes: a full torch + segshield install
    python scripts/docker_steps_check.py --keep     # keep the scratch root to look at it
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_AUDIT = (
    "audit --limit 2 --steps 2 --epsilons 8/255 --attacks fgsm --engines pytorch,ort-fp32 "
    "--no-bench --no-checks --out {out}"
)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, `\\` continuations joined, comments dropped."""
    joined, pending = [], ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line.strip())
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def _expand(text: str, env: dict[str, str]) -> str:
    """${VAR} and $VAR as Docker expands them in WORKDIR/COPY/ENV (RUN leaves it to the shell)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m[1], ""), text)


def run_steps(root: Path, python: str) -> dict[str, object]:
    """Execute the Dockerfile's instructions under `root`; returns what ran and how long."""
    fs = root / "fs"  # the image's file system; absolute paths of the Dockerfile land here
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    workdir, record = fs, {"ran": [], "skipped": [], "seconds": {}}
    venv = fs / "venv"
    entrypoint: list[str] = []
    cmd: list[str] = []
    for op, args in instructions(REPO / "Dockerfile"):
        start = time.perf_counter()
        if op == "FROM":
            want = re.search(r"python:(\d+\.\d+)", args)
            have = subprocess.check_output([python, "-c", "import sys; print(sys.version[:4])"])
            if not want or not have.decode().strip().startswith(want[1]):
                raise SystemExit(f"FROM {args}: this host's {python} is {have.decode().strip()}")
            subprocess.run([python, "-m", "venv", str(venv)], check=True)
            env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        elif op in ("ARG", "ENV"):
            for item in shlex.split(args):
                name, _, value = item.partition("=")
                value = _expand(value, env)
                if value.startswith("/"):
                    value = str(fs / value.lstrip("/"))
                env[name] = os.environ.get(name, value) if op == "ARG" else value
        elif op == "WORKDIR":
            workdir = fs / _expand(args, env).lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif op == "COPY":
            *sources, dest = shlex.split(args)
            target = workdir / dest
            for src in sources:
                path = REPO / src
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, target / path.name if dest.endswith("/") else target)
        elif op == "RUN" and "useradd" not in args:
            print(f"+ RUN {args}", flush=True)
            subprocess.run(["sh", "-c", args], cwd=workdir, env=env, check=True)
        elif op in ("ENTRYPOINT", "CMD"):
            (entrypoint if op == "ENTRYPOINT" else cmd).extend(json.loads(args))
        else:
            record["skipped"].append(f"{op} {args}")
            continue
        record["ran"].append(f"{op} {args}")
        record["seconds"][f"{op} {args}"[:60]] = round(time.perf_counter() - start, 1)
    for name, argv in [
        ("CMD", entrypoint + cmd),
        ("tiny audit", [*entrypoint, *shlex.split(TINY_AUDIT.format(out=root / "out"))]),
    ]:
        start = time.perf_counter()
        print(f"+ {shlex.join(argv)}", flush=True)
        proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True)
        print(proc.stdout[-2000:] + proc.stderr[-2000:])
        if proc.returncode != 0:
            raise SystemExit(f"{name} exited {proc.returncode}")
        record["seconds"][name] = round(time.perf_counter() - start, 1)
    versions = subprocess.check_output(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import segshield, torch; print(segshield.__version__, torch.__version__)",
        ],
        text=True,
    )
    record["versions"] = versions.split()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3.11", help="interpreter standing in for FROM")
    parser.add_argument("--keep", action="store_true", help="keep the scratch root")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="segshield-docker-steps-"))
    try:
        record = run_steps(root, opts.python)
    finally:
        if not opts.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(record, indent=2))
    print(f"ok: the Dockerfile's steps ran in a fresh venv ({root if opts.keep else 'removed'})")


if __name__ == "__main__":
    sys.exit(main())
