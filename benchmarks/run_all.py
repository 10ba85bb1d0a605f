"""One run, every figure: run each ``benchmarks/bench_*.py`` and write ``benchmarks/results.json``.

Run: python benchmarks/run_all.py [--only bench_metrics bench_search_replay] [--out benchmarks/results.json]
(``make bench`` runs them all). ``--with pfed_evidence`` adds a slow evidence script (minutes to
tens of minutes: many seeded training runs) that ``make bench`` leaves out; ``--merge`` keeps the
benchmarks already in ``--out`` that this run does not re-run (each keeps its own date and commit).

results.json records the commit (and whether the tree had local changes), the UTC date, the
machine (CPU model, cores, memory), the 1/5/15-minute load average before and after every
benchmark, and per benchmark its exit code, wall seconds, the figures it recorded through
``_figures.figure`` (value, unit, anchor, limit) and its printed output. RESULTS.md's
generated tables come from this file (``render_results.py``), and a fast test checks that
they match it, so no figure in them can come from anywhere else.

Each benchmark runs in its own process with its defaults; a failing benchmark is recorded
(exit code, output) and the run goes on, then exits non-zero.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Evidence scripts: seeded training studies, too slow for every `make bench`; run with --with / --only.
EVIDENCE = ["pfed_evidence"]
# Each benchmark's smoke size (`--smoke`): the same code paths at toy sizes, so a benchmark that
# crashes fails the second tier (tests/benchmarks/test_smoke.py); its figures mean nothing.
SMOKE = {
    "bench_frozen_teacher": ["--img-size", "56", "--batch", "2"],
    "bench_inference": ["--backbone", "resnet18", "--img-size", "32", "--views", "2", "--batch", "1",
                        "--repeats", "1", "--warmup", "0"],
    "bench_leaderboard": ["--files", "8", "--rows", "8"],
    "bench_metrics": ["--repeats", "1"],
    "bench_scale": ["--trials", "2", "--files", "8", "--placement", "4", "2"],
    "bench_search": ["--trials", "2", "--epochs", "1", "--buildings", "8", "--overhead-trials", "2"],
    "bench_search_front": ["--seeds", "1", "--trials", "24"],
    "bench_search_product": ["--smoke"],
    "bench_search_replay": ["--seeds", "1"],
    "bench_train": ["--quick"],
}  # fmt: skip


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version()}


def commit() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_one(script: Path, timeout: float | None = None, args: list[str] | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as tmp:
        figures_path = tmp.name
    env = {**os.environ, "GEODISTILL_FIGURES": figures_path}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    before = load()
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(script), *(args or [])],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as err:  # keep what it recorded before the limit
        code = 124
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    after = load()
    figures = [json.loads(line) for line in Path(figures_path).read_text().splitlines() if line.strip()]
    os.unlink(figures_path)
    sys.stdout.write(stdout)
    if code:
        sys.stderr.write(stderr[-4000:])
    return {
        "script": f"benchmarks/{script.name}",
        # The arguments it ran with; an absolute path (a scratch folder) is written as DIR.
        **({"args": ["DIR" if os.path.isabs(a) else a for a in args]} if args else {}),
        "exit_code": code,
        "seconds": round(seconds, 1),
        "load_before": before,
        "load_after": after,
        "figures": figures,
        "output": stdout[-20000:],
    }


def merged(earlier: dict, ran: dict) -> dict:
    """``ran``'s benchmarks over ``earlier``'s (a results.json), each kept one dated with its run,
    in the earlier file's order with new ones last: a partial re-run moves no section of RESULTS.md."""
    kept = {
        name: {"date": earlier["date"], "commit": earlier.get("commit"), **bench}
        for name, bench in earlier["benchmarks"].items()
        if name not in ran
    }
    both = {**kept, **ran}
    return {
        name: both[name]
        for name in [*earlier["benchmarks"], *(n for n in ran if n not in earlier["benchmarks"])]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark names (bench_metrics ...); default: all")
    parser.add_argument(
        "--with",
        dest="extra",
        nargs="*",
        default=[],
        choices=EVIDENCE,
        help="slow evidence scripts to run as well (not in make bench)",
    )
    parser.add_argument("--merge", action="store_true", help="keep the other benchmarks already in --out")
    parser.add_argument(
        "--evidence-args",
        default="",
        help="arguments for the evidence scripts, e.g. '--out DIR --from-runs' to summarise finished runs",
    )
    parser.add_argument("--out", default=None, help="default benchmarks/results.json (--smoke: a temp file)")
    parser.add_argument(
        "--smoke", action="store_true", help="every benchmark at its smoke size (SMOKE): does it run at all"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per benchmark (exit code 124 past it)"
    )
    args = parser.parse_args()
    if args.out is None:  # smoke figures never overwrite the recorded ones
        args.out = (
            str(Path(tempfile.mkdtemp()) / "results.json") if args.smoke else str(HERE / "results.json")
        )
    scripts = sorted(HERE.glob("bench_*.py")) + [HERE / f"{name}.py" for name in args.extra]
    if args.only:  # may name an evidence script too: --only pfed_evidence
        wanted = {name.removesuffix(".py") for name in args.only}
        scripts = [
            s
            for s in sorted(HERE.glob("bench_*.py")) + [HERE / f"{e}.py" for e in EVIDENCE]
            if s.stem in wanted
        ]
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **commit(),
        "machine": machine(),
        "load_before": load(),
        "benchmarks": {},
    }
    for script in scripts:
        print(f"== {script.name}", flush=True)
        extra = shlex.split(args.evidence_args) if script.stem in EVIDENCE else []
        if args.smoke:
            extra = SMOKE[script.stem] + extra  # a new benchmark without a smoke size fails here
        result["benchmarks"][script.stem] = run_one(script, args.timeout, extra)
    result["load_after"] = load()
    if args.merge and Path(args.out).is_file():
        result["benchmarks"] = merged(json.loads(Path(args.out).read_text()), result["benchmarks"])
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    failed = [name for name, b in result["benchmarks"].items() if b["exit_code"]]
    print(
        f"wrote {args.out}; load {result['load_before']} -> {result['load_after']}"
        + (f"; FAILED: {failed}" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
