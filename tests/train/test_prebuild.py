"""DeepSpeed's JIT ops built at install time: one line saying what was built, or why nothing was."""

from __future__ import annotations

import re
import runpy
import sys

import pytest

from geodistill.train.prebuild import prebuild_deepspeed_ops

OUTCOMES = (
    r"DeepSpeed \S+ ready in \d+\.\d s( \(CPU: torch sees no CUDA device\))?",
    r"DeepSpeed \S+ not pre-built \(.+\); it builds at first use",
    r"no DeepSpeed op to pre-build on this accelerator",
)


@pytest.fixture
def no_deepspeed(monkeypatch):
    """``import deepspeed`` raises ImportError, as where the package is not installed."""
    monkeypatch.setitem(sys.modules, "deepspeed", None)


def test_without_deepspeed_there_is_nothing_to_build(no_deepspeed):
    assert prebuild_deepspeed_ops() == "deepspeed is not installed: nothing to build"


def test_the_module_runs_as_a_script_and_prints_one_line_on_stderr(no_deepspeed, capsys, monkeypatch):
    monkeypatch.delitem(sys.modules, "geodistill.train.prebuild")  # run as a script, as `python -m` does
    runpy.run_module("geodistill.train.prebuild", run_name="__main__")
    assert capsys.readouterr() == ("", "deepspeed is not installed: nothing to build\n")


@pytest.mark.slow  # imports DeepSpeed; compiles its op (about a minute on 2 cores) when the install did not
@pytest.mark.timeout(900)  # or waits on the build lock of another process compiling it
def test_the_installed_deepspeed_reports_one_of_its_outcomes():
    message = prebuild_deepspeed_ops()
    assert any(re.fullmatch(pattern, message) for pattern in OUTCOMES), message
    again = prebuild_deepspeed_ops()  # the second call finds the op built (or refused) the same way
    assert again.split(" ")[:2] == message.split(" ")[:2]


@pytest.mark.slow  # a child that imports DeepSpeed (and compiles its op where the install did not)
@pytest.mark.timeout(900)
def test_the_install_step_on_a_cpu_host_prints_its_one_line_and_no_gpu_warning(tmp_path):
    """What `make` prints on a CPU host with a CUDA toolkit: DeepSpeed warned it was "unable to
    detect" a GPU and torch "No CUDA runtime is found, using CUDA_HOME=..."; issue 29."""
    import os
    import subprocess

    env = {**os.environ, "CUDA_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("DS_ACCELERATOR", None)
    done = subprocess.run([sys.executable, "-m", "geodistill.train.prebuild"], env=env,
                          capture_output=True, text=True, timeout=880)  # fmt: skip
    assert done.returncode == 0 and done.stdout == "", done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and any(re.fullmatch(p, lines[0]) for p in OUTCOMES), lines
    assert "(CPU: torch sees no CUDA device)" in lines[0] or "ready" not in lines[0]
