"""Value parsers: one per kind of setting, shared by the TOML file and the environment.

A parser takes the raw value (a TOML value, or an environment variable's text) and
returns the typed value, or raises ``InvalidValue`` saying what is accepted. It does
not know where the value came from: ``load.py`` adds that (the variable or the key).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydicom.charset import python_encoding

from dicomweb_gw.settings.model import ApiKey

__all__ = ["InvalidValue", "Parser"]

#: Raw value in, typed value out; ``Any`` because each setting has its own type.
Parser = Callable[[object], Any]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: Shorter keys are guessable; 16 characters is the least a generated key has.
MIN_API_KEY_LENGTH = 16
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_ORIGIN = re.compile(r"^https?://[^/\s]+$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class InvalidValue(ValueError):
    """The value is not accepted; the message says what is (``must be ...``)."""


def word(value: object, what: str = "one non-empty word without spaces") -> str:
    """A single word: an issuer, audience, URL, scope name or host."""
    text = str(value).strip()
    if not text or any(ch.isspace() for ch in text):
        raise InvalidValue(f"must be {what}")
    return text


def host(value: object) -> str:
    return word(value, "a host name or IP address")


def node_name(value: object) -> str:
    text = str(value).strip()
    if not _NODE_NAME.match(text):
        raise InvalidValue("must be a node name of letters, digits, '-' and '_'")
    return text


def _whole_number(value: object, low: int, high: int | None, what: str) -> int:
    """An int from ``low`` to ``high``; otherwise ``must be {what}``."""
    # TOML's true would otherwise pass as 1.
    if isinstance(value, bool):
        raise InvalidValue(f"must be {what}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidValue(f"must be {what}") from None
    if number < low or (high is not None and number > high):
        raise InvalidValue(f"must be {what}")
    return number


def port(value: object) -> int:
    return _whole_number(value, 1, 65535, "a TCP port between 1 and 65535")


def positive_int(value: object) -> int:
    return _whole_number(value, 1, None, "a whole number of at least 1")


def _number_of_seconds(value: object) -> float:
    if isinstance(value, bool):
        raise InvalidValue("must be a number of seconds")
    try:
        return float(str(value).strip())
    except ValueError:
        raise InvalidValue("must be a number of seconds") from None


def seconds(value: object) -> float:
    """A duration in seconds, greater than 0."""
    number = _number_of_seconds(value)
    if not number > 0:  # also refuses NaN
        raise InvalidValue("must be a number of seconds greater than 0")
    return number


def seconds_or_off(value: object) -> float:
    """A duration in seconds; 0 turns the feature off."""
    number = _number_of_seconds(value)
    if not number >= 0:
        raise InvalidValue("must be a number of seconds, 0 or more (0: off)")
    return number


def size(value: object) -> int:
    """A byte count: ``1073741824``, ``500MB``, ``10GiB``, ``2G``."""
    match = _SIZE.match(str(value))
    if not match:
        raise InvalidValue("must be a size such as 10GB, 500MiB or 1048576")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    # KiB, MiB, ... are powers of 1024; K, KB, MB, ... powers of 1000.
    factor = 1024 ** "BKMGT".index(unit[:1]) if "I" in unit else _SIZE_UNITS[unit[:1]]
    count = int(number * factor)
    if count < 1:
        raise InvalidValue("must be at least 1 byte")
    return count


def ae_title(value: object) -> str:
    text = str(value).strip()
    # PS3.5 AE VR: at most 16 characters of the default repertoire, no backslash
    # or control characters, and not all spaces.
    if not text or len(text) > 16 or "\\" in text or not text.isascii() or not text.isprintable():
        raise InvalidValue("must be an AE title: 1 to 16 printable ASCII characters, "
                           "no backslash")
    return text


def choice(*options: str) -> Parser:
    """One of ``options``, case-insensitive."""
    accepted = " or ".join(f"'{option}'" for option in options)

    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text in options:
            return text
        raise InvalidValue(f"must be {accepted}")

    return parse


def boolean(value: object) -> bool:
    """A TOML boolean, or true/false (1/0, yes/no, on/off) from the environment."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, str) and text in _TRUE | _FALSE:
        return text in _TRUE
    raise InvalidValue("must be true or false (also 1/0, yes/no, on/off)")


