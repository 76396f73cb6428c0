"""Browser tests: Playwright drives Debian's Chromium (never a browser it downloads).

`.ci/browser.sh` installs /usr/bin/chromium. Without it (or without the playwright
package) these tests are skipped, unless CALLBRIDGE_REQUIRE_BROWSER=1 says they must run.

The servers under test run on an asyncio loop in a thread of their own (`LoopThread`), so
the tests themselves are plain synchronous functions using Playwright's sync API.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, LoopThread, PageWatch


def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (run .ci/browser.sh)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _browser_missing()
    if reason is None:
        return
    if os.environ.get("CALLBRIDGE_REQUIRE_BROWSER") == "1":
        raise pytest.UsageError(f"browser tests required but {reason}")
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture(scope="package")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for this package's tests, with a fresh user-data dir; tests get tabs.

    Package scope, not session: while sync Playwright is up, its event loop counts as
    running on the main thread, and every pytest-asyncio test after it would fail."""
    from playwright.sync_api import sync_playwright

    user_data = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
            locale="en-US",
            timezone_id="UTC",  # history dates render the same on every machine
        )
        context.set_default_timeout(10_000)
        yield context
        context.close()


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A fresh tab; the test fails if the page raised, opened a dialog or broke the CSP."""
    browser_context.clear_cookies()
    tab = browser_context.new_page()
    watch = PageWatch(tab)
    tab.watch = watch
    yield tab
    tab.close()
    assert not watch.errors, f"script errors on the page: {watch.errors}"
    assert not watch.dialogs, f"the page opened dialogs: {watch.dialogs}"
    assert not watch.csp, f"Content-Security-Policy violations: {watch.csp}"
