"""Saving submitted mail into the sender's Sent folder."""

from xmail.sendsave.saver import SendSaver

__all__ = ["SendSaver"]
