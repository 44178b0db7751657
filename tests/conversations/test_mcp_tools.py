"""MCP tools end to end: /chat on daphne, the fake OpenAI server scripting calls, and a real
MCP server (tests/fakes/mcp_server.py, the official SDK) over stdio and streamable HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from characters.models import Character
from conversations.models import Context, McpServer
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import free_port, stop_process, wait_for_port
from tests.sse import SSEResult, post_sse

pytestmark = pytest.mark.django_db(transaction=True)

FAKE_SERVER = Path(__file__).resolve().parent.parent / "fakes" / "mcp_server.py"
FORECAST = {"city": "Kyoto", "celsius": 21, "sky": "clear"}


@pytest.fixture(scope="module")
def mcp_http_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake MCP server over streamable HTTP on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("mcp") / "mcp.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER), "--http", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(process, port, log_path, "the fake MCP server")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop_process(process)


def stdio_server(name: str = "fake", **fields: object) -> McpServer:
    return McpServer.objects.create(
        name=name,
        transport=McpServer.Transport.STDIO,
        command=sys.executable,
        args=[str(FAKE_SERVER)],
        **fields,
    )


def ask(text: str = "Weather in Kyoto?", context_id: str | None = None) -> dict[str, object]:
    return {
        "type": "start",
        "session_id": "s1",
        "user_id": "u1",
        "text": text,
        "context_id": context_id,
    }


def call(name: str, arguments: object = "{}", call_id: str = "call_1") -> ScriptedReply:
    return ScriptedReply(tool_calls=[{"id": call_id, "name": name, "arguments": arguments}])


def results(result: SSEResult) -> list[dict]:
    """The final results of the turn's tool calls, in order."""
    calls = [e["metadata"]["tool_call"] for e in result.events if e["type"] == "tool_call"]
    return [c["result"]["data"] for c in calls if c.get("result")]


def offered(request: dict) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"] for t in request.get("tools", [])}


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_it_calls_an_mcp_tool_and_answers_with_its_structured_result(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    mcp_http_url: str,
    transport: str,
) -> None:
    if transport == "stdio":
        stdio_server()
    else:
        McpServer.objects.create(name="fake", transport="http", url=mcp_http_url)
    fake_llm.script(call("fake__weather", {"city": "Kyoto"}), ScriptedReply(text="Clear, 21."))

    result = post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    assert result.types[-1] == "final" and result.events[-1]["text"] == "Clear, 21."
    weather = offered(fake_llm.requests[0])["fake__weather"]
    assert weather["description"] == "Today's weather in a city."
    assert weather["parameters"]["required"] == ["city"]
    assert "check_temperature" in offered(fake_llm.requests[0])  # code tools stay
    assert results(result) == [FORECAST]
    assert fake_llm.requests[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps(FORECAST),
    }
    stored = list(Context.objects.get().messages.values_list("role", "content"))
    assert stored[2] == ("tool", json.dumps(FORECAST))


def test_it_sends_headers_from_environment_variables(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    mcp_http_url: str,
) -> None:
    McpServer.objects.create(
        name="fake",
        transport="http",
        url=mcp_http_url,
        headers={"Authorization": "FAKE_MCP_AUTH"},
    )
    fake_llm.script(call("fake__whoami"), ScriptedReply(text="Done."))

    result = post_sse(f"{asgi_server.url}/chat", ask("Who are you?"), key=api_key)

    assert results(result)[0]["authorization"] == "Bearer mcp-test-token"


