"""The operator console for nodes: stored records beside their live state in Redis, the operator actions
(drain, undrain, disconnect), the event history, and node tokens.

Live state is read through `nodes.services`, once per page, and every action calls a service: the admin
never writes Redis or a status itself.
"""

from nodes.admin import nodes, tokens  # noqa: F401  (registers the model admins)
from nodes.admin.live import RECENT_EVENTS, REDIS_DOWN_WARNING

__all__ = ["RECENT_EVENTS", "REDIS_DOWN_WARNING"]
