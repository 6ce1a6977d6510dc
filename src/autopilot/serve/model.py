"""The champion a server answers with, and its reload when `models/<study>/current` names another run.

A champion is loaded from its own folder (models/<study>/<run>/, never changed once complete), not through the
symlink, so a promotion in the middle of a load cannot mix two champions. The holder swaps its reference only
once the new champion is fully loaded: a request takes the reference when it starts and finishes with it, so
requests in flight during a promotion complete on the old champion and later ones get the new one; none fails.

Usage:
    holder = ChampionHolder(study)        # loads the current champion (or none yet)
    holder.start_watching(1.0)            # a thread that reloads on a change of `current`
    champion = holder.get()               # the Loaded champion of this request, or None
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from autopilot.errors import AutopilotError
from autopilot.registry import store
from autopilot.study import Study

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """One champion in memory. `kind`: chat (causal_lm), classifier (cnn_digits), or none (nothing servable)."""

    run_id: str
    record: dict
    kind: str
    model: Any = None
    tokenizer: Any = None
    device: Any = None
    loaded_at: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time on this model


def load(study: Study, run_id: str) -> Loaded:
    """Load champion `run_id` from its folder; a champion without servable weights loads as kind `none`."""
    champion = study.models.champion(run_id)
    record = store.read_champion(champion)
    if record is None:
        raise AutopilotError(f"{champion.dir} has no champion.json: not a complete champion folder")
    weights = record["weights"]
    folder = champion.dir / (weights["path"] or "")
    if record["task"] == "causal_lm" and weights["format"] in ("transformers", "peft_adapter"):
        import torch

        from autopilot.train.tasks import causal_lm

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        base = study.project.root / weights["base_model"] if weights["base_model"] else None
        model, tokenizer = causal_lm.load_champion(folder, weights["format"], base, device)
        model.config.use_cache = True  # training turned the KV cache off; generation wants it
        return Loaded(run_id, record, "chat", model, tokenizer, device)
    if record["task"] == "cnn_digits" and weights["format"] == "pytorch_state_dict":
        from autopilot.train.tasks import cnn_digits

        return Loaded(run_id, record, "classifier", cnn_digits.load_champion(folder))
    return Loaded(run_id, record, "none")


class ChampionHolder:
    """The current champion of a study, swapped whole when `current` changes."""

    def __init__(self, study: Study):
        self.study = study
        self.current: Loaded | None = None
        self.reloads = 0
        self.reload_error: str | None = None
        self._failed: str | None = None  # a run that could not be loaded is not tried again every second
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    def get(self) -> Loaded | None:
        return self.current

    def refresh(self) -> bool:
        """Load the champion `current` names if it is not the one held; True when a new one was swapped in."""
        try:
            run_id = store.current_run(self.study.models)
            if run_id is None or run_id == self._failed or (self.current and self.current.run_id == run_id):
                return False
            loaded = load(self.study, run_id)
        except Exception as e:  # a broken champion must not take the server down: keep serving the one held
            self._failed = store.current_run(self.study.models)
            self.reload_error = f"run {self._failed}: {type(e).__name__}: {e}"
            log.exception("could not load the champion; still serving run %s",
                          self.current.run_id if self.current else "none")
            return False
        previous, self.current = self.current, loaded  # one assignment: a request sees the old or the new
        self.reloads += previous is not None
        self.reload_error = self._failed = None
        log.info("serving run %s (%s)%s", loaded.run_id, loaded.kind,
                 f", was run {previous.run_id}" if previous else "")
        return True

    def start_watching(self, every_seconds: float) -> None:
        def watch() -> None:
            while not self._stop.wait(every_seconds):
                self.refresh()

        self._thread = threading.Thread(target=watch, name="champion-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
