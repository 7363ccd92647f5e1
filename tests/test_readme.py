"""README stays true (issue 14, issue 16's operator items): the quick start
and .ci/run are the same command, links stay inside the repository, the
configuration block shows the real defaults, every dependency has a row,
and twistd's pid file does not land in the checkout."""

from __future__ import annotations

import configparser
import dataclasses
import re
import tomllib
from pathlib import Path

from xmail.config import Settings, parse

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_ci_runs_exactly_the_second_quick_start_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert blocks[2] == ci  # install+run, first xmailctl commands, then the CI command
    assert "ruff check xmail tests bench" in ci


def test_readme_links_stay_inside_the_repository() -> None:
    assert "../" not in README


def _config_block() -> str:
    section = README.split("## Configuration", 1)[1]
    return re.findall(r"```toml\n(.*?)\n```", section, re.S)[0]


def test_the_configuration_block_shows_the_defaults() -> None:
    # Issue 16: it said "defaults as below" over production values.
    block = _config_block()
    shown = parse(block, "README.md")
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        if field.name != "source":
            assert getattr(shown, field.name) == getattr(defaults, field.name), field.name
    # Every key of every section shown is there (only [[tls.sni]], a list of
    # tables with no default entry, is a comment).
    document = tomllib.loads(block)
    for name, values in document.items():
        section = getattr(defaults, name)
        if dataclasses.is_dataclass(section):
            keys = {f.name for f in dataclasses.fields(section)} - {"sni"}
            assert keys <= set(values), (name, keys - set(values))


def test_every_dependency_has_a_row_in_the_table() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    table = README.split("| package | why |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| ")]
    for requirement in cfg["options"]["install_requires"].split():
        name = re.split(r"[\[<>=]", requirement, maxsplit=1)[0]
        assert any(name in row for row in rows), f"{name} has no row in README's dependency table"


def test_twistd_pid_stays_out_of_the_checkout() -> None:
    assert "twistd.pid" in (REPO / ".gitignore").read_text().split()
    assert "twistd -n --pidfile= xmail" in README


def test_hardening_table_names_tests_that_exist() -> None:
    # docs/hardening.md maps each issue-16 item to its tests: every
    # `file::name` (or `::name`, in the file named before it) must exist.
    text = (REPO / "docs" / "hardening.md").read_text()
    assert "(docs/hardening.md)" in README or "`docs/hardening.md`" in README
    current = None
    checked = 0
    for ref in re.findall(r"`((?:tests/[\w/]+\.py)?(?:::\w+)?)`", text):
        path, _, name = ref.partition("::")
        if path:
            current = REPO / path
            assert current.is_file(), path
        if name:
            assert current is not None, ref
            source = current.read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{current.name}::{name}"
            checked += 1
    assert checked > 60
