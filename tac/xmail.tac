# twistd -ny tac/xmail.tac — the same service as `twistd xmail`;
# the config file comes from $XMAIL_CONFIG (unset: the embedded default).
import os

from twisted.application import service

from xmail.config import ConfigError, load
from xmail.service import makeService, stop_cleanly_on_sigterm

try:
    settings = load(os.environ.get("XMAIL_CONFIG") or None)
except ConfigError as e:
    raise SystemExit(f"xmail: {e}") from None

application = service.Application("xmail")
makeService(settings).setServiceParent(application)
stop_cleanly_on_sigterm()
