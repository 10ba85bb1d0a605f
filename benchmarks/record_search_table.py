"""Record the tabular search benchmark: every configuration of a grid, trained once for real.

Run (1,152 configurations x 9 epochs, 5-40 s each on one thread; two shards on a 2-core machine):

    python benchmarks/record_search_table.py --work SCRATCH --shard 0/2 &   # one process per core
    python benchmarks/record_search_table.py --work SCRATCH --shard 1/2
    python benchmarks/record_search_table.py --work SCRATCH   # assembles (records what is missing)

A part of the grid at another training seed (how far a configuration's curve moves between
seeds, ``docs/evidence.md``) goes to its own file, beside the teacher of the same ``--work``:

    python benchmarks/record_search_table.py --work SCRATCH --configs 774,840,848 --seed 1 --out seed1.parquet

The same grid on more test queries (one query is 75/16 = 4.7 AP at the committed 16; 80 make it
0.94), for a bar finer than one query, goes to its own file too:

    python benchmarks/record_search_table.py --work SCRATCH160 --places 160 --out places160.parquet

Every file a recording writes names its training seed and its number of places (the parquet
key-value entries ``SEED_KEY`` and ``PLACES_KEY``), so a resume at another ``--seed`` or
``--places`` is refused instead of mixing two recordings' rows in one file.

An interrupted recording resumes, and a grown grid appends, when run again with the same
``--work`` (the teacher the recorded rows were distilled from lives there): rows are kept
per configuration (knob values) after every configuration, in one ``.partial.parquet`` per
shard beside ``--out``. The table is ``GRID``: rows of configurations outside it are left out
of the rewritten table.

HPO research compares samplers on *tabular* benchmarks (NAS-Bench, HPOBench): every point of a
discrete space is trained once and stored, and a sampler's run becomes table look-ups, so one
search costs milliseconds and a comparison can afford 20+ seeds per budget. This script builds
such a table for the mission's knobs, with real smoke-sized training: one tiny stage-1 teacher,
then every student configuration of ``GRID`` distilled from it on the same synthetic UniV set
(``geodistill.eval.fit_evaluated`` in this process, one thread), evaluated after every epoch.

One row per (configuration, epoch): the knobs, d2s/s2d AP and Recall@1 at that epoch, the
epoch's seconds, and the GFLOPs per drone query counted before training (the cost the search
knows up front). ``bench_search_replay.py`` replays Optuna samplers against it.
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

from geodistill.models.cost import config_cost
from geodistill.platform.compose import compose_run_config
from geodistill.platform.search import SearchPlan, parse_space
from geodistill.train.config import RunConfig

HERE = Path(__file__).resolve().parent
# The searched knobs (RunConfig dotted keys) and their values: 6 x 4 x 2 x 2 x 2 x 2 x 3 = 1,152
# configs. The mission's knobs: backbone size, views, fps, KD temperature, KD weights (feature KD,
# the level that carried distillation in distill_evidence.py, and relation KD), and the learning
# rate, where a wrong value costs up to 30 points of AP here (as in any real search). A
# single-valued entry is recorded as a column but not searched. Six backbones and up to 8 views span the cost range of
# the distill space (conf/search_space/distill.yaml; about 180x in GFLOPs per query), so most of the grid is dominated,
# as in a real search; the first table (4 backbones, 1-4 views, 3 epochs) let random search
# reach 94.5 % of the front's hypervolume in 32 trials, leaving a sampler nothing to win.
GRID: dict[str, list] = {
    "model.backbone": [
        "mobilenetv3_small",
        "convnext_atto",
        "resnet18",
        "vit_tiny",
        "mobilenetv3",
        "efficientnet_b0",
    ],
    "data.views": [1, 2, 4, 8],
    "data.fps": [2, 10],
    "distill.temperature": [1.0, 4.0],
    "distill.w_feature": [0.0, 1.0],
    "distill.w_relation": [0.0, 1.0],
    "train.lr": [1e-3, 1e-4, 3e-3],  # the shipped space's range (loguniform 1e-4..3e-3) and its default
}
# The order of recording: each stage adds values to the grid, and every configuration is recorded
# in the first stage whose values contain it, so the table after any finished stage is a complete
# product grid (192 -> 256 -> 384 -> 768 -> 1152 configurations) and a recording cut short still leaves the
# replay a usable table (it replays the largest complete product grid in the file).
STAGES: list[dict[str, list]] = [
    {"model.backbone": GRID["model.backbone"][:4], "data.views": [1, 2, 4], "train.lr": [1e-3]},
    {"model.backbone": GRID["model.backbone"][:4], "train.lr": [1e-3]},
    {"train.lr": [1e-3]},
    {"train.lr": [1e-3, 1e-4]},
    {},
]
# Everything else is fixed: 32 px, 32 places (16 train, 16 test queries), 3 steps of 4 per epoch,
# 9 epochs (--epochs): long enough that feature KD moves the result and that ASHA's rungs
# (1 and 3 epochs at reduction factor 3) sit where they would in a 20-epoch search.
FIXED: dict = {
    "stage": "student",
    "model.pooling": "avg",
    "model.embed_dim": 64,
    "data.img_size": 32,
    "data.batch_size": 4,
    "data.synth_buildings": 32,
    "train.max_steps_per_epoch": 3,
    "train.warmup_steps": 1,
    "train.eval_every": 1,
    "distill.w_logit": 1.0,
}
METRICS = ("d2s_ap", "d2s_recall1", "s2d_ap", "s2d_recall1")
SEED_KEY = "geodistill.train_seed"  # the parquet key-value entry naming a recording's training seed
PLACES_KEY = "geodistill.synth_places"  # ... and its number of synthetic places (data.synth_buildings)


def recorded_seed(path: Path) -> int | None:
    """The training seed ``path`` was recorded at (its ``SEED_KEY`` entry); None for a file written
    before recordings named it (the committed table is seed 0)."""
    value = pl.read_parquet_metadata(path).get(SEED_KEY)
    return None if value is None else int(value)


def recorded_places(path: Path) -> int:
    """The number of synthetic places ``path`` was recorded on (its ``PLACES_KEY`` entry; a file
    written before recordings named it has the committed table's ``FIXED`` count)."""
    value = pl.read_parquet_metadata(path).get(PLACES_KEY)
    return FIXED["data.synth_buildings"] if value is None else int(value)


class RecordingContext:
    """In-process ``TrainContext`` that keeps every epoch's metrics and no checkpoint."""

    rank, world_size = 0, 1

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.history: list[dict[str, float]] = []

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None = None) -> None:
        self.history.append(dict(metrics))

    def latest_checkpoint(self) -> Path | None:
        return None

    def should_stop(self, epoch: int, metrics: dict[str, float]) -> bool:
        return False


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every point of ``grid``, in the order of ``STAGES`` (product order within a stage).

    A stage restricts some knobs to a subset of their values; a point belongs to the first stage
    that contains it. The points of the first k stages form a complete product grid for every k,
    so a recording cut short after a stage still gives the replay a usable (smaller) table.
    """

    def stage(point: dict) -> int:
        for i, limits in enumerate(STAGES):
            if all(point[k] in values for k, values in limits.items() if k in point):
                return i
        return len(STAGES)

    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return sorted(points, key=stage)  # stable: product order within a stage


def point_key(point: dict) -> tuple:
    """A configuration's identity in the table: its knob values (not its position in a grid)."""
    return tuple(str(point[k]) for k in GRID)


