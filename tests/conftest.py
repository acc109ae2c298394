from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from distribute.config import Settings, load_settings

# Locally every run explores new examples; CI explores a fixed set, so that a submission is
# judged on its code rather than on the luck of the draw. The examples a test asks for
# (2,000 for the header property) are the same count either way.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEED = SHARED / "seeds" / "000_3b1625be7b745785.txt"
EXAMPLE = ROOT / "releases" / "hydrogen.md"


@pytest.fixture
def seed_path() -> Path:
    """The press office's real release; it lives outside the project, so skip without it."""
    if not SEED.is_file():
        pytest.skip("../shared/seeds is not beside this checkout")
    return SEED


@pytest.fixture
def example_path() -> Path:
    return EXAMPLE


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace as the current folder, so nothing reads the developer's own files."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings(workspace: Path) -> Settings:
    (workspace / "distribute.toml").write_text(
        '[sender]\nfrom = "Valmont Press Office <press@example.org>"\n'
        '[unsubscribe]\nmailto = "unsubscribe@example.org"\n'
        'url = "https://www.example.org/unsubscribe?email={email}"\n',
        encoding="utf-8",
    )
    return load_settings(workspace=workspace)
