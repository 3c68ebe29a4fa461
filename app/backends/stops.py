"""Stop strings over a stream of text deltas: the one scanner every backend applies.

The work a delta costs is bounded by the delta's length and the stops' (at most 64 characters
each, `app.serving.limits`): the text searched is the delta and what was held back, never
more than a stop's length, and a held-back end is found from its candidate starts, not from
every prefix of every stop."""

from __future__ import annotations


class StopScanner:
    """Cuts the output before the first stop string, holding back text that may start one."""

    def __init__(self, stops: tuple[str, ...]):
        self._stops = tuple(filter(None, stops))  # one made per request: no generator
        self._held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """The text that is safe to emit now; sets `stopped` when a stop string appeared."""
        if not self._stops:
            return delta
        text = self._held + delta
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return text[: min(hits)]
        keep = max(_opening(text, stop) for stop in self._stops)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Text still held back when the output ended without a stop string."""
        held, self._held = self._held, ""
        return held


def _opening(text: str, stop: str) -> int:
    """The length of the longest end of `text` that `stop` begins with, short of all of it."""
    first = max(len(text) - len(stop) + 1, 0)  # an end as long as the stop would be a hit
    start = text.find(stop[0], first)
    while start != -1:  # from the left: the first that fits is the longest
        if stop.startswith(text[start:]):
            return len(text) - start
        start = text.find(stop[0], start + 1)
    return 0
