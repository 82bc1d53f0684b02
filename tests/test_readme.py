"""The README's Python quick start runs as written."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_quick_start_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["y"].shape == (8, 1024)
    assert scope["kernel"].argmax().item() == 20
    assert scope["a"].shape == (5,)
    assert scope["back"].rule == scope["rule"] and scope["back"].rule.kernel.order == 6
    assert scope["back"].spec == scope["snn"].spec
