"""The web console, as a person uses it, in Debian's Chromium driven by Playwright.

The service runs with real workers; sign-in is by the URL `mediasvc console-url` prints
(the CLI run for real); files go through the page's file input and tus. axe-core (pinned
in tests/js) is evaluated in the page on every screen and must report no serious or
critical violation; the page's CSP must hold (no violation reported). Screenshots at
desktop (1280x800) and phone (390x844) width, and the axe reports, are kept in the folder
named by CONSOLE_ARTEFACTS (default: a temporary folder of the run, printed at the end).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from mediasvc.app import Service, start_service
from mediasvc.console import ConsoleAssets, content_security_policy
from mediasvc.records import MediaRecord, MediaStatus
from tests.support.browser import chromium
from tests.support.client import API, Client
from tests.support.console import (
    ARTEFACTS_VARIABLE,
    DESKTOP,
    PHONE,
    Screens,
    console_url,
    open_page,
)
from tests.support.samples import make_photo
from tests.support.service import service_settings
from tests.support.tokens import make_token

REFUSED = "notes.exe"
AUDIO_LIMIT = 64 * 1024  # a second of WAV (86 KB) is larger: refused for its size
SETTLE = 90_000  # ms: a 12 MP photo and a video through real workers on a busy machine
ROOT = Path(__file__).parent.parent


@dataclass
class Console:
    """The service the console is served by, and a client beside the browser."""

    service: Service
    client: Client

    @property
    def base(self) -> str:
        return self.client.base


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    settings = service_settings(
        tmp_path_factory.mktemp("console"),
        log_level="critical",
        sweep_interval=0,
        workers=1,
        job_max_attempts=1,
        max_audio_size=AUDIO_LIMIT,
    )
    service = await start_service(settings)
    try:
        yield Console(service, Client(f"http://127.0.0.1:{service.port}"))
    finally:
        await service.stop()


@pytest.fixture(scope="module")
async def browser(console: Console) -> AsyncIterator[Any]:
    async with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Screens:
    named = os.environ.get(ARTEFACTS_VARIABLE)
    folder = Path(named) if named else tmp_path_factory.mktemp("console-artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots and axe reports: {folder}")
    return Screens(folder)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, bytes]) -> dict[str, Path]:
    """A 12 MP photo, a video, two small images for the bulk actions, a refused file and
    one that is accepted but cannot be processed."""
    folder = tmp_path_factory.mktemp("console-files")
    chosen = {
        "clip.mp4": samples["mp4"],
        "first-extra.png": samples["png"],
        "second-extra.gif": samples["gif"],
        REFUSED: b"MZ\x90\x00 not a media file",
        "broken.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(4000),
    }
    paths = {"photo.jpg": make_photo(folder / "photo.jpg")}
    for name, content in chosen.items():
        (folder / name).write_bytes(content)
        paths[name] = folder / name
    return paths


def _claims(url: str) -> dict[str, Any]:
    token = url.split("#token=", 1)[1]
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _card(page: Any, filename: str) -> Any:
    return page.locator(".card").filter(has=page.get_by_text(filename, exact=True))


async def _media(console: Console, token: str, media_id: str) -> Any:
    return await console.client.request("GET", f"{API}/{media_id}/", token=token)


async def _sign_in(page: Any, console: Console, sub: str, *options: str) -> str:
    url = console_url(console.base, sub, *options)
    await page.goto(url)
    await expect(page.locator("#view-library")).to_be_visible()
    return url


async def _blocking(screens: Screens, page: Any, name: str) -> None:
    blocking = await screens.capture(page, name)
    assert not blocking, f"axe on {name}: {json.dumps(blocking, indent=1)}"


# ---- served by the service


async def test_root_leads_to_the_console_page_with_its_policy(console: Console) -> None:
    root = await console.client.request("GET", "/")
    assert root.status == 302
    assert root.headers["Location"] == "/console/"
    page = await console.client.request("GET", "/console/")
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert page.headers["Cache-Control"] == "no-cache"
    policy = page.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
        "base-uri 'none'", "form-action 'none'", "img-src 'self' blob: data:", "connect-src 'self'",
    ):  # fmt: skip
        assert directive in policy.split("; "), (directive, policy)
    html = page.body.decode()
    assert "<script>" not in html and "style=" not in html  # nothing inline
    version = ConsoleAssets.load().version
    assert f"static/{version}/js/app.js" in html


async def test_a_service_with_the_console_off_serves_the_api_only(tmp_path: Path) -> None:
    service = await start_service(service_settings(tmp_path, console_enabled=False))
    client = Client(f"http://127.0.0.1:{service.port}")
    try:
        version = ConsoleAssets.load().version
        for path in ("/", "/console", "/console/", f"/console/static/{version}/js/app.js"):
            answer = await client.request("GET", path)
            assert answer.status == 404, path
            assert answer.json == {"error": "Not found"}  # the service's own, for any path
        token = make_token(str(uuid.uuid4()))
        assert (await client.request("GET", f"{API}/", token=token)).status == 200
        assert (await client.request("GET", "/healthz")).status == 200
    finally:
        await service.stop()


async def test_files_are_immutable_under_their_version(console: Console) -> None:
    version = ConsoleAssets.load().version
    current = await console.client.request("GET", f"/console/static/{version}/js/app.js")
    assert current.status == 200
    assert current.headers["Content-Type"].startswith("text/javascript")
    assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert current.headers["X-Content-Type-Options"] == "nosniff"
    stale = await console.client.request("GET", "/console/static/0123456789ab/js/app.js")
    assert stale.status == 200
    assert stale.headers["Cache-Control"] == "no-cache"
    assert stale.body == current.body
    missing = await console.client.request("GET", f"/console/static/{version}/nope.js")
    assert missing.status == 404
    assert missing.json == {"error": "Not Found"}
    escape = await console.client.request("GET", f"/console/static/{version}/../index.html")
    assert escape.status in (403, 404)


def test_the_policy_names_the_s3_origin_for_files() -> None:
    policy = content_security_policy(
        "http://127.0.0.1:8000",
        "https://media.s3.eu-west-1.amazonaws.com/media/x.jpg?X-Amz-Signature=abc",
        "http://127.0.0.1:8000",
    )
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    s3 = "https://media.s3.eu-west-1.amazonaws.com"
    assert directives["img-src"] == f"'self' blob: data: {s3}"
    assert directives["media-src"] == f"'self' blob: {s3}"
    assert directives["connect-src"] == f"'self' {s3}"


async def test_the_policy_names_the_bucket_of_the_s3_backend(s3_service: Service) -> None:
    page = await Client(f"http://127.0.0.1:{s3_service.port}").request("GET", "/console/")
    endpoint = s3_service.context.settings.s3_endpoint_url.rstrip("/")
    directives = dict(d.split(" ", 1) for d in page.headers["Content-Security-Policy"].split("; "))
    for name in ("img-src", "media-src", "connect-src"):
        assert endpoint in directives[name].split(), (name, directives[name])


def test_the_package_data_covers_every_console_file() -> None:
    """An installed package serves the console too: setup.py's globs name every file."""
    setup = (ROOT / "setup.py").read_text()
    console = ROOT / "mediasvc" / "console"
    globs = json.loads(setup.split('"mediasvc.console": ', 1)[1].split("]", 1)[0] + "]")
    shipped = {p for pattern in globs for p in console.glob(pattern) if p.is_file()}
    present = {p for p in console.rglob("*") if p.is_file() and p.suffix != ".py"}
    assert present - {p for p in present if "__pycache__" in p.parts} <= shipped


