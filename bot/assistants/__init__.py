"""Assistant backends behind one small protocol (see :mod:`bot.assistants.base`)."""