def table_space(fixed: dict):
    """The grid as a validated search space (every value composed into a RunConfig up front)."""
    params = {k: {"type": "choice", "choices": v} for k, v in GRID.items()}
    return parse_space({"fixed": fixed, "params": params}, name="search_table")


def train_teacher(base: dict, out: Path, epochs: int, fixed: dict = FIXED) -> Path:
    """A resnet18 stage-1 teacher at 2 views on the students' data (``fixed``; one process, no Ray)."""
    from geodistill.train.context import InProcessContext, latest_checkpoint_in
    from geodistill.train.loop import fit

    found = latest_checkpoint_in(out / "checkpoints")
    if found is not None:  # a resumed recording keeps its teacher
        return found
    space = table_space(fixed)
    plan = SearchPlan.build(space, RunConfig.from_dict(base), check_teacher=False)
    cfg_dict = plan.config({"model.backbone": "resnet18", "data.views": 2}).to_dict()
    cfg_dict.update(stage="teacher", run_name="teacher")
    cfg_dict["train"].update(epochs=epochs, max_steps_per_epoch=None)
    cfg = RunConfig.from_dict(cfg_dict)
    cfg.scaling.num_workers = 0
    fit(cfg, context=InProcessContext(out, device="cpu"))
    found = latest_checkpoint_in(out / "checkpoints")
    assert found is not None
    return found


