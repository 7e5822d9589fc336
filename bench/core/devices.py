"""The `--device` values the harness accepts: checked as text before anything is loaded or recorded."""

from __future__ import annotations

import re

from .errors import BenchError

_DEVICE = re.compile(r"(cpu|mps|cuda(:\d+)?)")


def check_device(name: str, allow_auto: bool = False) -> str:
    """`name` if it is cpu, cuda, cuda:N or mps (or `auto` where allowed); else a one-line BenchError."""
    if (allow_auto and name == "auto") or _DEVICE.fullmatch(name):
        return name
    allowed = "auto, cpu, cuda, cuda:N or mps" if allow_auto else "cpu, cuda, cuda:N or mps"
    raise BenchError(f"--device {name!r} is not a device: use {allowed}")


__all__ = ["check_device"]
