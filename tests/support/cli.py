"""`xmailctl` in-process (xmail.cli.main with captured output) on a config
whose data directory holds example.com and its alias domain example.cn."""

from __future__ import annotations

import io
from pathlib import Path

from xmail import cli


def run(*argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `xmailctl ARGV`."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=stdout, stderr=stderr, stdin=io.StringIO())
    return status, stdout.getvalue(), stderr.getvalue()


def hosting_config(tmp_path: Path, toml: str) -> str:
    """`toml` with data_dir under tmp_path, example.com hosted and
    example.cn its alias domain; the config file's path."""
    path = tmp_path / "xmail.toml"
    path.write_text(toml.replace("[server]\n", f'[server]\ndata_dir = "{tmp_path / "data"}"\n'))
    assert run("--config", str(path), "domain", "add", "example.com")[0] == 0
    assert run("--config", str(path), "domain", "alias", "example.cn", "--to", "example.com")[0] == 0
    return str(path)
