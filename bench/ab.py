"""Interleaved A/B of two source trees: `python -m bench.ab BASE_DIR [--rounds N] [-- bench arguments]`.

On a machine whose speed drifts (a shared VM), two single runs minutes apart differ by more than most
changes do. This runs the same `python -m bench` scenario from BASE_DIR (another checkout, e.g. made with
`git worktree add` or `git archive`) and from this tree in turn, N rounds, and prints the median of each
process's CPU per job and of the throughput for either side. Every run imports its own tree (it is started
with its tree as the working directory) and uses this virtualenv's interpreter.

Default scenario: uvicorn at peak only (`--servers uvicorn --skip half-peak celery raw heartbeats`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
DEFAULT_ARGS = ["--servers", "uvicorn", "--skip", "half-peak", "celery", "raw", "heartbeats"]


def run_once(tree: Path, bench_args: list[str], output: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, "-m", "bench", *bench_args, "--output", str(output)], cwd=tree, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return json.loads(output.read_text())


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    peaks = [run["scheduler"][run["verdict"]["ratios"]["fastest_server"]] for run in runs]
    per_process: dict[str, list[float]] = {}
    for peak in peaks:
        for row in peak["processes"]:
            per_process.setdefault(row["name"], []).append(row["cpu_ms_per_job"])
    return {
        "throughput_jobs_per_s": [peak["throughput_jobs_per_s"] for peak in peaks],
        "median_throughput": statistics.median(peak["throughput_jobs_per_s"] for peak in peaks),
        "median_cpu_ms_per_job": {name: statistics.median(values) for name, values in per_process.items()},
        "cpu_ms_per_job": per_process,
        "redis_commands_per_job": statistics.median(peak["redis_commands_per_job"] for peak in peaks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path, help="the other source tree (A); this tree is B")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("bench_args", nargs="*", help="arguments of python -m bench (after --)")
    args = parser.parse_args()
    bench_args = args.bench_args or DEFAULT_ARGS
    workdir = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    runs: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        for side, tree in (("A", args.base.resolve()), ("B", HERE)):
            runs[side].append(run_once(tree, bench_args, workdir / f"{side}{round_no}.json"))
            peak = summarise(runs[side][-1:])
            print(f"round {round_no + 1} {side}: {peak['throughput_jobs_per_s'][0]} jobs/s, "
                  f"CPU ms/job {peak['median_cpu_ms_per_job']}", flush=True)  # fmt: skip
    result = {side: summarise(side_runs) for side, side_runs in runs.items()}
    (workdir / "ab.json").write_text(json.dumps(result, indent=2))
    for side in ("A", "B"):
        print(f"{side}: median {result[side]['median_throughput']} jobs/s; median CPU ms/job {result[side]['median_cpu_ms_per_job']}; "
              f"Redis commands/job {result[side]['redis_commands_per_job']}")  # fmt: skip
    print(f"all runs: {workdir}")


if __name__ == "__main__":
    main()
