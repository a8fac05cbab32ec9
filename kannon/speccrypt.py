"""Hand-off specs are sealed with a per-run key (AES-256-GCM), so a spec file, object or inline env value shows
nothing of a task's private parameters or the master's config to whoever can read where it travels.

The key travels to children as the ``KANNON_SPEC_KEY`` secret (``RunInfo.secrets``: each backend's safe delivery),
never next to the spec. It is kept for the whole run in the run directory (``spec.key``, mode 0600): a master that
re-attaches after a crash must open and re-seal specs for the Jobs it adopts, whose Secret/env carries that key.
The spec's sha256 (command line, adoption hash) is taken of the plaintext, so it stays a function of the task's
content however often it is sealed (every sealing draws a fresh nonce).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import zlib
from pathlib import Path

# At import, not at first use: a fork server or warm pod image imports the child (kannon.child imports this module)
# once, and every child forked from it would otherwise import cryptography again (~10 ms of a no-op child).
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "KANNON_SPEC_KEY"
KEY_FILE = "spec.key"
_MAGIC = b"KSE1"  # kannon sealed spec, version 1; also the AEAD's associated data
_NONCE = 12
_MAX_PLAIN = 256 * 1024 * 1024  # what a child will inflate at most (storage.read_bytes caps the sealed size too)


class SpecKeyError(Exception):
    """The spec key is missing or malformed, or the spec does not open with it (altered, or sealed with another)."""


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def run_key(run_dir: Path) -> str:
    """The run's key: read from ``run_dir/spec.key``, or drawn and written there (0600).

    The file appears whole or not at all -- written under a name of its own, then hard-linked into place, which
    fails if another master of the run got there first (its key is then read) -- so a master started at the same
    moment never reads an empty key."""
    path = run_dir / KEY_FILE
    run_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = new_key()
        tmp = run_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            _write_new(tmp, key)
            os.link(tmp, path)
            return key
        except FileExistsError:
            pass  # another master's key is in place
        except OSError:  # a file system without hard links: create it in place (empty for a moment)
            with contextlib.suppress(FileExistsError):
                _write_new(path, key)
                return key
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text(encoding="ascii").strip()
    try:
        _decode_key(key)  # a damaged file fails here, in the master, not in every child
    except SpecKeyError as e:
        raise SpecKeyError(f"the run's spec key {path} is damaged ({e}); delete it (the run's specs are written "
                           "again with a new key) and rerun") from e  # fmt: skip
    return key


def _write_new(path: Path, key: str) -> None:
    """``key`` into a file that must not exist yet, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key)


def _decode_key(key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise SpecKeyError(f"{KEY_ENV} is not a base64 key ({e})") from e
    if len(raw) != 32:
        raise SpecKeyError(f"{KEY_ENV} must hold 32 bytes, not {len(raw)}")
    return raw


def seal(data: bytes, key: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return _MAGIC + nonce + AESGCM(_decode_key(key)).encrypt(nonce, zlib.compress(data, 9), _MAGIC)


def open_sealed(blob: bytes, key: str | None) -> bytes:
    """The plaintext of a sealed spec (child side); SpecKeyError says what is wrong in one sentence.

    A plain JSON spec (written by hand or by a tool, never by the master) is returned as it is: the sha256 on the
    command line authenticates it, and someone who could make one that matches could already read the spec."""
    if not blob.startswith(_MAGIC):
        return blob
    if not key:
        raise SpecKeyError(
            f"{KEY_ENV} is not set in the child's environment: the backend did not deliver the run's secrets"
        )
    if len(blob) < len(_MAGIC) + _NONCE + 16:
        raise SpecKeyError("the sealed spec is truncated")
    nonce, body = blob[len(_MAGIC) : len(_MAGIC) + _NONCE], blob[len(_MAGIC) + _NONCE :]
    try:
        packed = AESGCM(_decode_key(key)).decrypt(nonce, body, _MAGIC)
    except InvalidTag as e:
        raise SpecKeyError(
            f"the spec does not verify with {KEY_ENV}: it was altered, or sealed for another run's key"
        ) from e
    inflate = zlib.decompressobj()
    data = inflate.decompress(packed, _MAX_PLAIN)
    if inflate.unconsumed_tail:
        raise SpecKeyError(f"the spec inflates beyond {_MAX_PLAIN} bytes")
    return data
