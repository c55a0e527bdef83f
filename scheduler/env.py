"""Typed readers of environment variables, shared by `scheduler/settings.py` and the `make run` supervisor
(which runs before Django is configured). Nothing else reads the environment.

Every reader also honours `<NAME>_FILE`, naming a file that holds the value (for secrets).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

Environ = Mapping[str, str]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EnvError(ImproperlyConfigured):
    """A variable holds something its reader cannot use; the message names the variable."""


def raw(name: str, environ: Environ | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    if (path := environ.get(f"{name}_FILE")) is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as error:
            raise EnvError(f"{name}_FILE={path!r} cannot be read: {error.strerror}") from None
    return environ.get(name)


def envstr(name: str, default: str, environ: Environ | None = None) -> str:
    value = raw(name, environ)
    return default if value is None or value == "" else value


def envchoice(name: str, default: str, choices: tuple[str, ...], environ: Environ | None = None) -> str:
    value = envstr(name, default, environ).strip().lower()
    if value not in choices:
        raise EnvError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def envbool(name: str, default: bool, environ: Environ | None = None) -> bool:
    value = raw(name, environ)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise EnvError(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int, minimum: int | None = None, environ: Environ | None = None) -> int:
    value = raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise EnvError(f"{name} must be an integer, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise EnvError(f"{name} must be at least {minimum}, not {number}")
    return number


def envfloat(name: str, default: float, minimum: float | None = None, environ: Environ | None = None) -> float:
    value = raw(name, environ)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise EnvError(f"{name} must be a number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise EnvError(f"{name} must be at least {minimum}, not {number}")
    return number


def envnets(name: str, default: list[str], environ: Environ | None = None) -> tuple[IPNetwork, ...]:
    """A comma-separated list of networks in CIDR notation ("10.0.0.0/8,::1/128")."""
    networks = []
    for item in envlist(name, default, environ):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise EnvError(f"{name} holds {item!r}, which is not a network like 10.0.0.0/8 or ::1/128") from None
    return tuple(networks)


def envlist(name: str, default: list[str], environ: Environ | None = None) -> list[str]:
    value = raw(name, environ)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]