def test_the_vendored_tus_client_is_the_pinned_package() -> None:
    vendored = (ROOT / "mediasvc/console/static/vendor/tus.min.js").read_text()
    package = ROOT / "tests/js/node_modules/tus-js-client"
    pinned = json.loads((ROOT / "tests/js/package-lock.json").read_text())
    version = pinned["packages"]["node_modules/tus-js-client"]["version"]
    assert json.loads((package / "package.json").read_text())["version"] == version
    built = (package / "dist/tus.min.js").read_text()
    body = "\n".join(line for line in built.splitlines() if not line.startswith("//# sourceMap"))
    assert vendored.startswith(f"/*! tus-js-client {version} ")
    assert vendored.split("*/\n", 1)[1].rstrip("\n") == body.rstrip("\n")


# ---- the command that signs a browser in


def test_console_url_carries_a_short_lived_token_in_the_fragment() -> None:
    sub = str(uuid.uuid4())
    entity = f"service:{uuid.uuid4()}"
    url = console_url(
        "http://127.0.0.1:8123/", sub, "--role", "admin", "--entity", entity, "--ttl", "120"
    )
    assert url.startswith("http://127.0.0.1:8123/console/#token=")
    claims = _claims(url)
    assert claims["sub"] == sub
    assert claims["roles"] == ["admin"]
    assert claims["entities"] == [entity]
    assert abs(claims["exp"] - (time.time() + 120)) < 30


