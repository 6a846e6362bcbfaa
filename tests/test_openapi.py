"""The OpenAPI document is valid, covers every route, and is true of the live server.

Schemathesis (its CLI, in a subprocess, so the server keeps running on this event loop)
generates requests from the document served by the running service and checks every
response against it: no 5xx, only documented status codes, content types, headers and
bodies, auth enforced where the document says so, created media readable and deleted
media gone. Its only target is the service on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import tornado.web
from openapi_spec_validator import validate
from tornado.routing import PathMatches

from mediasvc.app import Service
from mediasvc.auth import Principal
from mediasvc.handlers import console
from mediasvc.models.media import ListParams
from tests.support.client import API, Client
from tests.support.tokens import make_token

# What "true" means: these checks must pass on every generated request. Left out:
# positive_data_acceptance (what JSON Schema cannot say: a file needs an allowed extension,
# its content type depends on it, operations depend on the media's type), negative_data_rejection
# (query and form values are strings the server trims and parses leniently).
CHECKS = (
    "unsupported_method",
    "allow_header_conformance",
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
    "ensure_resource_availability",
    "use_after_free",
)
MAX_EXAMPLES = 25
RUN_TIMEOUT = 120  # seconds; a run normally takes 35-45
# Fewer examples where requests carry files or cannot pass a signature check.
CONFIG = """\
[[operations]]
include-path = ["/api/v1/drf/media/upload/", "/api/v1/drf/media/batch_upload/"]
generation.max-examples = 10

[[operations]]
include-path = "/files/{key}"
generation.max-examples = 10

[[operations]]
include-path = "/uploads/{key}"
generation.max-examples = 5
# a body of a binary type cannot be made invalid, so negative examples are all filtered out
generation.mode = "positive"
"""
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


async def test_document_is_valid_openapi_3_1(client: Client) -> None:
    response = await client.request("GET", f"{API}/openapi.json")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/json")
    document = response.json
    validate(document)  # picks the 3.1 validator from the `openapi` field
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": client.base}]


async def test_every_route_and_method_is_documented(service: Service, client: Client) -> None:
    """Each documented path reaches a route (the first that matches, as Tornado picks) whose
    handler implements exactly the documented methods, and every route is reached."""
    document = (await client.request("GET", f"{API}/openapi.json")).json
    app = service.server.request_callback
    assert isinstance(app, tornado.web.Application)
    routes = []
    for rule in app.wildcard_router.rules:
        assert isinstance(rule.matcher, PathMatches)
        if getattr(rule.target, "__module__", "") == console.__name__:
            continue  # the web console's pages and the overview they read are not the API
        routes.append((rule.matcher.regex, rule.target))
    reached = set()
    for path, item in document["paths"].items():
        sample = path.replace("{media_id}", str(uuid.uuid4())).replace("{key}", "media/a/b.jpg")
        index = next((i for i, (regex, _) in enumerate(routes) if regex.match(sample)), None)
        assert index is not None, f"{path} is documented but no route serves it"
        reached.add(index)
        handler = routes[index][1]
        assert isinstance(handler, type) and issubclass(handler, tornado.web.RequestHandler)
        implemented = {
            method
            for method in METHODS
            if getattr(handler, method) is not getattr(tornado.web.RequestHandler, method)
        }
        assert set(item) & set(METHODS) == implemented, (path, handler.__name__)
    missing = [regex.pattern for i, (regex, _) in enumerate(routes) if i not in reached]
    assert not missing, f"routes missing from the document: {missing}"


async def test_live_server_conforms_to_the_document(
    service: Service, client: Client, tmp_path: Path
) -> None:
    sub = str(uuid.uuid4())
    token = make_token(sub, roles=["admin"], ttl=RUN_TIMEOUT + 60)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file", str(tmp_path / "schemathesis.toml"),
        "--no-color",
        "run", f"{client.base}{API}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",  # CPython 3.11.7 can fail a threaded ast build (gh-106905)
        "--request-timeout", "20",
        "--max-redirects", "0",  # a download's 302 is the answer, not a hop to follow
        "--generation-database", "none",
        "--suppress-health-check", "too_slow,filter_too_much",  # load-dependent, not API faults
        "--warnings", "off",
    ]  # fmt: skip
    seed = os.environ.get("OPENAPI_TEST_SEED")  # to repeat a failed run (it ends "Seed: N")
    if seed:
        command += ["--seed", seed]
    started = time.monotonic()
    try:
        returncode, output = await _run(command, tmp_path)
    finally:
        await _remove_what_the_run_made(service, sub)
    assert returncode == 0, f"schemathesis failed ({time.monotonic() - started:.0f}s):\n{output}"


async def _run(command: list[str], folder: Path) -> tuple[int, str]:
    """Run the CLI with no proxies (loopback only): its exit code and report."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["SCHEMATHESIS_HOOKS"] = "tests.support.schemathesis_hooks"  # tus bodies are bytes
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")]
    )
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=folder,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        process.kill()
        stdout, _ = await process.communicate()
        return -1, f"timed out after {RUN_TIMEOUT}s\n" + _excerpt(stdout.decode(errors="replace"))
    assert process.returncode is not None
    return process.returncode, _excerpt(stdout.decode(errors="replace"))


def _excerpt(output: str, limit: int = 30_000) -> str:
    """The report from its first failure or error on, and always its summary at the end."""
    starts = [i for i in (output.find("= ERRORS ="), output.find("= FAILURES =")) if i >= 0]
    report = output[min(starts) :] if starts else output
    if len(report) <= limit:
        return report
    return report[: limit // 2] + "\n[...]\n" + report[-limit // 2 :]


async def _remove_what_the_run_made(service: Service, sub: str) -> None:
    """Delete the media and webhook endpoints the run created and let the jobs settle, for
    the tests after us."""
    context = service.context
    principal = Principal(sub, roles=frozenset({"admin"}))
    uploads = context.media.parse_list_query(Principal(sub), ListParams(limit=100))
    while made := (await context.media.list_media(uploads)).items:
        for media in made:
            await context.media.delete(principal, media.id)
    for endpoint in await context.webhooks.list_all(principal):  # and the endpoints it made
        await context.webhooks.delete(principal, endpoint.id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        active: dict[str, Any] = await context.repository.count_jobs(("queued", "running"))
        if not sum(active.values()):
            break
        await asyncio.sleep(0.2)
