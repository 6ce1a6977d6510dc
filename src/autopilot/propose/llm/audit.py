"""Where LLM exchanges go: runs/<study>/<run>/llm/<role>.{prompt.md,response.txt,meta.json}, or memory only.

A dry run (`autopilot propose --dry-run`) uses an Audit without folders: the exchanges are kept for printing
and nothing is written, not even the endpoint cache.

Usage:
    audit = Audit.for_run(study, run_id)      # writes
    audit = Audit()                           # a dry run: audit.exchanges only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autopilot import fsio
from autopilot.study import Study

ENDPOINT_CACHE = "llm_endpoints.json"  # per study: which structured-output form each endpoint took


@dataclass
class Audit:
    folder: Path | None = None  # the run's llm/ folder
    cache_file: Path | None = None  # the study's endpoint cache
    exchanges: list[dict] = field(default_factory=list)

    @classmethod
    def for_run(cls, study: Study, run_id: str) -> Audit:
        return cls(study.paths.run(run_id).llm, study.paths.dir / ENDPOINT_CACHE)

    def record(self, role: str, prompt: str, response: str, meta: dict) -> None:
        meta = {"role": role, **meta}
        self.exchanges.append({"role": role, "prompt": prompt, "response": response, "meta": meta})
        if self.folder is None:
            return
        fsio.atomic_write_text(self.folder / f"{role}.prompt.md", prompt)
        fsio.atomic_write_text(self.folder / f"{role}.response.txt", response)
        fsio.atomic_write_json(self.folder / f"{role}.meta.json", meta)
