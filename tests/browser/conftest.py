"""The console in a real browser: Debian's Chromium driven by Playwright, against one
real local stack (redis-server, the workers, the gateway over HTTP) shared by the
browser tests of a module (module scope, as own_stack asks: in `make test` it must not
stay up beside the session stack through all of tests/e2e).

The stack comes from tests/e2e (own_stack): its own settings because replaying a dead
letter needs an admin key and a retry budget of seconds (one retry, 1 s backoff), and
the hash embedder, which starts at once and serves every search mode.

Chromium is the system's (/usr/bin/chromium, apt package `chromium`, installed by
scripts/bootstrap.sh): `playwright install` downloads a browser, which cannot work
here, so Playwright is pointed at that executable.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from docflow.devstack.stack import LocalStack
from tests.e2e.conftest import ADMIN_KEY, Admin, Api, own_stack

KEY, TENANT = "key-console", "console"
# A second tenant, whose search budget the 429 test spends (buckets are per tenant).
LIMITED_KEY, LIMITED_TENANT = "key-console-limited", "console-limited"
SEARCHES_PER_MINUTE = 20
STACK_ENV = {
    "DOCFLOW_API_KEYS": f"{KEY}={TENANT},{LIMITED_KEY}={LIMITED_TENANT}",
    "DOCFLOW_SEARCH_RATE_LIMIT_PER_MINUTE": str(SEARCHES_PER_MINUTE),
    "DOCFLOW_ADMIN_API_KEYS": ADMIN_KEY,
    "DOCFLOW_EMBEDDER": "hash",
    "DOCFLOW_OCR_LANGUAGES": "eng",
    # A dependency outage exhausts its retries in about two seconds (the dead-letter test).
    "DOCFLOW_MAX_RETRIES": "1",
    "DOCFLOW_RETRY_BACKOFF": "1",
    "DOCFLOW_RETRY_JITTER": "false",
}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs"
# Long enough for a document through three stages on a busy 2-core machine.
WAIT_MS = 90_000
# What expect() waits for anything (its default, 5 s, is short on a busy machine: the
# stream's retry after a gateway outage alone may take 10 s).
expect.set_options(timeout=30_000)


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with own_stack(tmp_path_factory, "console", STACK_ENV) as local:
        yield local


@pytest.fixture(scope="module")
def api(console_stack: LocalStack) -> Api:
    return Api(console_stack.gateway_url, KEY, TENANT)


@pytest.fixture(scope="module")
def admin(console_stack: LocalStack) -> Admin:
    return Admin(console_stack.gateway_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh (Debian package chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """One browser tab on the console, recording every dialog the page opens (none
    should: the console asks nothing by dialog, so a dialog means injected script)."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page: Page = context.new_page()
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.set_default_timeout(WAIT_MS)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, key: str | None = None) -> Page:
        self.page.goto(f"{self.base_url}/console")
        if key is not None:
            self.page.fill("#key-input", key)
            self.page.click("#key-form button[type=submit]")
        return self.page

    def row(self, filename: str):
        """A document's row in the list, by its exact file name."""
        return self.page.locator("li.doc").filter(
            has=self.page.locator(".doc-name", has_text=filename)).first

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


@pytest.fixture
def console(browser: Browser, console_stack: LocalStack) -> Iterator[Console]:
    """A fresh tab at 1280x800 in its own context (its own session storage)."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        yield Console(context, console_stack.gateway_url)
    finally:
        context.close()


@pytest.fixture
def phone(browser: Browser, console_stack: LocalStack) -> Iterator[Console]:
    """The same on a 390-px-wide phone screen."""
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        yield Console(context, console_stack.gateway_url)
    finally:
        context.close()