# ---- the operations overview


async def test_operations_overview_is_for_admins(console: Console) -> None:
    path = "/console/api/operations"
    assert (await console.client.request("GET", path)).status == 401
    user = make_token(str(uuid.uuid4()))
    refused = await console.client.request("GET", path, token=user)
    assert refused.status == 403
    assert refused.json == {"error": "The operations overview is for admins only"}
    admin = make_token(str(uuid.uuid4()), roles=["admin"])
    overview = (await console.client.request("GET", path, token=admin)).json
    assert overview["health"] == {"database": "ok", "storage": "ok"}
    assert set(overview["jobs"]) == {"counts", "queued", "running", "failed"}
    assert overview["workers"]["per_process"] == 1


# ---- in the browser


async def test_a_person_signs_in_uploads_and_manages_media(
    console: Console, browser: Any, files: dict[str, Path], screens: Screens
) -> None:
    sub = str(uuid.uuid4())
    token = make_token(sub)
    page, log = await open_page(browser, DESKTOP)
    url = await _sign_in(page, console, sub)
    assert "token=" not in page.url  # out of the address bar and the history
    stored = await page.evaluate("sessionStorage.getItem('mediasvc.console.token')")
    assert stored == url.split("#token=", 1)[1]
    await expect(page.locator("#gallery-empty")).to_be_visible()
    await _blocking(screens, page, "desktop-library-empty")

    names = ["photo.jpg", "clip.mp4", REFUSED, "first-extra.png", "second-extra.gif"]
    await page.set_input_files("#file-input", [str(files[n]) for n in names])
    refused = page.locator(".upload-item").filter(has=page.get_by_text(REFUSED, exact=True))
    await expect(refused.locator(".upload-error")).to_have_text(
        "File extension 'exe' is not allowed"
    )
    for name in ("photo.jpg", "clip.mp4", "first-extra.png", "second-extra.gif"):
        card = _card(page, name)
        await expect(card.locator("img.thumb-image")).to_be_visible(timeout=SETTLE)
        await expect(card.locator(".badge-ready")).to_have_text("Ready", timeout=SETTLE)
    await expect(page.locator("#upload-summary")).to_contain_text("4 of 5 files uploaded")
    await _blocking(screens, page, "desktop-library-uploaded")

    # the keyboard opens a card, Escape closes the dialog and the focus comes back
    photo = _card(page, "photo.jpg")
    await photo.locator(".card-open").focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#detail")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#alt-nudge")).to_be_visible()
    await expect(dialog.locator(".preview-image")).to_be_visible()
    await expect(dialog.locator("#detail-variants")).to_contain_text("thumbnail")
    await expect(dialog.locator("#detail-variants")).to_contain_text("optimized")
    await _blocking(screens, page, "desktop-detail")
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    assert await photo.locator(".card-open").evaluate("b => b === document.activeElement")

    # alt text, then primary
    await photo.locator(".card-open").click()
    await dialog.get_by_label("Alt text").fill("A test card of colour bars")
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog.locator("#detail-status")).to_have_text("Saved.")
    await expect(dialog.locator("#alt-nudge")).to_be_hidden()
    await dialog.get_by_role("button", name="Set as primary").click()
    await expect(dialog.locator("#detail-status")).to_contain_text("now the primary")
    await dialog.get_by_role("button", name="Close").click()
    await expect(photo.locator(".badge-primary")).to_be_visible()
    await expect(photo.locator(".badge-alt")).to_have_count(0)
    photo_id = await photo.get_attribute("data-id")
    stored_photo = (await _media(console, token, photo_id)).json
    assert stored_photo["alt_text"] == "A test card of colour bars"
    assert stored_photo["is_primary"] is True

    # delete the video from its detail view
    video = _card(page, "clip.mp4")
    video_id = await video.get_attribute("data-id")
    await video.locator(".card-open").click()
    await expect(dialog.locator("video")).to_be_visible()
    await dialog.get_by_role("button", name="Delete…").click()
    confirm = page.locator("#confirm")
    await expect(confirm).to_be_visible()
    await _blocking(screens, page, "desktop-confirm-delete")
    await confirm.get_by_role("button", name="Delete").click()
    await expect(video).to_have_count(0)
    assert (await _media(console, token, video_id)).status == 404

    # select two, edit them together, delete them together
    extras = [_card(page, "first-extra.png"), _card(page, "second-extra.gif")]
    extra_ids = [await card.get_attribute("data-id") for card in extras]
    for card in extras:
        await card.get_by_role("checkbox").check()
    await expect(page.locator("#bulk-count")).to_have_text("2 selected")
    await page.get_by_role("button", name="Edit selected…").click()
    bulk = page.locator("#bulk-edit")
    await bulk.get_by_label("Alt text").fill("Extra test image")
    await _blocking(screens, page, "desktop-bulk-edit")
    await bulk.get_by_role("button", name="Apply to selected").click()
    await expect(bulk).to_be_hidden()
    for media_id in extra_ids:
        assert (await _media(console, token, media_id)).json["alt_text"] == "Extra test image"
    await page.get_by_role("button", name="Delete selected…").click()
    await confirm.get_by_role("button", name="Delete 2").click()
    for card in extras:
        await expect(card).to_have_count(0)
    for media_id in extra_ids:
        assert (await _media(console, token, media_id)).status == 404
    await expect(page.locator(".card")).to_have_count(1)
    await expect(page.locator("#gallery-title")).to_be_focused()

    assert await log.csp_violations(page) == []
    assert log.errors == []
    await page.context.close()


