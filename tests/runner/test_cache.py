from __future__ import annotations

import torch

from runner.cache import cache_path, cached


def test_cached_builds_once_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"x": torch.arange(3), "n": 3}

    a = cached("demo", {"seed": 1}, build)
    b = cached("demo", {"seed": 1}, build)
    c = cached("demo", {"seed": 2}, build)
    assert len(calls) == 2 and torch.equal(a["x"], b["x"]) and b["n"] == 3 and c["n"] == 3
    assert cache_path("demo", {"seed": 1}).parent == tmp_path / "demo"


def test_corrupt_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("DWX_CACHE", str(tmp_path))
    path = cache_path("demo", {"seed": 1})
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    assert cached("demo", {"seed": 1}, lambda: {"ok": 1}) == {"ok": 1}


def test_a_killed_generation_leaves_no_temporary_file_behind(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("DWX_CACHE", str(tmp_path))
    path = cache_path("demo", {"seed": 1})
    path.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = path.with_name(f".{path.name}.tmp{dead.pid}")
    stale.write_bytes(b"half a file")
    cached("demo", {"seed": 1}, lambda: {"ok": 1})
    assert not stale.exists() and path.is_file()


def test_generation_progress_says_what_and_how_long(caplog):
    import logging

    from runner.cache import GenerationProgress

    with caplog.at_level(logging.INFO, logger="dwx"):
        progress = GenerationProgress(3, "street videos", every_s=3600)
        for _ in range(3):
            progress.done_one()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("generating 3 street videos once")
    assert len(lines) == 2 and lines[1].startswith("generated 3/3 street videos in")  # the last always logs
