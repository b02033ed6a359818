"""The README's quick-start commands and CI must not drift apart."""

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
