"""The README's Python blocks run as written, top to bottom, in one namespace, so the docs cannot rot.

A block right after an ``<!-- not run -->`` line is deliberately partial and skipped. A block
added to the README later is run with no new test.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NOT_RUN = "<!-- not run -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def python_blocks(markdown: str) -> list[tuple[int, str]]:
    """(first line, code) of every ```python block that is not marked ``NOT_RUN`` on the line before it."""
    blocks = []
    for match in FENCE.finditer(markdown):
        before = markdown[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == NOT_RUN:
            continue
        blocks.append((markdown.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def run_blocks(blocks: list[tuple[int, str]], filename: str) -> dict:
    """Execute the blocks in order in one namespace; a traceback points at the README's own line."""
    namespace = {"__name__": "__readme__"}
    for line, code in blocks:
        exec(compile("\n" * (line - 1) + code, filename, "exec"), namespace)  # noqa: S102
    return namespace


def test_readme_python_blocks_run_top_to_bottom(tmp_path, monkeypatch, restore_registries):
    monkeypatch.chdir(tmp_path)  # a block may write a run folder under runs/
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3, "the README shows the Python API in runnable blocks"
    namespace = run_blocks(blocks, str(README))
    assert "model" in namespace and "params" in namespace


def test_an_undefined_name_fails_and_a_marked_block_is_skipped():
    broken = "Intro.\n\n```python\nx = 1\n```\n\ntext\n\n```python\nprint(x + y)\n```\n"
    blocks = python_blocks(broken)
    assert [line for line, _ in blocks] == [4, 10]
    with pytest.raises(NameError, match="'y' is not defined") as error:
        run_blocks(blocks, "README.md")
    assert error.traceback[-1].lineno + 1 == 10  # the README's line of the failing statement
    marked = broken.replace("text\n\n```python", f"text\n{NOT_RUN}\n```python")
    assert [code for _, code in python_blocks(marked)] == ["x = 1\n"]
    assert run_blocks(python_blocks(marked), "README.md")["x"] == 1


def test_the_first_commands_are_preceded_by_clone_and_cd():
    text = README.read_text(encoding="utf-8")
    before = text[: text.index("```bash")].lower()
    assert "clone" in before and "`cd`" in before, "say to clone the repository and cd into it before `pip install .`"
