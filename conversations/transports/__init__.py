"""The wire formats we speak over HTTP, one thin module each.

Every module reads the request with `base` (which raises `Rejected`), admits it through
conversations/admission.py, hands a `TurnRequest` to the pipeline, serializes the turn's events,
and renders `Rejected` in its own API's one error shape: `aiavatar` (/chat, /start) and
`speech_api` (/stt, /tts) through `aiavatar_wire.error_response`, `dify_api` and `openai_api`
through their own.
"""
