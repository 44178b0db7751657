"""A character's daily life: its usual week, a schedule each morning and a diary each night.

Two rules shape this package, both fixes of what AIAvatarKit does:

* Money: no piece of life is paid for twice (lease.py: one payer per piece of work, paid
  answers kept until their row is saved).
* Time: dates are the character's own (its timezone). Nothing here reads the clock to decide a
  date; callers pass `now` or the date itself.

bridge.py asks the LLM for validated JSON, generators.py writes the week, the day's schedule
and the diary, days.py decides which dates are due and generates them in order, prompts.py
holds what the LLM is asked, errors.py what can stop a generation. This file imports none of
them, so prompts.py stays importable without Django (the fake LLM's answers use it).
"""
