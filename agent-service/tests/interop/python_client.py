#!/usr/bin/env python3
"""Interop check: drive agent-service with the official Python MCP SDK (`mcp`, pinned to 2.3.0).

usage: .interop/venv/bin/python agent-service/tests/interop/python_client.py URL TOKEN [--sessions]
       (scripts/setup-interop.sh creates that venv)

URL is the streamable HTTP endpoint (e.g. http://127.0.0.1:8090/mcp); every HTTP request carries
`Authorization: Bearer TOKEN`. The service must answer with the offline planner (no model
configured) in front of a tools service holding the scenario customers. `--sessions`: the service
runs with `--mcp-sessions true`, so this client (which initializes with a protocol older than
2026-07-28) holds an MCP session that stands in for conversation_id.

Checks, each printed as one `PASS|FAIL <name>: <detail>` line:
  initialize; an Mcp-Session-Id is given with --sessions and none without; tools/list has exactly
  the three experts, each with an outputSchema; ask_product_expert(255) answers done with the
  Mobile Loyalty Discount and a conv_ id; a follow-up naming no customer, with that conversation_id,
  keeps the id and finds the customer in the conversation; the same follow-up without
  conversation_id keeps the id with --sessions, and without starts a new conversation that asks
  for the customer id; ask_account_expert on a slow line (252) relays >= 3 progress notifications
  of trouble_shoot_device (strictly increasing, each with a message) and answers done; an unknown
  argument gets isError.
Exit status: 0 all passed, 1 a check failed, 2 usage or environment error.
It shares its reporting helpers and time limits with tools-service/tests/interop/python_client.py.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import itertools
import sys
import traceback
from pathlib import Path
from typing import Any

EXPERTS = ("ask_billing_expert", "ask_account_expert", "ask_product_expert")
# Customer 255 is Gold and eligible for the Mobile Loyalty Discount (agent-service/tests/planner.rs).
PROMOTIONS = "Which promotions am I eligible for? customer 255"
PROMOTION = "Mobile Loyalty Discount"
# Names no customer: only the conversation it continues can tell the planner which one.
FOLLOW_UP = "Which promotions can I get?"
# Customer 252's slow line: the account expert runs trouble_shoot_device, which reports progress.
SLOW_LINE = "My internet is very slow, customer 252"
OFFLINE_NOTE = "(Answered by the offline planner: no language model is configured.)"
HTTP_ERRORS: list[str] = []  # non-2xx HTTP answers seen, for error messages
SESSION_IDS: set[str] = set()  # the Mcp-Session-Id headers the service answered with


def _tools_service_client() -> Any:
    """The tools service's SDK client, whose reporting helpers and time limits this one shares."""
    path = Path(__file__).resolve().parents[3] / "tools-service/tests/interop/python_client.py"
    spec = importlib.util.spec_from_file_location("tools_service_python_client", path)
    if spec is None or spec.loader is None:
        sys.stderr.write(f"python_client.py: cannot load {path}\n")
        sys.exit(2)
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True  # no __pycache__ left in the tools service's test folder
    spec.loader.exec_module(module)
    return module


# Loading it checks that the SDK is installed (exit status 2 if not), so the imports below work.
shared = _tools_service_client()
Checks = shared.Checks
describe, short, text_of = shared.describe, shared.short, shared.text_of

import anyio  # noqa: E402
import httpx2  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402


async def ask(
    session: ClientSession, checks: Checks, name: str, tool: str, arguments: dict[str, Any], **options: Any
) -> dict[str, Any] | None:
    """An expert's structured answer, or None after a FAIL line saying why there is none."""
    try:
        result = await session.call_tool(tool, arguments, **options)
    except MCPError as e:
        checks.fail(name, f"JSON-RPC error instead of a tool result: {e}")
        return None
    except RuntimeError as e:  # the SDK's outputSchema validation of structuredContent
        checks.fail(name, f"result rejected by the SDK: {e}")
        return None
    if result.is_error:
        checks.fail(name, f"isError is true: {short(text_of(result))}")
        return None
    if not isinstance(result.structured_content, dict):
        checks.fail(name, f"structuredContent is not an object: {result.structured_content!r}")
        return None
    return result.structured_content


