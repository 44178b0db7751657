"""The avatar socket `/avatar/ws`: avatar-chat-server's protocol, driven by our pipeline
(docs/avatar.md#the-avatar-socket)."""
