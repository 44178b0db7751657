"""A small MCP server, built with the official `mcp` SDK's server side, for tests.

Run it as a command (stdio, as an operator's MCP server would be launched):

    python tests/fakes/mcp_server.py

or over streamable HTTP on loopback:

    python tests/fakes/mcp_server.py --http PORT

Its tools cover what avatarsite must handle: structured content (`weather`), a tool that
fails (`fail`, an isError result), a server that dies mid-call (`crash`), one that reports
which process answered and the headers it received (`whoami`), and one that adds a tool and
tells the client its tool list changed (`grow`). It is a separate process so that the real
transports (pipes, HTTP) run unmodified, and so that tests can kill it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

server = MCPServer("fake-tools", log_level="WARNING")


class Forecast(BaseModel):
    city: str
    celsius: int
    sky: str


@server.tool(description="Today's weather in a city.")
def weather(city: str) -> Forecast:
    return Forecast(city=city, celsius=21, sky="clear")


@server.tool(description="Always fails, with the reason it is given.")
def fail(reason: str = "no reason") -> str:
    raise ToolError(f"failed on purpose: {reason}")


@server.tool(description="Exit the server process in the middle of the call.")
def crash() -> str:
    os._exit(3)


@server.tool(description="Which server process answers, and the headers it received.")
def whoami(ctx: Context) -> dict[str, Any]:
    headers = ctx.headers or {}
    return {"pid": os.getpid(), "authorization": headers.get("authorization")}


@server.tool(description="Add a tool named `name` and announce that the tool list changed.")
async def grow(name: str, ctx: Context) -> str:
    def added() -> str:
        return f"{name} is here"

    server.add_tool(added, name=name, description=f"A tool added at run time: {name}.")
    await ctx.notify_tools_changed()
    return f"added {name}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP")
    options = parser.parse_args()
    if options.http:
        server.run("streamable-http", host="127.0.0.1", port=options.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