def boolean_or_auto(value: object) -> bool | None:
    """``auto`` (None: the gateway finds out), or a boolean."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        return boolean(value)
    except InvalidValue:
        raise InvalidValue("must be 'auto', true or false") from None


def whole_number_or_off(value: object) -> int:
    """A count; 0 turns the feature off."""
    return _whole_number(value, 0, None, "a whole number, 0 or more (0: off)")


def seconds_or_default(value: object) -> float | None:
    """A duration in seconds greater than 0, or ``default`` (None)."""
    if str(value).strip().lower() == "default":
        return None
    try:
        return seconds(value)
    except InvalidValue:
        raise InvalidValue("must be a number of seconds greater than 0, or 'default'") from None


def charset(value: object) -> str:
    """A Specific Character Set defined term that pydicom can decode (``ISO_IR 100``)."""
    text = str(value).strip().upper()
    if not text or text not in python_encoding:
        raise InvalidValue("must be a Specific Character Set term such as 'ISO_IR 100' "
                           "(Latin-1), 'ISO_IR 192' (UTF-8) or 'GB18030'")
    return text


def path(value: object) -> Path:
    return Path(str(value).strip()).expanduser()


def _items(value: object) -> list[str]:
    """A TOML list, or a comma list (the environment's way of writing one)."""
    raw = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in raw if str(item).strip()]


def origins(value: object) -> tuple[str, ...]:
    """Browser origins: ``scheme://host[:port]``, or ``*`` for any (not recommended)."""
    found = tuple(item.rstrip("/") for item in _items(value))
    for origin in found:
        if origin != "*" and not _ORIGIN.match(origin):
            raise InvalidValue(f"'{origin}' is not an origin: must be like "
                               "https://viewer.example.org (a comma list)")
    return found


def open_paths(value: object) -> tuple[str, ...]:
    found = tuple(_items(value))
    for prefix in found:
        if not prefix.startswith("/") or any(ch.isspace() for ch in prefix):
            raise InvalidValue(f"'{prefix}' is not a path prefix: must be like /healthz "
                               "(a comma list)")
    return found


def api_keys(value: object) -> tuple[ApiKey, ...]:
    """A list of keys, or a file of keys (one a line, ``#`` comments) named by a value
    starting with ``/`` or ``@`` -- a mounted Kubernetes secret keeps keys out of the env.

    An item (or line) ``KEY admin`` marks the key admin (the status page and its
    actions); the keys are ``str`` as before, each with its ``admin`` flag.
    """
    text = "" if isinstance(value, list | tuple) else str(value).strip()
    items = _key_file_lines(text) if text.startswith(("/", "@")) else _items(value)
    admins: dict[str, bool] = {}
    for index, item in enumerate((i for i in items if i.strip()), 1):
        key, *roles = item.split()
        for role in roles:
            if role != "admin":
                # Not the role's text: a key pasted with a space would land in the message.
                raise InvalidValue(f"key #{index}: the only role a key may have is 'admin' "
                                   "(a line 'KEY admin')")
        admins[key] = admins.get(key, False) or bool(roles)
    keys = tuple(ApiKey(key, admin=admin) for key, admin in admins.items())
    for index, key in enumerate(keys, 1):
        # The message names the key by position only: keys must not reach logs.
        if len(key) < MIN_API_KEY_LENGTH or not key.isascii() or not key.isprintable() \
                or any(ch.isspace() or ch == "," for ch in key):
            raise InvalidValue(f"key #{index} must be at least {MIN_API_KEY_LENGTH} printable "
                               "ASCII characters without spaces or commas")
    return keys


def _key_file_lines(text: str) -> list[str]:
    file = Path(text.removeprefix("@")).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise InvalidValue(f"cannot read key file {file}: {reason}") from None
    items = [line.split("#", 1)[0] for line in lines]
    if not any(item.strip() for item in items):
        raise InvalidValue(f"key file {file} holds no key")
    return items


def audit_target(value: object) -> str:
    """``off``, ``stdout``, ``stderr`` or the path of a file to append to."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("must be off, stdout, stderr or a file path")
    text = value.strip()
    if text.lower() in ("off", "stdout", "stderr"):
        return text.lower()
    return str(Path(text).expanduser())


def redis_url(value: object) -> str:
    url = word(value, "a redis://, rediss:// or unix:// URL")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidValue("must start with redis://, rediss:// or unix://")
    return url


def shared_store(value: object) -> str:
    url = word(value, "file:///path, an absolute path or s3://bucket/prefix")
    if not url.startswith(("file://", "s3://", "/")):
        raise InvalidValue("must be file:///path, an absolute path or s3://bucket/prefix")
    return url


def jwks_url(value: object) -> str:
    text = word(value, "an https:// URL")
    url = urlsplit(text)
    # Keys fetched over plain HTTP could be swapped by anyone on the path; only
    # a loopback JWKS (a sidecar, the tests) may skip TLS.
    if url.scheme != "https" and not (url.scheme == "http" and url.hostname in LOOPBACK):
        raise InvalidValue("must be an https:// URL (http:// only for a loopback host)")
    if not url.hostname:
        raise InvalidValue("must be an https:// URL with a host")
    return text
