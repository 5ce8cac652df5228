"""Operations around the bot: retention (janitor), the threads admin CLI, doctor, metrics, serving extras."""
