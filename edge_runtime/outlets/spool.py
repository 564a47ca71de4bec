"""Store and forward on disk: an append-only, bounded, ordered queue of messages that survives a restart.

Layout of a spool folder: ``spool.jsonl`` (one ``{"seq", "topic", "payload"}``
per line, appended and flushed as messages arrive) and ``acked`` (the highest
``seq`` delivered, replaced atomically). On start the lines after ``acked`` are
pending again, in order. When more than ``max_items`` are pending the oldest are
dropped and counted (:attr:`dropped`), so a broker that stays away for days
cannot fill the disk. The file is rewritten with only the pending lines once it
holds many delivered ones. A torn last line (power cut while appending) is skipped.

Single-threaded by design: only the outlet's publisher thread touches it.
"""
from __future__ import annotations

import json
import logging
import os
from collections import deque
from pathlib import Path

__all__ = ["Spool"]

log = logging.getLogger("selfmis.edge_runtime")


class Spool:
    def __init__(self, folder, max_items: int = 10000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path, self.acked_path = self.folder / "spool.jsonl", self.folder / "acked"
        self.max_items = int(max_items)
        self.dropped = 0
        self.pending: deque = deque()
        self._lines = 0
        acked = -1
        try:
            acked = int(self.acked_path.read_text().strip() or -1)
        except (OSError, ValueError):
            pass
        self.seq = acked + 1
        if self.path.exists():
            for n, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines()):
                try:
                    m = json.loads(line)
                except ValueError:
                    log.warning("%s: line %d is torn or corrupt; skipped", self.path, n + 1)
                    continue
                self._lines += 1
                if m["seq"] > acked:
                    self.pending.append(m)
                self.seq = max(self.seq, m["seq"] + 1)
        self._acked = acked
        self._file = open(self.path, "a", encoding="utf-8")
        self._trim()
        if self.pending:
            log.info("%s: %d message(s) from before the restart still to deliver", self.folder, len(self.pending))

    def __len__(self):
        return len(self.pending)

    def append(self, topic: str, payload: str) -> dict:
        m = {"seq": self.seq, "topic": topic, "payload": payload}
        self.seq += 1
        self._file.write(json.dumps(m, separators=(",", ":")) + "\n")
        self._file.flush()
        self._lines += 1
        self.pending.append(m)
        self._trim()
        return m

    def peek(self):
        return self.pending[0] if self.pending else None

    def ack(self, m: dict) -> None:
        """``m`` (the head) was delivered."""
        if self.pending and self.pending[0]["seq"] == m["seq"]:
            self.pending.popleft()
        self._acked = m["seq"]
        self._write_acked()
        if not self.pending and self._lines > 1000 or self._lines > 4 * max(self.max_items, 1000):
            self._compact()

    def _write_acked(self) -> None:
        tmp = self.acked_path.with_suffix(".tmp")
        tmp.write_text(str(self._acked))
        os.replace(tmp, self.acked_path)

    def _trim(self) -> None:
        if len(self.pending) <= self.max_items:
            return
        while len(self.pending) > self.max_items:
            self._acked = self.pending.popleft()["seq"]  # dropped counts as done: not resent after a restart
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("%s: spool full (%d); dropped %d oldest message(s)", self.folder, self.max_items,
                            self.dropped)
        if hasattr(self, "_file"):
            self._write_acked()

    def _compact(self) -> None:
        self._file.close()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for m in self.pending:
                f.write(json.dumps(m, separators=(",", ":")) + "\n")
        os.replace(tmp, self.path)
        self._lines = len(self.pending)
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()
