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
