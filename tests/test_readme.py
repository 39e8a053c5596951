"""The README's Python example runs as written (CPU, reference provider) and its test command
is the one .ci/run runs."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    env: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), env)  # noqa: S102 - our own README
    out, top = env["out"], env["top"]
    assert out.shape == (2, 1, 16, 512)
    assert bool(((top >= 0).sum(1) == 300).all())  # contexts shorter than k: every key, then -1


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = re.search(r"## Run the tests\s+```bash\n(.*?)\n```", readme, re.S).group(1).strip()
    assert cmd in ci.splitlines()[-1] or cmd == ci.strip().splitlines()[-1].strip()
