"""Connection tokens: reading a JWT's `exp` (unverified: the server verifies; the client only
needs to know when to refresh), and calling the user's token source, sync or async."""

from __future__ import annotations

import base64
import inspect
import json
from typing import Awaitable, Callable, Union

TokenProvider = Callable[[], Union[str, Awaitable[str]]]


def jwt_exp(token: str) -> int | None:
    """The `exp` claim (seconds since the epoch) of a JWT, or None when it has none or is not one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return exp if isinstance(exp, int) else None


async def fetch_token(provider: TokenProvider) -> str:
    token = provider()
    if inspect.isawaitable(token):
        token = await token
    if not isinstance(token, str) or not token:
        raise TypeError("the token provider must return a non-empty string")
    return token
