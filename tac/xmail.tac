# twistd -ny tac/xmail.tac — the same service as `twistd xmail`;
# the config file comes from $XMAIL_CONFIG (unset: the embedded default).
import os

from twisted.application import service

from xmail.config import ConfigError, load
from xmail.workers.supervisor import twistd_service

try:
    settings = load(os.environ.get("XMAIL_CONFIG") or None)
except ConfigError as e:
    raise SystemExit(f"xmail: {e}") from None

application = service.Application("xmail")
# The supervisor and its workers when [server] workers > 1, as `twistd xmail`;
# a port in use, an unreadable certificate or data_dir: one line, exit 1.
twistd_service(settings).setServiceParent(application)
