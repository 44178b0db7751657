"""LINE Messaging API transport: one LINE channel per character, webhooks processed in Celery."""
