"""Secrets at rest: every secret field of a connection config or webhook is stored Fernet-encrypted.

`SYNCJOBS_SECRET_KEYS` holds one or more Fernet keys, comma-separated: the first encrypts, all decrypt
(`MultiFernet`), so a key is rotated by putting a new one first and running `syncjobs secrets rotate`.
A stored secret is the string `fernet:<token>`; which values are secret is decided by
`shared.secret_fields` (secret by default where secrets hide), the same rule that redacts them in answers.
The process installs its keys once at start (`install_keys`); the stores seal
on write, and only the code that must use a secret (the executor, the webhook signer) opens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from syncjobs.shared.secret_fields import SEALED_PREFIX, map_secrets

KEYS_VARIABLE = "SYNCJOBS_SECRET_KEYS"


class SecretKeyError(Exception):
    """No key installed, a malformed key, or a stored secret no installed key opens."""


_keys: MultiFernet | None = None


def parse_keys(raw: str | Iterable[str]) -> tuple[str, ...]:
    """The keys of `SYNCJOBS_SECRET_KEYS`, each checked to be a Fernet key (url-safe base64 of 32 bytes)."""
    keys = tuple(k.strip() for k in (raw.split(",") if isinstance(raw, str) else raw) if k.strip())
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise SecretKeyError(
                f"{KEYS_VARIABLE}: key {position} is not a Fernet key (32 url-safe base64 bytes)"
            ) from None
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


def install_keys(keys: Iterable[str]) -> None:
    """Make `keys` this process's keys (first encrypts); refuses an empty list."""
    global _keys
    parsed = parse_keys(list(keys))
    if not parsed:
        raise SecretKeyError(
            f"{KEYS_VARIABLE} is not set: secrets are stored encrypted, give this process the key they were "
            "stored with (`syncjobs up` keeps it in its data dir: `syncjobs exec --data-dir DIR` reads it there); "
            'only a new deployment makes one: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        )
    _keys = MultiFernet([Fernet(key) for key in parsed])


def _installed() -> MultiFernet:
    if _keys is None:
        raise SecretKeyError(f"no secret key installed ({KEYS_VARIABLE})")
    return _keys


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def seal(value: str) -> str:
    return SEALED_PREFIX + _installed().encrypt(value.encode()).decode()


def open_sealed(value: str) -> str:
    """The clear text of a sealed value; a value stored before encryption existed comes back as it is."""
    if not is_sealed(value):
        return value
    try:
        return _installed().decrypt(value[len(SEALED_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise SecretKeyError(
            f"a stored secret cannot be decrypted with any key in {KEYS_VARIABLE} (not the key it was stored with)"
        ) from None


def reseal(value: str) -> str:
    """Re-encrypt under the first key (clear legacy values get encrypted)."""
    if not is_sealed(value):
        return seal(value)
    return SEALED_PREFIX + _installed().rotate(value[len(SEALED_PREFIX) :].encode()).decode()


def seal_config(config: Any) -> Any:
    """`config` with every string under a secret key encrypted (already sealed ones are left as they are)."""
    return map_secrets(config, lambda v: v if is_sealed(v) else seal(v))


def open_config(config: Any) -> Any:
    """`config` with every sealed secret decrypted: for the executor, never for an answer or a log."""
    return map_secrets(config, open_sealed)


def reseal_config(config: Any) -> Any:
    return map_secrets(config, reseal)
