"""The configured pipeline: its stages in order."""

from __future__ import annotations

from twisted.internet import task
from zope.interface.verify import verifyObject

from xmail.auth.directory import Directory
from xmail.config import parse
from xmail.db.environment import IndexEnvironment
from xmail.filter.build import build_pipeline
from xmail.filter.interfaces import IDeliveryPipeline


def test_the_default_pipeline(tmp_path) -> None:
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    try:
        settings = parse(f"[server]\ndata_dir = \"{tmp_path}\"\n[filter]\nburst_per_minute = 30\n")
        pipeline = build_pipeline(settings, env, Directory(env, settings), task.Clock())
        assert verifyObject(IDeliveryPipeline, pipeline)
        assert [s.name for s in pipeline.stages] == ["lists", "authentication", "burst", "dkim-sign"]
    finally:
        env.close()
