"""Platform adapters: parse platform events into :class:`~bot.domain.Incoming` and send the replies back.

:mod:`adapters.kit` is what they share (the reply protocol and its pump, the in-flight tracker and run
loop, the texts users read, splitting); :mod:`adapters.slack`, :mod:`adapters.discord` and
:mod:`adapters.console` hold only what is particular to one platform. Adapters talk to the core
(:class:`bot.core.Core`) alone: never to the store, Redis or OpenAI.
"""
