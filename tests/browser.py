"""Headless system Chromium for the browser tests (Playwright driving Debian's `chromium`; never `playwright install`).

Without Chromium or the `playwright` package a test that needs them is skipped with the install commands as the reason;
with RLSUB_REQUIRE_BROWSER=1 (set by .ci/run) it fails instead, so CI never passes without having run them."""
import os
from contextlib import contextmanager
from pathlib import Path
import pytest

CHROMIUM = os.environ.get('RLSUB_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-proxy-server',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
INSTALL = 'apt-get install chromium && pip install playwright (no `playwright install`: the system Chromium is used)'


def missing() -> str | None:
    "Why the browser tests cannot run here, or None."
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f'Python playwright is missing ({e})'
    if not (Path(CHROMIUM).exists() and os.access(CHROMIUM, os.X_OK)):
        return f'no Chromium at {CHROMIUM} (or point RLSUB_CHROMIUM at a Chromium binary)'
    return None


def require_browser():
    "Call at the top of a browser test module: skip the module when no browser can run, naming the install commands; fail instead under RLSUB_REQUIRE_BROWSER=1."
    why = missing()              # raised here, at module level: pytest prints one line for every module it skips, folded into one
    if why is None:
        return
    if os.environ.get('RLSUB_REQUIRE_BROWSER') == '1':
        pytest.fail(f'{why}; RLSUB_REQUIRE_BROWSER=1 says the browser tests must run here: {INSTALL}', pytrace=False)
    pytest.skip(f'{why}: {INSTALL}', allow_module_level=True)


@contextmanager
def chromium():
    "A headless system Chromium (Playwright's Browser), closed on exit."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
