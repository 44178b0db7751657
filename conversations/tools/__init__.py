"""What a character may do besides talk, and what it must not say.

- `base`: what a tool is, the registry of tools written in code, and running one;
- `builtin`: the tools every character has (its diary, the user's name);
- `mcp_servers`: tools offered by the operators' MCP servers;
- `offer`: which tools each round of a turn offers the model (dynamic tools);
- `rounds`: running the calls of one round of a turn;
- `guardrails`: the operators' checks on what users ask and characters answer.

Plugins register tools with `conversations.tools.tool`; the names below are that public API.
"""

from .base import Tool, ToolContext, ToolResult, registry, tool

__all__ = ["Tool", "ToolContext", "ToolResult", "registry", "tool"]
