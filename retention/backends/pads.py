"""The HMAC pads PostgreSQL and MySQL hash with: ``H((K ^ opad) || H((K ^ ipad) || m))``
(RFC 2104) computed in SQL from the built-in SHA-256, with the two padded keys bound as
parameters. They are secrets: bound, never rendered, and engines hide parameters."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

_BLOCK = 64  # SHA-256 block size in bytes


@dataclass(frozen=True)
class HmacKeys:
    """The HMAC inner and outer padded keys."""

    inner: bytes
    outer: bytes

    @classmethod
    def from_key(cls, key: bytes) -> HmacKeys:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        return cls(bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key))


@functools.lru_cache(maxsize=4)
def hmac_pads(key: bytes) -> HmacKeys:
    """The pads of ``key``, derived once: every batch of every rule binds them."""
    return HmacKeys.from_key(key)


def hmac_params(key: bytes) -> dict[str, bytes]:
    """The pads as the bound parameters the hash strategy's SQL names."""
    pads = hmac_pads(key)
    return {"hmac_inner": pads.inner, "hmac_outer": pads.outer}
