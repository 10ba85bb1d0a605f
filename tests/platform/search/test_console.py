"""The search command's console side: its positional arguments and the Pareto table it prints."""

from __future__ import annotations

import polars as pl
import pytest

from geodistill.errors import ConfigError
from geodistill.platform.search.console import format_pareto, split_args


def test_split_args_separates_the_space_from_the_overrides():
    assert split_args(["search_space=smoke", "train.epochs=2", "data.views=4"]) == (
        "smoke",
        ["train.epochs=2", "data.views=4"],
    )
    assert split_args(["train.epochs=2"]) == (None, ["train.epochs=2"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search_space=a", "search_space=b"], "search_space= given twice"),
        (["search_space="], "search_space= needs a name or a path"),
        (["smoke"], "expected search_space=NAME or key=value, got 'smoke'"),
    ],
)
def test_split_args_refuses_in_one_line(args, message):
    with pytest.raises(ConfigError, match=message):
        split_args(args)


def test_format_pareto_prints_one_aligned_row_per_point_with_the_metric_column():
    front = pl.DataFrame(
        {
            "trial_id": ["t1", "t2"],
            "backbone": ["resnet18", None],
            "img_size": [64, None],
            "views": [2, 8],
            "gflops": [0.0451, 1.5],
            "d2s_ap": [89.456, 91.0],
            "status": ["ok", "stopped"],
        }
    )
    lines = format_pareto(front, metric="d2s_ap").splitlines()
    assert lines[0].split() == ["trial", "backbone", "img", "views", "GFLOPs", "d2s_ap", "status"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["t1", "resnet18", "64", "2", "0.0451", "89.46", "ok"]
    assert lines[3].split() == ["t2", "-", "0", "8", "1.5000", "91.00", "stopped"]
    assert len({len(line) for line in lines}) == 1  # fixed width
