"""The request id of the call being handled, taken from the caller when it sends a safe one."""

from __future__ import annotations

import contextvars
import re
import uuid

REQUEST_ID_HEADER = "x-request-id"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def begin_call(incoming: object) -> str:
    """Set and return the call's request id: the caller's when it is safe to log, else a new random one."""
    rid = incoming if isinstance(incoming, str) and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request_id.set(rid)
    return rid
