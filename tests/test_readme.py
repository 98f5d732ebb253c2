"""The README's Python examples run as written (in one namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

import torch


def test_readme_python_examples_run(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    threads = torch.get_num_threads()
    try:
        for code in blocks:
            exec(
                compile(code.replace("/tmp/shf-checkpoint.pt", str(tmp_path / "c.pt")), "README", "exec"),
                namespace,
            )
    finally:
        torch.set_num_threads(threads)
    p = namespace["fit"].p.data  # type: ignore[attr-defined]
    torch.testing.assert_close(p, torch.tensor([2.0, 1.3, 0.5], dtype=torch.float64), rtol=0.03, atol=0.03)
