"""Names for people and keys that group rows without naming anyone: an HMAC-SHA-256 keyed with
the deployment's PSEUDONYM_SECRET. A plain hash of an account number or an e-mail is undone by
hashing every candidate; without the secret, a pseudonym cannot be."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from pydantic import SecretStr

logger = logging.getLogger(__name__)
# Without PSEUDONYM_SECRET, one made for this process: its rows group among themselves only.
_PROCESS_SECRET = secrets.token_bytes(32)


class Pseudonyms:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes):
        self._secret = secret

    @classmethod
    def keyed(cls, secret: SecretStr | None) -> Pseudonyms:
        """Keyed with PSEUDONYM_SECRET, or without it with this process's own."""
        return cls(_PROCESS_SECRET if secret is None else secret.get_secret_value().encode())

    def name(self, value: str, hex_digits: int = 16) -> str:
        """`value`'s pseudonym; surrogatepass: an id is named as sent, whatever its characters."""
        data = value.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:hex_digits]

    def key_id(self, key: str) -> str:
        """A key's id in the audit trail and the logs: 12 hex digits, never the key."""
        return self.name(key, 12)


PER_PROCESS = Pseudonyms.keyed(None)


def warn_if_per_process(secret: SecretStr | None) -> None:
    if secret is None:
        logger.warning(
            "PSEUDONYM_SECRET is not set: user and key ids in the logs are keyed for this "
            "process only, and will not match another replica's or the next start's"
        )
