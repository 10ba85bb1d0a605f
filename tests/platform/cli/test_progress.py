"""Progress of long commands: the layers call back, the console draws bars on a terminal only."""

from __future__ import annotations

import io

from geodistill.data.check import check_dataset
from geodistill.data.synth import generate_univ
from geodistill.platform.cli.progress import console_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_synth_and_check_report_progress_to_the_last_item(tmp_path):
    calls = []
    root = generate_univ(
        tmp_path / "u", buildings=4, seed=0, img_size=32, progress=lambda *a: calls.append(a)
    )
    total = calls[-1][1]
    assert calls[0] == (0, total, "places") and calls[-1] == (total, total, "places")
    assert [c[0] for c in calls] == list(range(total + 1))  # one call per place, then done
    seen = {}
    report = check_dataset(root, progress=lambda done, n, label: seen.__setitem__(label, (done, n)))
    assert len(seen) == len(report.rows)
    for row in report.rows:
        assert seen[f"{row.elevation}/{row.fps}fps {row.split}/{row.subset}"] == (
            row.buildings,
            row.buildings,
        )


def test_bars_are_drawn_on_a_terminal_and_nowhere_else():
    term = _Terminal()
    with console_progress(stream=term) as progress:
        progress(0, 5, "places")
        progress(5, 5, "places")
    assert "places" in term.getvalue() and "5/5" in term.getvalue()
    pipe = io.StringIO()
    with console_progress(stream=pipe) as progress:
        assert progress is None
    with console_progress(stream=_Terminal(), quiet=True) as progress:
        assert progress is None
