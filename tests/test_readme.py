"""README's quick start and .ci/run stay the same commands (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_second_quick_start_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert blocks[2] == ci  # install+run, first xmailctl commands, then the CI command
    assert "ruff check xmail tests bench" in ci


def test_readme_links_stay_inside_the_repository() -> None:
    assert "../" not in (REPO / "README.md").read_text()
