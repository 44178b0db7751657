from conversations.pipeline.prompt import render_persona


def test_it_fills_known_placeholders_only() -> None:
    persona = 'Hi {name}, today is {day}. Format: {"a": 1} {{x}} {0}'

    assert render_persona(persona, {"name": "Ada"}) == (
        'Hi Ada, today is {day}. Format: {"a": 1} {{x}} {0}'
    )


def test_it_returns_the_persona_untouched_without_params() -> None:
    assert render_persona("Hi {name}", None) == "Hi {name}"
    assert render_persona("Hi {name}", {}) == "Hi {name}"