async def test_at_phone_width_nothing_scrolls_sideways(
    console: Console, browser: Any, files: dict[str, Path], screens: Screens
) -> None:
    sub = str(uuid.uuid4())
    page, log = await open_page(browser, PHONE)
    await _sign_in(page, console, sub)
    await page.set_input_files("#file-input", [str(files["photo.jpg"]), str(files[REFUSED])])
    await expect(_card(page, "photo.jpg").locator("img.thumb-image")).to_be_visible(timeout=SETTLE)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await _blocking(screens, page, "phone-library")
    await page.emulate_media(color_scheme="dark")  # the system's dark setting, contrast too
    await _blocking(screens, page, "phone-library-dark")
    await _card(page, "photo.jpg").locator(".card-open").click()
    await expect(page.locator("#detail")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await _blocking(screens, page, "phone-detail")
    await page.keyboard.press("Escape")
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_the_session_ends_with_a_message_when_the_token_expires(
    console: Console, browser: Any, screens: Screens
) -> None:
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, str(uuid.uuid4()), "--ttl", "3")
    message = page.locator("#signin-message")
    await expect(message).to_contain_text("the token expired at", timeout=10_000)
    await expect(page.locator("#view-library")).to_be_hidden()
    await expect(page.locator("#signin-form")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('mediasvc.console.token')") is None
    await _blocking(screens, page, "desktop-signin-expired")

    # a pasted token the service refuses says so, next to the field
    forged = make_token(str(uuid.uuid4()), secret="another-secret-" + "y" * 40)
    await page.get_by_label("Access token").fill(forged)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_have_text(
        "The service refused this token: Invalid token."
    )
    # a good pasted one signs in; signing out comes back here
    await page.get_by_label("Access token").fill(make_token(str(uuid.uuid4())))
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#view-library")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(message).to_have_text("You have signed out.")
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_admins_see_failed_jobs_and_retry_them(
    console: Console, browser: Any, files: dict[str, Path], screens: Screens
) -> None:
    sub = str(uuid.uuid4())
    token = make_token(sub)
    answer = await console.client.upload(
        token,
        "broken.jpg",
        files["broken.jpg"].read_bytes(),
        {"entity_type": "user", "entity_id": sub},
    )
    assert answer.status == 201, answer.body
    media_id = answer.json["id"]
    deadline = time.monotonic() + SETTLE / 1000
    while (media := (await _media(console, token, media_id)).json)["status"] != "failed":
        assert time.monotonic() < deadline, media
        await asyncio.sleep(0.3)
    failed_job = media["job"]["id"]

    for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page, log = await open_page(browser, viewport)
        await _sign_in(page, console, str(uuid.uuid4()), "--role", "admin")
        await page.get_by_role("link", name="Operations").click()
        await expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
        await expect(page.locator("#ops-health")).to_contain_text("Database")
        job = page.locator(f'[data-job="{failed_job}"]')
        await expect(job.locator(".job-reason")).to_contain_text(media["error"])
        assert await page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        await _blocking(screens, page, f"{name}-operations")
        if name == "desktop":
            await job.get_by_role("button", name="Retry").click()
            await expect(page.locator("#toast")).to_contain_text("is queued again")
            retried = (await _media(console, token, media_id)).json
            assert retried["job"]["id"] != failed_job
        assert await log.csp_violations(page) == []
        await page.context.close()


@pytest.mark.parametrize(
    ("server", "options", "message"),
    [
        ("ftp://example.test", [], "is not an http(s) URL"),
        ("http://127.0.0.1:1", ["--entity", "service"], "is not TYPE:ID or TYPE:*"),
        ("http://127.0.0.1:1", ["--ttl", "0"], "--ttl must be positive"),
    ],
)
def test_console_url_refuses_what_would_not_work(
    server: str, options: list[str], message: str
) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        console_url(server, str(uuid.uuid4()), *options)
    assert failed.value.returncode == 2
    assert message in failed.value.stderr


async def _throttle_uploads(page: Any, bytes_per_second: int) -> None:
    """Slow the page's uploads (Chromium's network emulation), so a person can pause one."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Network.enable")
    conditions = {"offline": False, "latency": 0, "downloadThroughput": -1}
    await cdp.send(
        "Network.emulateNetworkConditions", {**conditions, "uploadThroughput": bytes_per_second}
    )


async def _pending(console: Console, token: str) -> list[dict[str, Any]]:
    answer = await console.client.request("GET", f"{API}/?status=pending", token=token)
    results: list[dict[str, Any]] = answer.json["results"]
    return results


async def test_uploads_pause_resume_and_cancel(
    console: Console, browser: Any, files: dict[str, Path], screens: Screens, tmp_path: Path
) -> None:
    sub = str(uuid.uuid4())
    token = make_token(sub)
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, sub)
    await _throttle_uploads(page, 1_500_000)
    second = tmp_path / "second-photo.jpg"
    second.write_bytes(files["photo.jpg"].read_bytes())
    await page.set_input_files("#file-input", [str(files["photo.jpg"]), str(second)])
    first = page.locator(".upload-item").filter(has=page.get_by_text("photo.jpg", exact=True))
    other = page.locator(".upload-item").filter(has=page.get_by_text(second.name, exact=True))
    await expect(first.locator(".upload-detail")).to_contain_text("%")
    await expect(page.locator("#upload-total")).not_to_have_attribute("value", "0")
    await _blocking(screens, page, "desktop-uploading")

    await first.get_by_role("button", name="Pause").click()
    await expect(first.locator(".upload-detail")).to_contain_text("Paused")
    paused_at = await first.locator("progress").get_attribute("value")
    await other.get_by_role("button", name="Cancel").click()
    await expect(other).to_have_count(0)
    await asyncio.sleep(1)
    assert await first.locator("progress").get_attribute("value") == paused_at
    pending = await _pending(console, token)
    assert [m["filename"] for m in pending] == ["photo.jpg"]  # the cancelled one is gone

    await first.get_by_role("button", name="Resume").click()
    await expect(first.locator(".upload-detail")).to_contain_text("Uploaded", timeout=SETTLE)
    await expect(_card(page, "photo.jpg").locator("img.thumb-image")).to_be_visible(timeout=SETTLE)
    assert await _pending(console, token) == []
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_a_folder_goes_up_with_its_files(
    console: Console, browser: Any, samples: dict[str, bytes], tmp_path: Path
) -> None:
    folder = tmp_path / "holiday"
    (folder / "day-two").mkdir(parents=True)
    (folder / "beach.png").write_bytes(samples["png"])
    (folder / "day-two" / "waves.webp").write_bytes(samples["webp"])
    sub = str(uuid.uuid4())
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, sub)
    await page.set_input_files("#folder-input", str(folder))
    names = page.locator(".upload-name")
    await expect(names).to_have_count(2)
    assert sorted(await names.all_inner_texts()) == [
        "holiday/beach.png",
        "holiday/day-two/waves.webp",
    ]
    for name in ("beach.png", "waves.webp"):
        await expect(_card(page, name).locator(".badge-ready")).to_be_visible(timeout=SETTLE)
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_the_gallery_filters_searches_and_pages_by_cursor(
    console: Console, browser: Any, screens: Screens
) -> None:
    """60 records of one caller (put in through the repository: their files do not matter
    here): the first page, the next ones as the end of the grid comes into view, filters."""
    sub = str(uuid.uuid4())
    now = int(time.time() * 1000)
    records = []
    for number in range(60):
        kind = ("document", "application/pdf", "pdf") if number % 3 == 0 else None
        media_type, content_type, extension = kind or ("image", "image/png", "png")
        media = MediaRecord.new(
            entity=("user", sub),
            uploaded_by=sub,
            kind_media_type=media_type,
            content_type=content_type,
            extension=extension,
            filename=f"item-{number:02d}.{extension}",
            now=now - number * 1000,
        )
        media.status = MediaStatus.READY
        records.append(media)
    await console.service.context.repository.insert_many(records)

    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, sub)
    cards = page.locator(".card")
    await expect(cards).to_have_count(40)  # the first page
    await expect(page.locator("#gallery-count")).to_have_text("40 of 60 shown")
    await page.locator("#sentinel").scroll_into_view_if_needed()
    await expect(cards).to_have_count(60)
    await expect(page.locator("#load-more")).to_be_hidden()
    await _blocking(screens, page, "desktop-gallery-placeholders")

    await page.get_by_label("Media type").select_option("document")
    await expect(cards).to_have_count(20)
    await page.get_by_label("Search").fill("item-0")
    await expect(cards).to_have_count(4)  # item-00, 03, 06, 09
    await page.get_by_label("Media type").select_option("")
    await page.get_by_label("Status").select_option("failed")
    await expect(page.locator("#gallery-empty")).to_be_visible()
    await page.get_by_label("Status").select_option("ready")
    await page.get_by_label("Search").fill("")
    await page.get_by_label("Entity", exact=True).fill(f"user:{sub}")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#gallery-count")).to_have_text("40 of 60 shown")
    await page.get_by_label("Entity", exact=True).fill("user:not-a-uuid")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.locator("#f-entity-error")).to_contain_text("must be a UUID")
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_a_failed_media_is_retried_from_its_detail_view(
    console: Console, browser: Any, files: dict[str, Path]
) -> None:
    sub = str(uuid.uuid4())
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, sub)
    await page.set_input_files("#file-input", str(files["broken.jpg"]))
    card = _card(page, "broken.jpg")
    await expect(card.locator(".badge-failed")).to_be_visible(timeout=SETTLE)
    await card.locator(".card-open").click()
    dialog = page.locator("#detail")
    await expect(dialog.locator("#detail-failure")).to_contain_text("Processing failed: Cannot")
    await dialog.get_by_role("button", name="Retry processing").click()
    await expect(dialog.locator("#detail-status")).to_have_text("Queued again.")
    await expect(card.locator(".badge-processing, .badge-failed")).to_be_visible()
    await expect(dialog.locator("#detail-failure")).to_be_visible(timeout=SETTLE)  # fails again
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_refusals_show_the_services_message_for_size_and_permission(
    console: Console, browser: Any, samples: dict[str, bytes], tmp_path: Path
) -> None:
    """A caller with a `practitioner:*` grant may type an entity; one of another type is
    refused (403), a file over its type's limit too (413): each with the service's words."""
    (tmp_path / "tone.wav").write_bytes(samples["wav"])
    (tmp_path / "small.png").write_bytes(samples["png"])
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, str(uuid.uuid4()), "--entity", "practitioner:*")
    await page.get_by_label("Upload to").select_option(label="Another entity…")
    await page.get_by_label("Entity (TYPE:ID)").fill(f"service:{uuid.uuid4()}")
    await page.set_input_files("#file-input", str(tmp_path / "small.png"))
    refused = page.locator(".upload-item").filter(has=page.get_by_text("small.png", exact=True))
    await expect(refused.locator(".upload-error")).to_have_text(
        "No permission to upload media for this entity"
    )
    await page.get_by_label("Entity (TYPE:ID)").fill(f"practitioner:{uuid.uuid4()}")
    await page.set_input_files("#file-input", str(tmp_path / "tone.wav"))
    too_large = page.locator(".upload-item").filter(has=page.get_by_text("tone.wav", exact=True))
    limit = f"{AUDIO_LIMIT / 1024 / 1024:.1f}MB"
    await expect(too_large.locator(".upload-error")).to_have_text(
        f"File size exceeds maximum allowed size of {limit} for audio files"
    )
    await expect(refused.get_by_role("button", name="Retry")).to_be_hidden()  # it would not help
    await refused.get_by_role("button", name="Remove").click()
    await expect(refused).to_have_count(0)
    assert await log.csp_violations(page) == []
    await page.context.close()


async def test_files_dropped_on_the_page_go_up(
    console: Console, browser: Any, samples: dict[str, bytes]
) -> None:
    """A drop of files (built in the page: Playwright cannot drag from the desktop) on the
    drop zone uploads them like the file picker does."""
    sub = str(uuid.uuid4())
    page, log = await open_page(browser, DESKTOP)
    await _sign_in(page, console, sub)
    dropped = await page.evaluate_handle(
        """([png, webp]) => {
            const transfer = new DataTransfer();
            const bytes = (list) => new Uint8Array(list);
            transfer.items.add(new File([bytes(png)], 'dropped.png', { type: 'image/png' }));
            transfer.items.add(new File([bytes(webp)], 'dropped.webp', { type: 'image/webp' }));
            return transfer;
        }""",
        [list(samples["png"]), list(samples["webp"])],
    )
    await page.dispatch_event("#dropzone", "dragover", {"dataTransfer": dropped})
    await page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    names = page.locator(".upload-name")
    await expect(names).to_have_count(2)
    assert sorted(await names.all_inner_texts()) == ["dropped.png", "dropped.webp"]
    for name in ("dropped.png", "dropped.webp"):
        await expect(_card(page, name).locator(".badge-ready")).to_be_visible(timeout=SETTLE)
    assert await log.csp_violations(page) == []
    await page.context.close()