def test_it_hands_an_mcp_tool_error_back_to_the_llm(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    stdio_server()
    fake_llm.script(call("fake__fail", {"reason": "testing"}), ScriptedReply(text="It failed."))

    result = post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    error = "Error executing tool fail: failed on purpose: testing"
    assert results(result) == [{"error": error}]
    assert json.loads(fake_llm.requests[1]["messages"][-1]["content"]) == {"error": error}
    assert result.events[-1]["text"] == "It failed."


def test_it_reconnects_on_the_next_turn_after_the_server_died(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    stdio_server()
    fake_llm.script(
        call("fake__whoami"),
        call("fake__crash", call_id="call_2"),
        ScriptedReply(text="The server is gone."),
        call("fake__whoami", call_id="call_3"),
        ScriptedReply(text="Back again."),
    )

    first = post_sse(f"{asgi_server.url}/chat", ask("Crash it"), key=api_key)
    context_id = first.events[0]["context_id"]
    second = post_sse(f"{asgi_server.url}/chat", ask("Again", context_id), key=api_key)

    before, crashed = results(first)
    assert crashed["error"].startswith("MCP server 'fake' failed:")
    assert first.events[-1]["text"] == "The server is gone."
    assert second.events[-1]["text"] == "Back again."
    (after,) = results(second)
    assert after["pid"] != before["pid"]


def test_it_refreshes_the_listing_when_the_server_says_its_tools_changed(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    stdio_server()
    fake_llm.script(call("fake__grow", {"name": "sprout"}), ScriptedReply(text="Grown."))

    first = post_sse(f"{asgi_server.url}/chat", ask("Grow"), key=api_key)
    post_sse(
        f"{asgi_server.url}/chat", ask("What now?", first.events[0]["context_id"]), key=api_key
    )

    assert "fake__sprout" not in offered(fake_llm.requests[0])
    assert "fake__sprout" in offered(fake_llm.requests[2])


def test_it_offers_a_server_only_to_its_character_and_not_when_disabled(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    other = Character.objects.create(slug="other", name="Other", llm_model="gpt-4o-mini")
    stdio_server("theirs", character=other)
    stdio_server("off", enabled=False)
    stdio_server("mine", character=character)
    character.disabled_tools = ["mine__crash"]
    character.save()

    post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    names = set(offered(fake_llm.requests[0]))
    assert {"mine__weather", "mine__whoami"} <= names
    assert "mine__crash" not in names
    assert not [n for n in names if n.startswith(("theirs__", "off__"))]


def test_a_dynamic_servers_tools_wait_for_the_trigger_and_bring_its_instruction(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    stdio_server("dyn", dynamic_tools=True, instruction="Name the city you looked up.")
    trigger = {"target": "Kyoto", "action": "weather"}
    fake_llm.script(
        call("execute_external_tool", trigger, "call_t"),
        ScriptedReply(text="[tools:dyn__weather]"),  # the selection, by the character's LLM
        call("dyn__weather", {"city": "Kyoto"}, "call_w"),
        ScriptedReply(text="Clear in Kyoto."),
    )

    result = post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    assert result.types[-1] == "final" and results(result)[-1] == FORECAST
    first, _, chosen, _ = fake_llm.requests
    assert "execute_external_tool" in offered(first) and "check_temperature" in offered(first)
    assert not [n for n in offered(first) if n.startswith("dyn__")]
    assert "Name the city you looked up." not in first["messages"][0]["content"]
    assert "dyn__weather" in offered(chosen)
    system = chosen["messages"][0]["content"]
    assert system.count("Name the city you looked up.") == 1  # once for all its tools


def test_it_leaves_out_a_server_it_cannot_reach(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    McpServer.objects.create(
        name="gone", transport="http", url=f"http://127.0.0.1:{free_port()}/mcp"
    )
    stdio_server()

    result = post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    assert result.types[-1] == "final"
    names = set(offered(fake_llm.requests[0]))
    assert "fake__weather" in names and not [n for n in names if n.startswith("gone__")]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"transport": "stdio"}, "command"),
        ({"transport": "http"}, "url"),
        ({"transport": "http", "url": "http://x/mcp", "headers": {"A": "Bearer s"}}, "headers"),
        ({"transport": "stdio", "command": "npx", "environment": ["A-B"]}, "environment"),
        ({"transport": "stdio", "command": "npx", "name": "bad name"}, "name"),
    ],
    ids=["stdio-without-command", "http-without-url", "secret-as-header", "bad-env-name", "name"],
)
def test_it_refuses_an_mcp_server_that_cannot_work(fields: dict, field: str) -> None:
    server = McpServer(**{"name": "fake", **fields})

    with pytest.raises(ValidationError) as refused:
        server.full_clean()

    assert field in refused.value.message_dict
