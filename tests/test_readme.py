"""The README's Python examples run, and its first lines give the two set-up commands CI uses."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_commands_match_ci():
    first = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "sft figures --quick" in first
    test_cmd = re.search(r"(pip install -e \"\.\[test\]\" && pytest -q)", first).group(1)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
