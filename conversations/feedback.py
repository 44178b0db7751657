"""End users' verdicts on answers: like or dislike, with an optional comment.

One rule for every route that takes them (Dify's `/messages/<id>/feedbacks`, AIAvatarKit's
`/feedback`): a verdict is kept on a completed turn of the end user's own with the character;
any other turn id (another user's, another character's, another tenant's, made up) finds
nothing. Operators read them in the admin's turn records (filter *feedback*).
"""

from __future__ import annotations

import uuid

from django.utils import timezone

from characters.models import Character

from .models import EndUser, TurnRecord

# Longer comments are refused: a verdict, not an essay.
MAX_COMMENT_LENGTH = 4000


def rate_turn(
    turn_id: uuid.UUID,
    character: Character,
    end_user: EndUser | None,
    rating: str | None,
    comment: str | None,
) -> bool:
    """Keep (or, with neither rating nor comment, withdraw) the end user's verdict on one of
    their completed turns; False when there is no such turn."""
    if end_user is None:
        return False
    given = bool(rating or comment)
    updated = TurnRecord.objects.filter(
        id=turn_id,
        character=character,
        end_user=end_user,
        status=TurnRecord.Status.COMPLETED,
    ).update(
        feedback_rating=rating or "",
        feedback_content=comment or "",
        feedback_at=timezone.now() if given else None,
    )
    return bool(updated)
