"""The README's quick-start commands and CI must not drift apart."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = text.split("```sh\n")[1:3]  # the two quick-start commands
    return [block.split("\n```")[0].strip() for block in blocks]


def test_ci_runs_exactly_the_readme_test_command():
    demo, tests = readme_commands()
    assert tests.endswith("python -m pytest && python -m pytest -m slow")
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert tests in ci_lines


def test_demo_command_trains_and_translates_hello_world():
    demo, _ = readme_commands()
    assert "pip install torch==2.13.0" in demo
    assert demo.endswith('tt train && tt translate "你好世界!" && tt translate --probs "你好世界!"')


def test_reading_the_code_table_matches_the_layout():
    """Every module of model/ and data/ has its row in "Reading the code", and every row names a real file."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reading the code", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `((?:model|data|cli)/[a-z0-9_]+\.py)` \|", section, flags=re.M))
    modules = {f"{folder}/{path.name}" for folder in ("model", "data") for path in (ROOT / folder).glob("*.py") if path.name != "__init__.py"}
    assert modules - listed == set(), "modules missing from README's table"
    assert {name for name in listed if not (ROOT / name).exists()} == set(), "rows naming no file"
