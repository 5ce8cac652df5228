"""What every adapter shares, so each platform module holds only what is particular to it.

* :mod:`adapters.kit.reply`: the :class:`~adapters.kit.reply.Reply` protocol, :func:`~adapters.kit.reply.deliver`
  and the throttled :class:`~adapters.kit.reply.Pump`;
* :mod:`adapters.kit.pacing`: calls under a platform's rate limits (lanes, urgent and luxury calls, the
  :class:`~adapters.kit.pacing.Pacer`; the store shares the lanes between workers through Redis);
* :mod:`adapters.kit.tasks`: :class:`~adapters.kit.tasks.InFlight` and :func:`~adapters.kit.tasks.run_until_stopped`;
* :mod:`adapters.kit.texts`: ``/forget`` replies and :func:`~adapters.kit.texts.user_sentence`;
* :mod:`adapters.kit.text`: mention stripping and fence-aware splitting.
"""