def answer_problems(answer: dict[str, Any], status: str, facts: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with an offline planner's `answer`, expected to have `status` and `facts`."""
    text = answer.get("answer") or ""
    problems = []
    if answer.get("status") != status:
        problems.append(f"status is {answer.get('status')!r}, expected {status!r} ({short(text)!r})")
    for fact in (*facts, OFFLINE_NOTE):
        if fact not in text:
            problems.append(f"the answer lacks {fact!r}: {short(text)!r}")
    conversation = answer.get("conversation_id")
    if not (isinstance(conversation, str) and conversation.startswith("conv_")):
        problems.append(f"conversation_id is {conversation!r}, expected 'conv_...'")
    return problems


def report(checks: Checks, name: str, problems: list[str], detail: str) -> None:
    if problems:
        checks.fail(name, "; ".join(problems))
    else:
        checks.ok(name, detail)


async def check_conversation(session: ClientSession, checks: Checks, sessions: bool) -> None:
    name = "ask_product_expert(255)"
    first = await ask(session, checks, name, "ask_product_expert", {"question": PROMOTIONS})
    if first is None:
        for later in ("follow-up with conversation_id", "follow-up without conversation_id"):
            checks.fail(later, f"not run: {name} gave no answer")
        return
    conversation = first.get("conversation_id")
    called = [c.get("name") for c in first.get("tool_calls") or [] if c.get("ok")]
    problems = answer_problems(first, "done", (PROMOTION,))
    if "get_eligible_promotions" not in called:
        problems.append(f"get_eligible_promotions not called successfully: {called}")
    report(checks, name, problems, f"done, {PROMOTION!r}, conversation {conversation}, calls {called}")

    name = "follow-up with conversation_id"
    arguments = {"question": FOLLOW_UP, "conversation_id": conversation}
    if (answer := await ask(session, checks, name, "ask_product_expert", arguments)) is not None:
        problems = answer_problems(answer, "done", (PROMOTION,))
        if answer.get("conversation_id") != conversation:
            problems.append(f"conversation_id is {answer.get('conversation_id')!r}, expected {conversation!r}")
        report(checks, name, problems, f"same conversation {conversation}, customer 255 remembered")

    name = "follow-up without conversation_id"
    if (answer := await ask(session, checks, name, "ask_product_expert", {"question": FOLLOW_UP})) is None:
        return
    again = answer.get("conversation_id")
    if sessions:  # the MCP session's conversation continues
        problems = answer_problems(answer, "done", (PROMOTION,))
        if again != conversation:
            problems.append(f"conversation_id is {again!r}, expected the session's {conversation!r}")
        report(checks, name, problems, f"the session continues conversation {conversation}")
    else:  # a new conversation, which cannot know the customer
        problems = answer_problems(answer, "needs_input", ("customer id",))
        if again == conversation:
            problems.append(f"conversation_id is {again!r} again, expected a new conversation")
        report(checks, name, problems, f"new conversation {again}, which asks for the customer id")


async def check_progress(session: ClientSession, checks: Checks) -> None:
    name = "ask_account_expert(252) progress"
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    arguments = {"question": SLOW_LINE}
    answer = await ask(session, checks, name, "ask_account_expert", arguments, progress_callback=on_progress)
    if answer is None:
        return
    # The SDK runs progress callbacks as separate tasks: let the ones already received finish.
    for _ in range(20):
        await anyio.sleep(0.01)

    problems = answer_problems(answer, "done", ("Jane Doe (customer 252)", "The remote diagnosis"))
    diagnoses = [c for c in answer.get("tool_calls") or [] if c.get("name") == "trouble_shoot_device"]
    if not any(c.get("ok") for c in diagnoses):
        problems.append(f"trouble_shoot_device did not run successfully: {diagnoses}")
    if len(events) < 3:
        problems.append(f"{len(events)} progress notifications, expected at least 3")
    values = [p for p, _, _ in events]
    if any(b <= a for a, b in itertools.pairwise(values)):
        problems.append(f"progress values not strictly increasing: {values}")
    for i, (p, _, message) in enumerate(events):
        if not (message or "").startswith("trouble_shoot_device:"):
            problems.append(f"notification #{i + 1} (progress={p}) has message {message!r}, expected the tool's")
    shown = ", ".join(f"{p:g} {m!r}" for p, _, m in events[:3])
    report(checks, name, problems, f"{len(events)} notifications [{shown}, ...], done")


async def check_unknown_argument(session: ClientSession, checks: Checks) -> None:
    name = "unknown argument"
    arguments = {"question": PROMOTIONS, "customer_id": 255}
    try:
        result = await session.call_tool("ask_product_expert", arguments)
    except MCPError as e:
        checks.fail(name, f"JSON-RPC error instead of a tool result with isError=true: {e}")
        return
    text = text_of(result)
    if result.is_error is not True:
        checks.fail(name, f"isError is {result.is_error!r}, expected true; content: {short(text)}")
    elif "customer_id" not in text:
        checks.fail(name, f"isError=true, but the message does not name the argument: {short(text)!r}")
    else:
        checks.ok(name, f"isError=true ({short(text, 80)!r})")


async def run(url: str, token: str, sessions: bool, checks: Checks) -> None:
    async def observe(response: httpx2.Response) -> None:
        # The SDK reports a non-2xx answer as a bare "Server returned an error response": keep the status.
        if response.status_code >= 400:
            HTTP_ERRORS.append(f"HTTP {response.status_code} for {response.request.method} {response.request.url}")
        # The SDK keeps its session id to itself.
        if session_id := response.headers.get("mcp-session-id"):
            SESSION_IDS.add(session_id)

    # The SDK takes HTTP settings (headers, auth) through a caller-built httpx2 client.
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [observe]},
            )
        )
        read_stream, write_stream = await stack.enter_async_context(streamable_http_client(url, http_client=http))
        session = await stack.enter_async_context(
            ClientSession(read_stream, write_stream, read_timeout_seconds=shared.REQUEST_TIMEOUT_S)
        )
        await exercise(session, sessions, checks)


