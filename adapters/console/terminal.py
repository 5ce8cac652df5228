"""The console in a terminal: prompt_toolkit's line editor, run on the bot's own event loop.

Arrows, Home/End and the usual Emacs keys edit the line; Up and Down recall earlier lines (kept in
memory for this session only: a file would keep what people typed on disk). A paste arrives as one
bracketed paste, however many lines and characters it has, and becomes one message; Esc then Enter
adds a line by hand. Ctrl-D on an empty line or Ctrl-C leaves.

While the prompt is shown, whatever is written to stdout or stderr (a warning) is printed above it
rather than through it. Answers are written while no prompt is shown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prompt_toolkit import PromptSession
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

PROMPT = "> "


def _bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _new_line(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


async def chat(ask: Callable[[str], Awaitable[None]]) -> None:
    """Prompt, hand each entered text to ``ask`` (which writes the answer), until Ctrl-D or Ctrl-C."""
    session: PromptSession[str] = PromptSession(history=InMemoryHistory(), key_bindings=_bindings())
    while True:
        try:
            with patch_stdout(raw=True):
                # The loop's own SIGINT/SIGTERM handlers stay: Ctrl-C at the prompt is a key (raw mode).
                text = await session.prompt_async(PROMPT, handle_sigint=False, set_exception_handler=False)
        except (EOFError, KeyboardInterrupt):
            return
        await ask(text)
