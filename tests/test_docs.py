"""The documentation site builds with warnings as errors (``make docs``), including the generated
config reference and the API reference."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_mkdocs = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                                  reason="mkdocs is not installed (pip install -e .[dev] installs it)")


def _mkdocs() -> list[str]:
    exe = Path(sys.executable).with_name("mkdocs")  # the venv's mkdocs, next to its python
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mkdocs"]


@needs_mkdocs
def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([*_mkdocs(), "build", "--strict", "-d", str(site)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    config = (site / "config" / "index.html").read_text(encoding="utf-8")
    assert "Config reference" in config
    for section in ("section-task", "section-rule", "section-run", "section-modulator"):
        assert f'id="{section}"' in config, f"config reference lacks the {section} table"
    assert config.count("<table>") >= 5
    rules = (site / "api" / "rules" / "index.html").read_text(encoding="utf-8")
    assert 'id="neuroprobe.rules.nrl.NRL"' in rules  # a class documented from its docstring
    traces = (site / "api" / "traces" / "index.html").read_text(encoding="utf-8")
    assert 'id="neuroprobe.traces.kernels.cascade_kernel"' in traces
    for page in ("index.html", "concepts/index.html", "architecture/index.html", "results/index.html"):
        assert (site / page).is_file(), page
    assert not (site / "hooks").exists(), "the hook's source must not be published"


def test_config_reference_renders_a_schema():
    """The generator behind config.md, on a small typed config (independent of the real one)."""
    from typing import Annotated, Literal, Optional, Union

    from pydantic import BaseModel, ConfigDict, Field

    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "docs" / "hooks" / "config_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    class A(Strict):
        name: Literal["a1", "a2"]
        lr: Annotated[float, Field(gt=0)]
        """Learning rate | step size."""

    class B(Strict):
        name: Literal["b"]
        k: Annotated[int, Field(ge=1, le=2**62)] = 3

    class Run(Strict):
        progress: bool = True
        backend: Literal["torch", "brian2"] = "torch"

    class Exp(Strict):
        """Top."""

        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
        rule: Annotated[Union[A, B], Field(discriminator="name")]
        run: Run = Field(default_factory=Run)
        note: Optional[str] = None

    md = mod.render_markdown(Exp.model_json_schema())
    assert "## Top level {#top-level}" in md and "## `[rule]` {#section-rule}" in md
    assert '### `rule`: name ∈ {"a1", "a2"}' in md and '### `rule`: name = "b"' in md
    assert "| `lr` | number | *required* | > 0 | Learning rate \\| step size. |" in md
    assert "| `k` | integer | `3` | >= 1, <= 2^62 |  |" in md
    assert "| `seed` | integer | `0` | >= 0, <= 2^31 − 1 |  |" in md
    assert '| `backend` | string | `"torch"` | one of `"torch"`, `"brian2"` |  |' in md
    assert "| `run` | table ([run](#section-run)) | its keys' defaults |" in md
    with pytest.raises(mod.SchemaError):
        mod.render_markdown({"type": "string"})
