"""The bearer-token check: constant-time comparison against every configured token."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from service.errors import Unauthenticated


class TokenCheck:
    """Accepts `Bearer <token>` naming one of the configured tokens; tokens are kept only as SHA-256 digests."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(token.encode()).digest() for token in tokens]
        if not self._digests:
            raise ValueError("at least one token is required")

    def accepts(self, header: str | None) -> bool:
        """Whether the header carries a valid token; compares against every token in constant time."""
        scheme, _, token = (header or "").partition(" ")
        given = hashlib.sha256(token.strip().encode()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return scheme.lower() == "bearer" and bool(token.strip()) and matched

    def require(self, header: str | None) -> None:
        """Raise Unauthenticated (saying whether the token was missing or wrong) unless the header is valid."""
        if self.accepts(header):
            return
        problem = "missing" if header is None else "invalid"
        raise Unauthenticated(
            f"{problem} credentials: send the header 'authorization: Bearer <token>'",
            metadata={"problem": problem},
        )