async def exercise(session: ClientSession, sessions: bool, checks: Checks) -> None:
    init = await session.initialize()
    info = init.server_info
    checks.ok("initialize", f"server {info.name!r} {info.version!r}, protocol {init.protocol_version}")

    name = "mcp session"
    if sessions and len(SESSION_IDS) == 1:
        checks.ok(name, "the service gave an Mcp-Session-Id")
    elif sessions:
        checks.fail(name, f"expected one Mcp-Session-Id, the service gave {len(SESSION_IDS)}")
    elif SESSION_IDS:
        checks.fail(name, "the service gave an Mcp-Session-Id although sessions are off")
    else:
        checks.ok(name, "no Mcp-Session-Id (stateless)")

    page = await session.list_tools()  # three tools: one page
    names = sorted(t.name for t in page.tools)
    without_schema = [t.name for t in page.tools if not (t.output_schema or {}).get("properties")]
    if names != sorted(EXPERTS) or without_schema or page.next_cursor:
        checks.fail(
            "tools/list",
            f"lists {names}, expected {sorted(EXPERTS)}; no outputSchema: {without_schema}; "
            f"next page: {page.next_cursor!r}",
        )
    else:
        checks.ok("tools/list", f"exactly {list(EXPERTS)}, each with an outputSchema")

    await check_conversation(session, checks, sessions)
    await check_progress(session, checks)
    await check_unknown_argument(session, checks)


async def run_with_deadline(url: str, token: str, sessions: bool, checks: Checks) -> None:
    with anyio.fail_after(shared.OVERALL_TIMEOUT_S):
        await run(url, token, sessions, checks)


def main(argv: list[str]) -> int:
    args = argv[1:]
    sessions = "--sessions" in args
    args = [a for a in args if a != "--sessions"]
    if len(args) != 2 or not args[1] or args[0] in ("-h", "--help"):
        sys.stderr.write(__doc__ or "")
        return 2
    url, token = args
    version = importlib.metadata.version("mcp")
    if not version.startswith("2."):
        sys.stderr.write(f"python_client.py: written for mcp 2.x (pinned 2.3.0), found mcp {version}\n")
        return 2
    print(f"python_client: mcp {version} -> {url} (bearer token{', sessions' if sessions else ''})", flush=True)

    checks = Checks()
    try:
        anyio.run(run_with_deadline, url, token, sessions, checks)
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
