"""Tests of the cached, md5-checked downloader with ``file://`` URLs (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tqdm import tqdm

from shf.data.download import cache_dir, fetch, file_md5
from shf.errors import ConfigError, DataError

UNREACHABLE = "http://127.0.0.1:9/x"


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    """A 200 kB file to 'download' and its md5."""
    src = tmp_path / "src" / "payload.bin"
    src.parent.mkdir()
    data = bytes(range(256)) * 800
    src.write_bytes(data)
    return src, hashlib.md5(data).hexdigest()


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHF_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "shf"
    monkeypatch.setenv("SHF_DATA_DIR", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert cache_dir("~/x") == tmp_path / "home" / "x"


def test_fetch_file_url(tmp_path: Path, source: tuple[Path, str]) -> None:
    src, md5 = source
    cache = tmp_path / "cache" / "sub"
    p = fetch([src.as_uri()], "payload.bin", md5, cache, progress=False)
    assert p == cache / "payload.bin" and p.read_bytes() == src.read_bytes()
    assert sorted(x.name for x in cache.iterdir()) == ["payload.bin"]  # no temporary files left


def test_fetch_with_progress_bar(
    tmp_path: Path, source: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    src, md5 = source
    fetch(src.as_uri(), "payload.bin", md5, tmp_path / "c", progress=True)
    out = capsys.readouterr()
    assert out.out == ""  # the bar goes to stderr only


def test_fetch_falls_back_to_next_mirror(tmp_path: Path, source: tuple[Path, str]) -> None:
    src, md5 = source
    missing = (tmp_path / "nope.bin").as_uri()
    p = fetch([UNREACHABLE, missing, src.as_uri()], "payload.bin", md5, tmp_path / "c", progress=False)
    assert file_md5(p) == md5


def test_fetch_wrong_md5_leaves_nothing(tmp_path: Path, source: tuple[Path, str]) -> None:
    src, _ = source
    cache = tmp_path / "c"
    with pytest.raises(DataError) as info:
        fetch([src.as_uri()], "payload.bin", "0" * 32, cache, progress=False)
    msg = str(info.value)
    assert "md5 of the downloaded file" in msg and src.as_uri() in msg and str(cache) in msg
    assert list(cache.iterdir()) == []


def test_fetch_unreachable_names_url_and_directory(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    with pytest.raises(DataError) as info:
        fetch([UNREACHABLE, "http://127.0.0.1:9/y"], "thing.gz", "a" * 32, cache, progress=False, timeout=5)
    msg = str(info.value)
    assert UNREACHABLE in msg and "http://127.0.0.1:9/y" in msg
    assert "thing.gz" in msg and str(cache) in msg and "by hand" in msg
    assert list(cache.iterdir()) == []


def test_fetch_uses_cached_file_without_network(tmp_path: Path, source: tuple[Path, str]) -> None:
    src, md5 = source
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "payload.bin").write_bytes(src.read_bytes())
    assert fetch([UNREACHABLE], "payload.bin", md5, cache, progress=False) == cache / "payload.bin"


def test_fetch_replaces_wrong_cached_file(tmp_path: Path, source: tuple[Path, str]) -> None:
    src, md5 = source
    cache = tmp_path / "c"
    cache.mkdir()
    (cache / "payload.bin").write_bytes(b"stale")
    p = fetch([src.as_uri()], "payload.bin", md5, cache, progress=False)
    assert file_md5(p) == md5
    aside = cache / f"payload.bin.md5-{hashlib.md5(b'stale').hexdigest()}"
    assert aside.read_bytes() == b"stale"  # moved aside, never deleted: it may be the user's
    aside.unlink()
    (cache / "payload.bin").write_bytes(b"stale")
    with pytest.raises(DataError):
        fetch([UNREACHABLE], "payload.bin", md5, cache, progress=False)
    assert not (cache / "payload.bin").exists()  # a wrong file is not used
    assert aside.read_bytes() == b"stale"


def test_fetch_env_cache_dir(
    tmp_path: Path, source: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, md5 = source
    monkeypatch.setenv("SHF_DATA_DIR", str(tmp_path / "env"))
    p = fetch([src.as_uri()], "payload.bin", md5, progress=False)
    assert p == tmp_path / "env" / "payload.bin"


def test_fetch_removes_partial_file_on_interrupt(
    tmp_path: Path, source: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, md5 = source
    cache = tmp_path / "c"

    def boom(self: object, n: int = 1) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tqdm, "update", boom)
    with pytest.raises(KeyboardInterrupt):
        fetch([src.as_uri()], "payload.bin", md5, cache, progress=False)
    assert list(cache.iterdir()) == []


def test_fetch_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one URL"):
        fetch([], "x", None, tmp_path)
    with pytest.raises(ConfigError, match="plain file name"):
        fetch(["file:///x"], "a/b", None, tmp_path)
    with pytest.raises(ConfigError, match="32 hexadecimal"):
        fetch(["file:///x"], "x", "abc", tmp_path)
