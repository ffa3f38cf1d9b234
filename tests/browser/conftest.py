"""Browser fixtures: a real Chromium (Debian's, never a downloaded one) driving a
real daphne process that talks to the OpenAI stub.

`chat` is the usual entry point: a page logged in as alice through the real login
form, with every request and console message recorded. After each test the page is
saved as test-output/screenshots/<test name>.png; a console error that names the
Content-Security-Policy, or a request to any host but 127.0.0.1, fails the test.
"""

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.live import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"

REPORT_CSP_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => {
  const where = e.sourceFile + ':' + e.lineNumber;
  window.__reportCspViolation(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + where);
});
"""

# Generous: two shared cores run daphne, the stub and Chromium at once.
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Browser tests need Debian's Chromium: no Chromium at {CHROMIUM} (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Chat:
    """One logged-in browser tab on the live server, and what it did."""

    live: LiveServer
    page: object
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def log_in(self, username: str, password: str) -> None:
        """Through the real login form (where the app sends a visitor who is not logged in)."""
        self.page.fill('input[name="username"]', username)
        self.page.fill('input[name="password"]', password)
        self.page.click('.login button[type="submit"]')

    def conversation_ids(self, username: str = "alice") -> list[int]:
        """The user's conversations as stored. With a DATABASE_URL the live servers of
        a whole test session share one database, so tests compare with this rather
        than assume an empty account."""
        rows = self.live.sql(
            "SELECT c.id FROM chat_conversation c JOIN auth_user u ON u.id = c.owner_id"
            " WHERE u.username = ? ORDER BY c.id",
            username,
        )
        return [row[0] for row in rows]

    def stream_requests(self) -> list[str]:
        return [url for url in self.requests if "/stream/" in url]

    def send(self, prompt: str) -> None:
        """Type in the composer and press Enter, as a person does."""
        box = self.page.locator("#composer textarea")
        box.click()
        box.fill(prompt)
        box.press("Enter")

    def last_answer(self):
        return self.page.locator("#messages .msg.assistant").last

    def answer_id(self) -> int:
        self.page.wait_for_selector("#messages .msg.assistant", state="attached")
        return int(self.last_answer().get_attribute("id").removeprefix("msg-"))

    def wait_status(self, status: str, timeout: int = TIMEOUT_MS) -> None:
        """Wait until the last answer is shown with `status` (the done/error swap has
        happened) and settled (the composer follows it on htmx:afterSettle)."""
        self.page.wait_for_selector(
            f'#messages .msg.assistant:last-of-type[data-status="{status}"]:not(.htmx-settling)',
            state="attached",
            timeout=timeout,
        )

    def live_text(self) -> str:
        """The text of the answer being streamed, as it is in the DOM now."""
        return self.page.evaluate(
            "() => { const b = document.querySelector('#messages .msg.assistant:last-of-type .msg-body.live');"
            " return b ? b.textContent : null; }"
        )


def _screenshot_name(node_name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", node_name).strip("_") + ".png"


@pytest.fixture
def open_chat(browser, live_server_factory, request) -> Iterator[Callable[..., Chat]]:
    """Open a new browser context logged in as alice, on `server` (by default one
    live server started for the test, talking to the stub); other options are
    Playwright's new_context options (viewport, color_scheme, permissions, ...)."""
    contexts = []
    chats: list[Chat] = []
    default: list[LiveServer] = []

    def open_(
        username: str = "alice",
        password: str = "alice-password",
        server: LiveServer | None = None,
        login: bool = True,
        **options,
    ) -> Chat:
        if server is None:
            if not default:
                default.append(live_server_factory())
            server = default[0]
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        chat = Chat(server, page)
        chats.append(chat)

        def console(message) -> None:
            if message.type == "error":
                chat.console_errors.append(f"{message.text} at {message.location.get('url')}")

        # Every CSP violation, including the ones a console might word differently.
        context.expose_function("__reportCspViolation", lambda text: chat.console_errors.append(f"CSP: {text}"))
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        page.on("request", lambda r: chat.requests.append(r.url))
        page.on("console", console)
        page.on("pageerror", lambda exc: chat.console_errors.append(f"pageerror: {exc}"))
        page.goto(server.url + "/")
        if login:
            chat.log_in(username, password)
            page.wait_for_selector("#composer textarea")
        return chat

    yield open_

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for index, chat in enumerate(chats):
        name = request.node.name if index == 0 else f"{request.node.name}-{index + 1}"
        with contextlib.suppress(Exception):  # a screenshot is a help, never a failure
            chat.page.screenshot(path=str(SCREENSHOTS / _screenshot_name(name)), full_page=True)
    for context in contexts:
        context.close()
    csp = [e for chat in chats for e in chat.console_errors if "Content Security Policy" in e or "CSP" in e]
    assert not csp, f"The page broke its Content-Security-Policy: {csp}"
    outside = [url for chat in chats for url in chat.requests if not _local(url)]
    assert not outside, f"The page asked another host for something: {outside}"


def _local(url: str) -> bool:
    return url.startswith(("data:", "blob:")) or urlsplit(url).hostname == "127.0.0.1"


@pytest.fixture
def chat(open_chat) -> Chat:
    return open_chat()
