"""runner.malloc: glibc's trim and mmap thresholds raised at run time, the user's GLIBC_TUNABLES respected."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import run_dwx

CALL = "from runner.malloc import tune_malloc; print(tune_malloc())"


def _run(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", CALL], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_thresholds_are_set_on_glibc():
    assert _run({"GLIBC_TUNABLES": ""}) == "True"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_the_users_own_malloc_tunables_win():
    assert _run({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}) == "False"


def test_a_non_boolean_setting_is_a_config_error():
    out = run_dwx("run", "task=physical_params", "malloc_tuning=maybe")
    assert out.returncode == 2 and "malloc_tuning must be true or false" in out.stderr
