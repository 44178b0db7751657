"""ChatMemory's paths under /memory/ (memory/chatmemory.py)."""

from django.urls import path

from . import chatmemory as api

urlpatterns = [
    path(
        "history",
        api.endpoint(POST=api.post_history, GET=api.get_history, DELETE=api.delete_history),
    ),
    path("history/session_ids", api.endpoint(GET=api.get_session_ids)),
    path("history/sessions", api.endpoint(GET=api.get_sessions)),
    path("summary/create", api.endpoint(POST=api.create_summary)),
    path("summary", api.endpoint(GET=api.get_summary, DELETE=api.delete_summary)),
    path(
        "knowledge",
        api.endpoint(POST=api.post_knowledge, GET=api.get_knowledge, DELETE=api.delete_knowledge),
    ),
    path("diary", api.endpoint(POST=api.post_diary, GET=api.get_diary, DELETE=api.delete_diary)),
    path("search", api.endpoint(POST=api.post_search)),
]
