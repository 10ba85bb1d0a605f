"""What ``geodistill search`` does with its parsed command line: one call, ``search_command``.

It splits ``search_space=NAME`` from the Hydra overrides, composes the base run config and
loads the space once (every bound and choice checked against it), checks the leaderboard and
the cluster before anything trains, trains ``--smoke-test``'s tiny teacher when the space's
students need one, runs ``driver.run_search`` and prints the summary, the Pareto set of the
search's own trials and the report's path.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from geodistill.errors import ConfigError
from geodistill.platform.search.options import SearchOptions


def split_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """(the ``search_space=`` value, the ``key=value`` overrides) of the positional arguments."""
    space, overrides = None, []
    for arg in args:
        if arg.startswith("search_space="):
            if space is not None:
                raise ConfigError("search_space= given twice")
            space = arg.split("=", 1)[1]
            if not space:
                raise ConfigError("search_space= needs a name or a path")
        elif "=" in arg:
            overrides.append(arg)
        else:
            raise ConfigError(f"expected search_space=NAME or key=value, got {arg!r}")
    return space, overrides


def search_command(
    args: Sequence[str],
    options: SearchOptions,
    *,
    smoke_test: bool = False,
    report: bool = True,
    config_dir: str | Path | None = None,
    replay_table: str | None = None,
) -> int:
    """Run the search the command line asks for; the exit status (130: interrupted, resumable).

    ``config_dir`` (``--config-dir``) is searched before the packaged tree, for the space and
    the run-config options alike."""
    from geodistill.leaderboard import Leaderboard, default_root
    from geodistill.platform.compose import compose_run_config
    from geodistill.platform.search import driver
    from geodistill.platform.search.space import load_space

    space_arg, overrides = split_args(args)
    if smoke_test:
        space_arg = space_arg or "smoke"
        overrides = ["preset=smoke", *overrides]
    if space_arg is None:
        raise ConfigError("search_space=NAME is required (a packaged space, one in --config-dir, or a path)")
    # One validation pass before Ray starts or a teacher trains: the options, the base config
    # and every bound and choice of the space composed against it, then the leaderboard's root.
    options = options.check()
    base = compose_run_config(overrides, config_dir=config_dir)
    space = load_space(space_arg, base=base.to_dict(), config_dir=config_dir)
    options = options.named(space.name)
    Leaderboard(options.leaderboard or default_root()).check_writable(options.experiment)
    _check_cluster_auth(options.address)  # before any training, too: a token-auth head says so at once
    if smoke_test and options.teacher is None:
        options = _smoke_teacher(space, base, options)

    result = driver.run_search(space, base, options)
    _print_summary(result, metric=options.metric or space.metric, report=report)
    if replay_table:
        from geodistill.platform.search.replay import write_replay_table

        n = write_replay_table(result.rows, replay_table, [p.name for p in space.params])
        print(f"replay table: {replay_table} ({n} epoch rows)")
    if result.interrupted:
        print(
            f"geodistill search: interrupted; continue with --experiment {result.experiment} --resume",
            file=sys.stderr,
        )
        return 130
    return 0


def _check_cluster_auth(address: str | None) -> None:
    """The cluster this search will join (as ``run_search`` picks it) accepts our credentials."""
    from geodistill.platform.runtime.ray_local import check_cluster_auth, resolve_address

    target = resolve_address(address)
    if target is not None:
        check_cluster_auth(target)


def _smoke_teacher(space: Any, base: Any, options: SearchOptions) -> SearchOptions:
    """``--smoke-test`` without ``--teacher``: train a tiny one first when the space trains students."""
    from geodistill.platform.search.driver import resolve_storage
    from geodistill.platform.search.plan import SearchPlan
    from geodistill.platform.search.teacher import train_teacher_for

    draft = SearchPlan.build(space, base, check_teacher=False)
    if draft.stage != "student":
        return options
    root, local = resolve_storage(options.storage)
    if not local:
        raise ConfigError("--smoke-test trains its teacher locally: give --teacher with a URI --storage")
    folder = Path(root) / str(options.experiment)
    from geodistill.platform.search.experiment_lock import hold_experiment

    hold_experiment(str(options.experiment), str(folder))  # never over a running search's teacher
    print(f"--smoke-test: training a tiny teacher first ({folder}/teacher)")
    teacher = train_teacher_for(draft.with_output_dir(str(folder / "work")), folder / "teacher")
    return dataclasses.replace(options, teacher=str(teacher))


def _print_summary(result: Any, *, metric: str, report: bool) -> None:
    counts = result.rows.group_by("status").len().sort("status").iter_rows() if result.rows.height else []
    summary = ", ".join(f"{status} {n}" for status, n in counts)
    print(f"\nexperiment {result.experiment}: {result.rows.height} leaderboard rows ({summary})")
    print(f"  leaderboard  {result.leaderboard_root}")
    print(f"  tune state   {result.experiment_path}")
    print(f"  optuna study {result.study_url}  (optuna-dashboard {result.study_url})")
    print(f"\nPareto set ({metric} up, GFLOPs per query down; a stopped trial at the epoch it stopped):")
    print(format_pareto(result.pareto, metric=metric) if result.pareto.height else "  (no finished trial)")
    _print_anytime(result, metric=metric)
    if report and result.pareto.height and "://" not in result.experiment_path:
        from geodistill.leaderboard import Leaderboard
        from geodistill.leaderboard.report import write_report

        # The whole board, not just this search's rows: the teacher's row may be in another experiment.
        paths = write_report(
            Leaderboard(result.leaderboard_root),
            Path(result.experiment_path) / "report",
            experiment=result.experiment,
            metric=metric,
        )
        print(f"\nreport: {paths.get('html')}")


def _print_anytime(result: Any, *, metric: str) -> None:
    """Compute spent and the anytime front, printed and written beside Tune's state."""
    from geodistill.leaderboard.pareto import anytime_front, counted_compute

    curve = anytime_front(result.rows, metric)
    if curve.is_empty():
        return
    total = float(counted_compute(result.rows)["compute"].fill_null(0).sum())
    seconds = float(result.rows["wall_seconds"].fill_null(0).sum())
    print(f"\ncompute spent: {total:.4g} GFLOPs x epochs over {seconds:.0f} trial-seconds")
    if "train_gflops" in result.rows.columns and result.rows["train_gflops"].is_not_null().any():
        train = float(result.rows["train_gflops"].fill_null(0).sum())
        print(f"training compute: {train:.4g} GFLOPs (students' forward + backward, teacher forward)")
    last = curve["front_hypervolume"].to_list()
    marks = [i for i in range(len(last)) if i == 0 or last[i] > last[i - 1]]
    print(f"anytime front: hypervolume of ({metric} up, log10 GFLOPs down) as compute was spent")
    print(f"  {'compute':>10}  {'hypervolume':>11}  {'of final':>8}")
    for i in marks[-8:]:
        share = f"{100 * last[i] / last[-1]:.1f} %" if last[-1] > 0 else "-"
        print(f"  {curve['compute_spent'][i]:>10.4g}  {last[i]:>11.4g}  {share:>8}")
    if "://" not in result.experiment_path:
        out = Path(result.experiment_path) / "anytime_front.csv"
        curve.write_csv(out)
        print(f"  written: {out}")


def format_pareto(pareto: Any, *, metric: str = "d2s_recall1") -> str:
    """The Pareto set as a fixed-width table (GFLOPs ascending)."""
    header = (
        f"{'trial':<14} {'backbone':<16} {'img':>4} {'views':>5} {'GFLOPs':>9} {metric:>12} {'status':<8}"
    )
    lines = [header, "-" * len(header)]
    for row in pareto.iter_rows(named=True):
        lines.append(
            f"{row['trial_id']:<14} {row['backbone'] or '-':<16} {row['img_size'] or 0:>4} "
            f"{row['views'] or 0:>5} {row['gflops']:>9.4f} {row[metric]:>12.2f} {_label(row):<8}"
        )
    return "\n".join(lines)


def _label(row: Mapping[str, Any]) -> str:
    """``ok``, or ``stopped@E`` for a trial stopped early at epoch E (its checkpoint then)."""
    if row.get("status") == "stopped" and row.get("epochs") is not None:
        return f"stopped@{row['epochs']}"
    return str(row.get("status"))
