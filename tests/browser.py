"""Headless Chromium for the tests of the HTML pages: the DOM after the page's own scripts ran, and screenshots.

The pages are opened from file:// with the network off. A page's self-test (`#selftest&...` in its
address) performs clicks and choices in the page's own JavaScript and writes the result into
`<pre id="selftest">`, which `--dump-dom` then returns. Without Chromium the tests skip with one
line, except under CI (CI=true), where `.ci/run` installs it and its absence is a failure unless
`.ci/run` could not install it and said why in BENCH_NO_BROWSER.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    """The Chromium executable; skips the test (fails it under CI=true) when there is none."""
    found = next((shutil.which(n) for n in NAMES if shutil.which(n)), None)
    if found is None:
        reason = os.environ.get("BENCH_NO_BROWSER")
        if reason:
            pytest.skip(f"no chromium: {reason}")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no chromium on PATH; CI installs it (.ci/run) to test the HTML pages in a browser")
        pytest.skip("no chromium on PATH (apt-get install chromium) to test the HTML pages in a browser")
    return found


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-extensions", "--disable-background-networking", "--proxy-server=127.0.0.1:9",
                   f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: Path, fragment: str = "", budget_ms: int = 5000) -> str:
    """The page's DOM once its scripts have run (virtual time `budget_ms`)."""
    url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    done = _run([f"--virtual-time-budget={budget_ms}", "--dump-dom", url])
    assert "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


def selftest(page: Path, fragment: str) -> dict:
    """The JSON the page's self-test wrote for `#selftest&FRAGMENT`."""
    dom = dump_dom(page, f"selftest&{fragment}" if fragment else "selftest")
    found = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', dom, flags=re.S)
    assert found and found.group(1), "the page wrote no self-test result"
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, out: Path, size: tuple[int, int] = (1400, 900), budget_ms: int = 5000) -> Path:
    """A PNG of the page's first screen at `size` (width, height)."""
    done = _run([f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}",
                 "--hide-scrollbars", f"--screenshot={out}", Path(page).resolve().as_uri()])
    assert Path(out).is_file(), done.stderr[-2000:]
    return Path(out)
