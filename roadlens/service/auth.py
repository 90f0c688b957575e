"""API keys with scopes: ``read`` < ``operate`` < ``admin``.

Keys come from ``ROADLENS_API_KEYS`` (``key:scope,key2:scope``; the environment is where
secrets live) and/or a hashed key file (``ROADLENS_API_KEY_FILE``), one key per line::

    # name  scope  scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>
    ops-dashboard operate scrypt$16384$8$1$9f...$4c...

Make a line with ``python -m roadlens.service.auth NAME SCOPE`` (reads the key from stdin
or generates one). A presented key is checked against every hashed entry with
:func:`hashlib.scrypt` and :func:`hmac.compare_digest`; results (also failures) are
cached by the key's SHA-256, so a valid key costs one scrypt per server process.

No key configured at all is *open mode*: every request gets ``admin``, but only from a
loopback client (and ``roadlens serve`` only binds to loopback then).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections import OrderedDict
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class Scope(IntEnum):
    """Scopes are ordered: a key satisfies every scope up to its own."""

    READ = 1
    OPERATE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown scope {text!r}; expected read, operate or admin") from None


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``name`` (never the key itself) and the key's scope."""

    name: str
    scope: Scope


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_key(key: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``key`` (hex), the key file's third column."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_key(key: str, encoded: str) -> bool:
    """Whether ``key`` matches a :func:`hash_key` string (constant-time compare)."""
    try:
        algo, n, r, p, salt, digest = encoded.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            key.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
        return hmac.compare_digest(got, bytes.fromhex(digest))
    except (ValueError, MemoryError):
        return False


@dataclass(frozen=True)
class _HashedEntry:
    name: str
    scope: Scope
    encoded: str


class KeyStore:
    """Resolves presented keys to principals.

    Args:
        env_keys: ``ROADLENS_API_KEYS`` (``key:scope,...``).
        key_file: Path of a hashed key file, or None.

    Raises:
        ValueError: a malformed entry (the message names it, never the key).
    """

    def __init__(self, env_keys: str = "", key_file: Path | None = None) -> None:
        self._plain: dict[bytes, Principal] = {}
        for i, item in enumerate(p for p in env_keys.split(",") if p.strip()):
            key, sep, scope = item.strip().rpartition(":")
            if not sep or not key:
                raise ValueError(f"ROADLENS_API_KEYS entry {i + 1} is not key:scope")
            digest = hashlib.sha256(key.encode()).digest()
            self._plain[digest] = Principal(f"env-key-{i + 1}", Scope.parse(scope))
        self._hashed: list[_HashedEntry] = []
        if key_file is not None:
            for n, line in enumerate(Path(key_file).read_text().splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 3 or not parts[2].startswith("scrypt$"):
                    raise ValueError(f"{key_file}:{n}: expected 'name scope scrypt$...'")
                self._hashed.append(_HashedEntry(parts[0], Scope.parse(parts[1]), parts[2]))
        self._cache: OrderedDict[bytes, Principal | None] = OrderedDict()

    @property
    def open_mode(self) -> bool:
        """True when no key is configured (every loopback request is allowed)."""
        return not self._plain and not self._hashed

    def lookup(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is not a configured key."""
        digest = hashlib.sha256(key.encode()).digest()
        for known, principal in self._plain.items():
            if hmac.compare_digest(known, digest):
                return principal
        if not self._hashed:
            return None
        if digest in self._cache:
            self._cache.move_to_end(digest)
            return self._cache[digest]
        found = next(
            (Principal(e.name, e.scope) for e in self._hashed if verify_key(key, e.encoded)), None
        )
        self._cache[digest] = found
        if len(self._cache) > 4096:
            self._cache.popitem(last=False)
        return found


def main(argv: list[str] | None = None) -> int:
    """``python -m roadlens.service.auth NAME SCOPE``: print a key file line (and the key)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m roadlens.service.auth NAME SCOPE  (key on stdin, or generated)")
        return 2
    name, scope = args
    Scope.parse(scope)
    key = "" if sys.stdin.isatty() else sys.stdin.read().strip()
    if not key:
        key = secrets.token_urlsafe(32)
        print(f"# key (give it to the client, it is not stored): {key}", file=sys.stderr)
    print(f"{name} {scope.lower()} {hash_key(key)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
