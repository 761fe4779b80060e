"""threads=auto: the cores that are free when a run starts."""

from __future__ import annotations

import logging

import pytest

from runner import cpu_load


@pytest.mark.parametrize(("busy", "threads"), [(0.1, 2), (0.9, 1), (1.6, 1), (None, 2)])
def test_auto_threads_takes_the_free_cores(monkeypatch, caplog, busy, threads):
    monkeypatch.setattr(cpu_load, "busy_cores", lambda interval_s=0.25: busy)
    with caplog.at_level(logging.WARNING, logger="dwx"):
        assert cpu_load.auto_threads(2) == threads
    assert ("the machine is busy" in caplog.text) == (threads < 2)


def test_busy_cores_sees_a_spinning_process():
    import subprocess
    import sys

    idle_or_not = cpu_load.busy_cores(0.3)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = cpu_load.busy_cores(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert idle_or_not is not None and busy is not None
    assert busy > 0.6  # the hog holds about one core of the machine
