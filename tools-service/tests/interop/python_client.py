#!/usr/bin/env python3
"""Interop check: drive tools-service with the official Python MCP SDK (`mcp`, pinned to 2.3.0).

usage: .interop/venv/bin/python tools-service/tests/interop/python_client.py URL [TOKEN]
       (scripts/setup-interop.sh creates that venv)

URL is the streamable HTTP endpoint (e.g. http://127.0.0.1:8080/mcp). With TOKEN, every HTTP
request carries `Authorization: Bearer TOKEN`.

Checks, each printed as one `PASS|FAIL <name>: <detail>` line:
  initialize, the business tools are listed, get_customer_detail(251) returns first_name "John"
  without isError, get_customer_detail(999999) returns isError, trouble_shoot_device(252) streams
  >= 3 progress notifications (strictly increasing, each with total and message) and succeeds.
Exit status: 0 all passed, 1 a check failed, 2 usage or environment error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import traceback
from typing import Any

EXPECTED_TOOLS = (
    "get_all_customers",
    "get_customer_detail",
    "pay_invoice",
    "search_knowledge_base",
    "trouble_shoot_device",
)
HTTP_ERRORS: list[str] = []  # non-2xx HTTP answers seen, for error messages
REQUEST_TIMEOUT_S = 60.0  # per MCP request
OVERALL_TIMEOUT_S = 180.0  # whole run

try:
    import importlib.metadata

    import anyio
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
    from mcp.types import PaginatedRequestParams
except ImportError as e:  # pragma: no cover - environment problem, not a test failure
    sys.stderr.write(
        f"python_client.py: cannot import the MCP SDK ({e}).\n"
        "Run scripts/setup-interop.sh and use .interop/venv/bin/python.\n"
    )
    sys.exit(2)


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, name: str, detail: str) -> None:
        self.passed += 1
        print(f"PASS {name}: {detail}", flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        print(f"FAIL {name}: {detail}", flush=True)


def text_of(result: Any) -> str:
    """Concatenated text content of a CallToolResult (for messages and the no-structuredContent fallback)."""
    return "\n".join(getattr(c, "text", "") for c in (result.content or []) if getattr(c, "type", None) == "text")


def short(s: str, n: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 3] + "..."


async def check_customer_found(session: ClientSession, checks: Checks) -> None:
    name = "get_customer_detail(251)"
    try:
        result = await session.call_tool("get_customer_detail", {"customer_id": 251})
    except MCPError as e:
        checks.fail(name, f"JSON-RPC error instead of a tool result: {e}")
        return
    except RuntimeError as e:  # the SDK's outputSchema validation of structuredContent
        checks.fail(name, f"result rejected by the SDK: {e}")
        return
    if result.is_error:
        checks.fail(name, f"isError is true: {short(text_of(result))}")
        return
    data = result.structured_content
    source = "structuredContent"
    if data is None:
        source = "text content (no structuredContent)"
        try:
            data = json.loads(text_of(result))
        except ValueError:
            checks.fail(name, f"no structuredContent and the text is not JSON: {short(text_of(result))}")
            return
    if not isinstance(data, dict):
        checks.fail(name, f"{source} is not an object: {short(json.dumps(data))}")
        return
    if data.get("first_name") != "John":
        checks.fail(name, f"{source}.first_name is {data.get('first_name')!r}, expected 'John'")
        return
    checks.ok(name, f"isError=false, {source}.first_name == 'John'")


async def check_customer_missing(session: ClientSession, checks: Checks) -> None:
    name = "get_customer_detail(999999)"
    try:
        result = await session.call_tool("get_customer_detail", {"customer_id": 999999})
    except MCPError as e:
        checks.fail(name, f"JSON-RPC error instead of a tool result with isError=true: {e}")
        return
    if result.is_error is not True:
        checks.fail(name, f"isError is {result.is_error!r}, expected true; content: {short(text_of(result))}")
        return
    checks.ok(name, f"isError=true ({short(text_of(result), 80)!r})")


async def check_progress(session: ClientSession, checks: Checks) -> None:
    name = "trouble_shoot_device(252) progress"
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    try:
        result = await session.call_tool("trouble_shoot_device", {"customer_id": 252}, progress_callback=on_progress)
    except MCPError as e:
        checks.fail(name, f"JSON-RPC error: {e}")
        return
    # The SDK runs progress callbacks as separate tasks: let the ones already received finish.
    for _ in range(20):
        await anyio.sleep(0.01)

    problems = []
    if result.is_error:
        problems.append(f"final result has isError=true: {short(text_of(result))}")
    if len(events) < 3:
        problems.append(f"{len(events)} progress notifications, expected at least 3")
    values = [p for p, _, _ in events]
    if any(b <= a for a, b in itertools.pairwise(values)):
        problems.append(f"progress values not strictly increasing: {values}")
    for i, (p, total, message) in enumerate(events):
        if total is None:
            problems.append(f"notification #{i + 1} (progress={p}) has no total")
        if not message:
            problems.append(f"notification #{i + 1} (progress={p}) has no message")
    if problems:
        checks.fail(name, "; ".join(problems))
    else:
        shown = ", ".join(f"{p:g}/{t:g} {m!r}" for p, t, m in events)
        checks.ok(name, f"{len(events)} notifications [{shown}], isError=false")


async def run(url: str, token: str | None, checks: Checks) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else None

    async def note_http_errors(response: httpx2.Response) -> None:
        # The SDK reports a non-2xx answer as a bare "Server returned an error response": keep the status.
        if response.status_code >= 400:
            HTTP_ERRORS.append(f"HTTP {response.status_code} for {response.request.method} {response.request.url}")

    # The SDK takes HTTP settings (headers, auth) through a caller-built httpx2 client.
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [note_http_errors]},
            )
        )
        read_stream, write_stream = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(
            ClientSession(read_stream, write_stream, read_timeout_seconds=REQUEST_TIMEOUT_S)
        )
        await exercise(session, checks)


async def exercise(session: ClientSession, checks: Checks) -> None:
    init = await session.initialize()
    info = init.server_info
    checks.ok(
        "initialize",
        f"server {info.name!r} {info.version!r}, protocol {init.protocol_version}, "
        f"tools capability {'present' if init.capabilities.tools is not None else 'ABSENT'}",
    )

    tools = []
    params = None
    while True:  # follow pagination
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        if not page.next_cursor:
            break
        params = PaginatedRequestParams(cursor=page.next_cursor)
    names = {t.name for t in tools}
    missing = [t for t in EXPECTED_TOOLS if t not in names]
    if missing:
        checks.fail("tools/list", f"missing {missing}; server lists {sorted(names)}")
    else:
        checks.ok("tools/list", f"{len(tools)} tools, all of {list(EXPECTED_TOOLS)} present")

    for label, tool, check in (
        ("get_customer_detail(251)", "get_customer_detail", check_customer_found),
        ("get_customer_detail(999999)", "get_customer_detail", check_customer_missing),
        ("trouble_shoot_device(252) progress", "trouble_shoot_device", check_progress),
    ):
        if tool in names:
            await check(session, checks)
        else:
            checks.fail(label, f"not run: {tool} is not listed by tools/list")


async def run_with_deadline(url: str, token: str | None, checks: Checks) -> None:
    with anyio.fail_after(OVERALL_TIMEOUT_S):
        await run(url, token, checks)


def describe(e: BaseException) -> str:
    """One line for an exception, unwrapping the exception groups that anyio task groups raise."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    if isinstance(e, TimeoutError):
        return f"timed out after {OVERALL_TIMEOUT_S:g}s"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        sys.stderr.write(__doc__ or "")
        return 2
    url = argv[1]
    token = argv[2] if len(argv) == 3 and argv[2] else None
    version = importlib.metadata.version("mcp")
    if not version.startswith("2."):
        sys.stderr.write(f"python_client.py: written for mcp 2.x (pinned 2.3.0), found mcp {version}\n")
        return 2
    print(f"python_client: mcp {version} -> {url}{' (bearer token)' if token else ''}", flush=True)

    checks = Checks()
    try:
        anyio.run(run_with_deadline, url, token, checks)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - report any abort as one clear failure line
        seen = f" [{'; '.join(HTTP_ERRORS[-3:])}]" if HTTP_ERRORS else ""
        checks.fail("session", f"aborted: {describe(e)}{seen}")
        traceback.print_exc(file=sys.stderr)
    print(f"python_client: {checks.passed} passed, {checks.failed} failed", flush=True)
    return 0 if checks.failed == 0 and checks.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
