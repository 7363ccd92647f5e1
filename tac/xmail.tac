# twistd -ny tac/xmail.tac — the same service as `twistd xmail`;
# the config file comes from $XMAIL_CONFIG (unset: the embedded default).
import os

from twisted.application import service

from xmail.config import load
from xmail.service import makeService

application = service.Application("xmail")
makeService(load(os.environ.get("XMAIL_CONFIG") or None)).setServiceParent(application)