def _shard(text: str) -> tuple[int, int]:
    """``K/N`` -> (K, N): this process records the configurations whose index is K mod N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes K/N (e.g. 0/2), not {text!r}") from None
    if not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= K < N")
    return k, n


def _config_ids(text: str) -> list[int]:
    """``3,17,40`` -> [3, 17, 40]: configuration ids of the grid (``config_id`` in a table)."""
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--configs takes ids like 3,17,40, not {text!r}") from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"--configs {text}: need one or more ids >= 0")
    return ids


def partials(out: Path) -> list[Path]:
    """The progress files of a recording into ``out``: ``STEM.partial.parquet`` and one per shard."""
    return sorted(out.parent.glob(f"{out.stem}.*partial.parquet"))


def load_recorded(
    out: Path, epochs: int, seed: int, places: int = FIXED["data.synth_buildings"]
) -> list[dict]:
    """Rows already recorded beside ``out`` (the table and every shard's progress); a file recorded
    with other epochs, at another training seed or on another number of places is refused
    (resuming would mix two recordings)."""
    rows: list[dict] = []
    for old in [out, *partials(out)]:
        if old.exists():
            frame = pl.read_parquet(old)
            if frame.height and int(frame["epoch"].max()) != epochs:
                raise SystemExit(
                    f"{old} was recorded with {frame['epoch'].max()} epochs per configuration, not "
                    f"--epochs {epochs}: record into another --out"
                )
            if (found := recorded_seed(old)) not in (None, seed):
                raise SystemExit(
                    f"{old} was recorded at training seed {found}, not --seed {seed}: "
                    "record into another --out"
                )
            if (found := recorded_places(old)) != places:
                raise SystemExit(
                    f"{old} was recorded on {found} places, not --places {places}: record into another --out"
                )
            rows += frame.to_dicts()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "search_table.parquet"))
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None, help="only the first N configurations (a dry run)")
    parser.add_argument(
        "--shard", type=_shard, default=None, help="K/N: record every N-th configuration from K"
    )
    parser.add_argument(
        "--work", default=None, help="scratch folder (data, teacher); reused when given again"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the students' training seed (train.seed; the committed table is seed 0): with another "
        "seed, record into another --out, e.g. to measure how far one configuration's curve moves",
    )
    parser.add_argument(
        "--places",
        type=int,
        default=FIXED["data.synth_buildings"],
        help="synthetic places (data.synth_buildings; half are test queries): the committed table has "
        f"{FIXED['data.synth_buildings']}; another count records into another --out",
    )
    parser.add_argument(
        "--configs",
        type=_config_ids,
        default=None,
        help="only these configurations, by config_id (comma-separated), e.g. a table's front",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    out = Path(args.out)
    shard_k, shard_n = args.shard or (0, 1)
    suffix = f".shard{shard_k}of{shard_n}.partial.parquet" if args.shard else ".partial.parquet"
    partial = out.with_suffix(suffix)  # progress survives an interrupted recording
    if args.places < 4:
        raise SystemExit(f"--places {args.places}: need at least 4 (half of them test places)")
    other_places = args.places != FIXED["data.synth_buildings"]
    if (
        args.limit is not None or args.configs is not None or args.seed != 0 or other_places
    ) and out.exists():
        # the table is the grid at seed 0 on FIXED's places: a part of it, or another recording, would replace it
        raise SystemExit(
            "--limit, --configs, --seed and --places record a part or another table: give an --out "
            f"other than the recorded {out}"
        )
    if args.work is None and (out.exists() or partials(out)):
        raise SystemExit(
            f"{out} already has rows: give --work of the recording that made them (its teacher), "
            "or another --out"
        )
    # Rows already recorded (a finished table, or interrupted runs' progress), checked before any
    # training: a file of other epochs, another seed or other places is refused rather than mixed in.
    rows = load_recorded(out, args.epochs, args.seed, args.places)
    points = grid_points(GRID)[: args.limit]
    wanted = set(args.configs if args.configs is not None else range(len(points)))  # ids kept
    if args.configs is not None and max(wanted) >= len(points):
        raise SystemExit(f"--configs: the grid has configurations 0-{len(points) - 1}; got {max(wanted)}")
    # written into every file the recording writes
    entries = {SEED_KEY: str(args.seed), PLACES_KEY: str(args.places)}
    on_places = {**FIXED, "data.synth_buildings": args.places}  # the teacher's and students' data
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="search_table_"))
    work.mkdir(parents=True, exist_ok=True)
    base = compose_run_config(["preset=smoke", f"output_dir={work / 'runs'}"]).to_dict()
    start = time.perf_counter()
    with open(work / "teacher.lock", "w") as lock:  # shards share one teacher: the first trains it
        fcntl.flock(lock, fcntl.LOCK_EX)
        teacher = train_teacher(base, work / "teacher", args.teacher_epochs, on_places)
    print(f"teacher: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    fixed = {
        **on_places,
        "train.epochs": args.epochs,
        "train.seed": args.seed,
        "distill.teacher_checkpoint": str(teacher),
    }
    plan = SearchPlan.build(table_space(fixed), RunConfig.from_dict(base))
    # Resume / append: the rows already recorded are kept, keyed on their knob values, so a grown or
    # reordered grid records only new points.
    known = {point_key({k: r[k.replace(".", "__")] for k in GRID}) for r in rows}
    order = {point_key(p): i for i, p in enumerate(points)}
    rows = [r for r in rows if point_key({k: r[k.replace(".", "__")] for k in GRID}) in order]
    for r in rows:  # config_id is the position in the current grid
        r["config_id"] = order[point_key({k: r[k.replace(".", "__")] for k in GRID})]
    rows = [r for r in rows if r["config_id"] in wanted]  # a --configs part keeps only its own
    rows = list({(r["config_id"], r["epoch"]): r for r in rows}.values())
    mine: list[dict] = [r for r in rows if r["config_id"] % shard_n == shard_k] if args.shard else rows
    for i, point in enumerate(points):
        if point_key(point) in known or i % shard_n != shard_k or i not in wanted:
            continue
        cfg = plan.config(point)
        cfg.scaling.num_workers = 0
        cfg.run_name = f"cfg{i:04d}"
        gflops = config_cost(cfg.model, cfg.data.views)[
            "gflops"
        ]  # counted before training, as the search does
        context = RecordingContext()
        t0 = time.perf_counter()
        from geodistill.eval import fit_evaluated

        fit_evaluated(cfg, context=context)
        for report in context.history:
            mine.append(
                {
                    "config_id": i,
                    **{k.replace(".", "__"): v for k, v in point.items()},
                    "epoch": int(report["epoch"]),
                    **{m: float(report[m]) for m in METRICS},
                    "epoch_seconds": float(report["epoch_seconds"]),
                    "gflops": float(gflops),
                }
            )
        pl.DataFrame(mine).write_parquet(partial, metadata=entries)  # after every configuration
        print(
            f"[{i + 1}/{len(points)}] {point} gflops {gflops:.4f} "
            f"d2s_ap {context.history[-1]['d2s_ap']:.2f} in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if args.shard:
        print(
            f"shard {shard_k}/{shard_n} done in {time.perf_counter() - start:.0f} s: run again without --shard to assemble"
        )
        return
    frame = (
        pl.DataFrame(rows)
        .sort("config_id", "epoch")
        .with_columns(
            pl.col("config_id").cast(pl.Int32),
            pl.col("epoch").cast(pl.Int8),
            pl.col("data__views").cast(pl.Int8),
        )
    )
    frame.write_parquet(out, compression="zstd", metadata=entries)
    for done in partials(out):
        done.unlink()
    print(
        f"{frame.height} rows, {frame['config_id'].n_unique()} configurations in {time.perf_counter() - start:.0f} s -> {args.out}"
    )


if __name__ == "__main__":
    main()
