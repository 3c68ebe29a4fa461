"""Stop strings over a stream of text deltas: the one scanner every backend applies."""

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
        keep = max(
            (n for s in self._stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0
        )
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """Text still held back when the output ended without a stop string."""
        held, self._held = self._held, ""
        return held
