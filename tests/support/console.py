"""Driving the web console in Chromium: the browser, sign-in links from the real CLI, what
a page logs (CSP violations included), axe-core in the page, and screenshots kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.tokens import TEST_SECRET

AXE = Path(__file__).parent.parent / "js" / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS_VARIABLE = "CONSOLE_ARTEFACTS"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BLOCKING_IMPACTS = ("serious", "critical")
# Every CSP violation the page meets, from the page's own event (Playwright's init scripts
# run outside the page's policy).
_CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


def console_url(server: str, sub: str, *options: str) -> str:
    """What `mediasvc console-url` prints, run for real (signing like the test service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIASVC_")}
    env["MEDIASVC_JWT_SECRET"] = TEST_SECRET
    command = [sys.executable, "-m", "mediasvc", "console-url", "--sub", sub, "--server", server]
    done = subprocess.run(
        [*command, *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout.strip()


@dataclass
class PageLog:
    """What a page said: console messages and uncaught errors."""

    messages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def csp_violations(self, page: Any) -> list[str]:
        """Violations the page reported, and Chromium's own "Refused to ..." lines."""
        reported: list[str] = await page.evaluate("window.__cspViolations || []")
        refused = [m for m in self.messages if "Content Security Policy" in m]
        return reported + refused


async def open_page(browser: Any, viewport: dict[str, int]) -> tuple[Any, PageLog]:
    """A fresh page (its own session storage) that records what it logs."""
    context = await browser.new_context(viewport=viewport)
    await context.add_init_script(_CSP_LISTENER)
    page = await context.new_page()
    log = PageLog()
    page.on("console", lambda message: log.messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.errors.append(str(error)))
    return page, log


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (axe evaluated in the page, from the
    pinned npm package: evaluation by the driver is not subject to the page's CSP)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ['violations'] });
          return result.violations.map((v) => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(' ')),
          }));
        }"""
    )
    return found


@dataclass
class Screens:
    """Screenshots and axe reports of each screen, kept in one folder as test artefacts."""

    folder: Path
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def capture(self, page: Any, name: str) -> list[dict[str, Any]]:
        """Screenshot the page as `name`.png, run axe, keep its report; the blocking
        (serious or critical) violations are returned."""
        await page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)
        violations = await axe_violations(page)
        self.reports[name] = violations
        (self.folder / "axe.json").write_text(json.dumps(self.reports, indent=2))
        return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
