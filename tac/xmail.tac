# twistd -ny tac/xmail.tac — the same service as `twistd xmail`;
# the config file comes from $XMAIL_CONFIG (unset: the embedded default).
import os

from twisted.application import service

from xmail.config import ConfigError, load
from xmail.service import stop_cleanly_on_sigterm
from xmail.workers.supervisor import make_daemon_service

try:
    settings = load(os.environ.get("XMAIL_CONFIG") or None)
except ConfigError as e:
    raise SystemExit(f"xmail: {e}") from None

application = service.Application("xmail")
# The supervisor and its workers when [server] workers > 1, as `twistd xmail`.
make_daemon_service(settings).setServiceParent(application)
stop_cleanly_on_sigterm()
