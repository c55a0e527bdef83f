"""Headless Chromium (Debian's package, found by `require_tool`) driven by Playwright, for the tests that look
at pages the way an operator does: at 1400 px wide, logged in to the admin, with screenshots saved under
var/screenshots/ (not committed) for people to look at."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.support.tools import require_tool

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
OPERATOR_VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@contextlib.asynccontextmanager
async def operator_page(base_url: str, offline: bool = False) -> AsyncIterator[Any]:
    """A 1400 px page. With `offline`, every request to a host other than the server's is refused and recorded
    in `page.blocked_requests`, as on a machine without internet access."""
    chromium = require_tool("chromium", "CHROMIUM")
    from playwright.async_api import async_playwright

    server_host = urlsplit(base_url).netloc
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport=OPERATOR_VIEWPORT)
            page.blocked_requests = []
            if offline:

                async def refuse_other_hosts(route: Any) -> None:
                    if urlsplit(route.request.url).netloc == server_host:
                        await route.continue_()
                    else:
                        page.blocked_requests.append(route.request.url)
                        await route.abort("internetdisconnected")

                await page.route("**/*", refuse_other_hosts)
            yield page
        finally:
            await browser.close()


async def log_in(page: Any, base_url: str, username: str, password: str, next_path: str = "/admin/") -> None:
    await page.goto(f"{base_url}/admin/login/?next={next_path}")
    await page.fill("#id_username", username)
    await page.fill("#id_password", password)
    await page.click("input[type=submit]")
    await page.wait_for_url(f"**{next_path}")


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")
    return path


async def hidden_columns(page: Any, table: str, headers: list[str]) -> dict[str, str]:
    """Each of `headers` (column titles of `table`) that a person at this viewport would not see without
    scrolling sideways, with why: missing, cut off at the right edge, or squeezed so its text wraps."""
    return await page.evaluate(
        """([table, headers]) => {
            const problems = {};
            const cells = [...document.querySelectorAll(`${table} thead th`)];
            for (const title of headers) {
                const label = c => (c.querySelector(".text") || c).innerText.trim().toLowerCase();
                const th = cells.find(c => label(c) === title.toLowerCase());
                if (!th) { problems[title] = "no such column"; continue; }
                const box = th.getBoundingClientRect();
                if (box.right > window.innerWidth || box.width === 0) problems[title] = `right edge at ${box.right}px`;
            }
            const scroller = document.scrollingElement;
            if (scroller.scrollWidth > window.innerWidth) problems["(page)"] = `page is ${scroller.scrollWidth}px wide`;
            return problems;
        }""",
        [table, headers],
    )
