"""One driver per experiment: a second driver is refused in one line naming the holder; a dead one frees it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from geodistill.errors import ConfigError
from geodistill.platform.search.experiment_lock import LOCK_FILE, hold_experiment, released_after

_HOLD_AND_WAIT = """
import sys, time
from geodistill.platform.search.experiment_lock import hold_experiment
hold_experiment("exp", sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_driver_is_refused_while_the_first_lives_and_admitted_once_it_died(tmp_path):
    folder = tmp_path / "exp"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_AND_WAIT, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as err:
            hold_experiment("exp", str(folder))
        text = str(err.value)
        assert "\n" not in text
        assert text.startswith(f"experiment 'exp' is being run by another search (pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: this process may now take it (and name itself).
    released_after(hold_experiment)("exp", str(folder))
    assert (folder / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")


def test_released_after_frees_the_locks_its_call_took_so_the_next_search_may_take_them(tmp_path):
    folder = str(tmp_path / "exp")
    released_after(hold_experiment)("exp", folder)
    # Released: a child process can take it at once.
    code = (
        "import sys; from geodistill.platform.search.experiment_lock import hold_experiment; "
        "hold_experiment('exp', sys.argv[1]); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]
