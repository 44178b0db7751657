"""A character as the agent behind a Live Avatar platform's hosted avatar."""
