"""threadkeeper: a Slack and Discord assistant bot that keeps each user's thread."""
