"""The chat endpoints in the OpenAPI schema (docs/wire-protocols.md): `/chat` (AIAvatarKit's
SSE), `/chat-messages` (Dify's) and `/v1/chat/completions` (OpenAI's) are plain async Django
views, not DRF views, so drf-spectacular cannot see them. This postprocessing hook adds them:
each request body from the pydantic model the view validates with, each response as the view
sends it (the server-sent event's JSON, the blocking body, the error shape of its ecosystem).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .aiavatar_wire import RESPONSE_KEYS, AIAvatarRequest
from .dify_api import ChatMessageRequest
from .openai_api import CompletionRequest

Schema = dict[str, Any]

NULLABLE_TEXT: Schema = {"type": "string", "nullable": True}
NULLABLE_OBJECT: Schema = {"type": "object", "nullable": True, "additionalProperties": True}

# AIAvatarKit's envelope: every key on every event, null when unset, in this order.
ENVELOPE_FIELDS: dict[str, Schema] = {
    "type": {
        "type": "string",
        "enum": [
            "accepted",
            "start",
            "chunk",
            "tool_call",
            "final",
            "vision",
            "error",
            "cancelled",
            "canceled",
        ],
        "description": "start (the turn began: metadata.request_text), chunk (a sentence, with "
        "its audio), tool_call, final (the whole reply), vision (the reply asks for an image: "
        "metadata.source), error (metadata.error), cancelled (a queued request dropped), "
        "canceled (refused: metadata.reason).",
    },
    "session_id": NULLABLE_TEXT,
    "user_id": NULLABLE_TEXT,
    "context_id": {**NULLABLE_TEXT, "format": "uuid"},
    "transaction_id": {
        **NULLABLE_TEXT,
        "format": "uuid",
        "description": "The turn's record id, the same on every event of one turn.",
    },
    "text": {**NULLABLE_TEXT, "description": "With control tags such as [face:joy]."},
    "voice_text": {**NULLABLE_TEXT, "description": "What is spoken: tags removed."},
    "language": NULLABLE_TEXT,
    "control_tags": {"type": "array", "nullable": True, "items": {"type": "object"}},
    "avatar_control_request": NULLABLE_OBJECT,
    "audio_data": {**NULLABLE_TEXT, "format": "byte", "description": "One WAV, base64."},
    "metadata": NULLABLE_OBJECT,
    "structured_content": NULLABLE_OBJECT,
}

DIFY_EVENT: Schema = {
    "type": "object",
    "required": ["event"],
    "properties": {
        "event": {
            "type": "string",
            "enum": ["message", "message_end", "error", "ping"],
            "description": "message (a piece of the answer), message_end (the turn is over: "
            "metadata.usage; metadata.interrupted when a stop request cut it short), error.",
        },
        "task_id": {"type": "string", "format": "uuid"},
        "id": {"type": "string", "format": "uuid"},
        "message_id": {"type": "string", "format": "uuid"},
        "conversation_id": {"type": "string", "format": "uuid"},
        "answer": {"type": "string"},
        "created_at": {"type": "integer"},
        "metadata": {"type": "object", "additionalProperties": True},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}

DIFY_ERROR: Schema = {
    "type": "object",
    "required": ["status", "code", "message"],
    "properties": {
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}

USAGE: Schema = {
    "type": "object",
    "nullable": True,
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
    },
}


def _completion(kind: str, choice: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": [kind]},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": choice},
            "usage": USAGE,
        },
    }


MESSAGE: Schema = {
    "type": "object",
    "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
}
OPENAI_COMPLETION = _completion(
    "chat.completion",
    {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "message": MESSAGE,
            "finish_reason": {"type": "string"},
        },
    },
)
OPENAI_CHUNK = _completion(
    "chat.completion.chunk",
    {
        "type": "object",
        "properties": {
            "index": {"type": "integer"},
            "delta": MESSAGE,
            "finish_reason": {"type": "string", "nullable": True},
        },
    },
)
OPENAI_ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "code": {"type": "string", "nullable": True},
            },
        }
    },
}

AIAVATAR_ERROR: Schema = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        }
    },
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _model_schema(model: type[BaseModel], schemas: dict[str, Schema]) -> Schema:
    """`model`'s JSON schema as a component, its nested models as components of their own."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, nested in schema.pop("$defs", {}).items():
        schemas.setdefault(name, nested)
    schemas[model.__name__] = schema
    return _ref(model.__name__)


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    *,
    tag: str,
    summary: str,
    description: str,
    body: Schema,
    ok: Schema,
    errors: Schema,
) -> Schema:
    refusal = _json(errors, "Refused, in this API's own error shape.")
    return {
        "post": {
            "operationId": summary.lower().replace(" ", "_"),
            "tags": [tag],
            "summary": summary,
            "description": description,
            "security": [{"ApiKey": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "200": ok,
                **{status: refusal for status in ("400", "401", "404", "413", "422", "429")},
            },
        }
    }


def _stream(event: Schema, description: str, blocking: Schema | None = None) -> Schema:
    content: Schema = {"text/event-stream": {"schema": {**event, "description": description}}}
    if blocking is not None:
        content["application/json"] = {"schema": blocking}
    return {"description": description, "content": content}


def chat_endpoints(result: Schema, generator: Any, request: Any, public: bool) -> Schema:
    """drf-spectacular's postprocessing hook: the schema with the three chat endpoints."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (Authorization: Bearer ak_...) or a browser token.",
    }
    schemas["AIAvatarEnvelope"] = {
        "type": "object",
        "required": list(RESPONSE_KEYS),
        "properties": {key: ENVELOPE_FIELDS[key] for key in RESPONSE_KEYS},
    }
    paths = result.setdefault("paths", {})
    paths["/chat"] = _operation(
        tag="chat",
        summary="AIAvatarKit chat",
        description="One turn as server-sent events: `data: <envelope>` per event, start, "
        "chunk* (tool_call*), then final, vision or error. Audio requests carry audio_data.",
        body=_model_schema(AIAvatarRequest, schemas),
        ok=_stream(_ref("AIAvatarEnvelope"), "Each event's data is one envelope."),
        errors=AIAVATAR_ERROR,
    )
    paths["/chat-messages"] = _operation(
        tag="chat",
        summary="Dify chat message",
        description="Dify's app API: streaming (server-sent events) or blocking; the "
        "conversation id of the first answer continues the conversation.",
        body=_model_schema(ChatMessageRequest, schemas),
        ok=_stream(DIFY_EVENT, "streaming: one event per data line", DIFY_EVENT),
        errors=DIFY_ERROR,
    )
    paths["/v1/chat/completions"] = _operation(
        tag="chat",
        summary="OpenAI chat completion",
        description="OpenAI's chat completions: `model` names the character (its slug); "
        "stream=true sends chunks then `data: [DONE]`; stream_options.include_usage adds a "
        "last chunk with the usage.",
        body=_model_schema(CompletionRequest, schemas),
        ok=_stream(OPENAI_CHUNK, "stream=true: one chunk per data line", OPENAI_COMPLETION),
        errors=OPENAI_ERROR,
    )
    return result
