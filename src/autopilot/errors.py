"""Domain errors. Modules raise these; only `cli` turns them into messages for people."""


class AutopilotError(Exception):
    """Root of every expected failure: the message says what happened, where, and what to do next."""


class ConfigError(AutopilotError):
    """The study config is missing, malformed or violates its schema."""


class SchemaError(AutopilotError):
    """A document does not match its JSON Schema in `schemas/`."""


class ProposalError(AutopilotError):
    """A policy could not produce a proposal."""


class GuardRejected(AutopilotError):
    """A proposal broke a rule of the guard; `violations` lists each broken rule."""

    def __init__(self, message: str, violations: list[dict] | None = None):
        super().__init__(message)
        self.violations = violations or []


class LoopHalted(AutopilotError):
    """The loop must not start another run: stop requested or a budget is spent."""


class QueueError(AutopilotError):
    """A queue operation could not be carried out."""


class IngestError(AutopilotError):
    """A dataset file could not be ingested."""


class TrainerError(AutopilotError):
    """The trainer could not be started or broke its contract."""


class TrainingDiverged(TrainerError):
    """The loss became NaN or exploded: the run stops at once with status `failed`."""


class LLMError(AutopilotError):
    """An LLM backend failed: unreachable, slow, or answered something unusable."""


class MissingDependency(ConfigError):
    """A study or command needs an optional extra that is not installed; the message gives the pip command."""


class CodeError(AutopilotError):
    """Code mode could not do what it needed: git failed, a worktree or a patch could not be made."""


class PatchError(CodeError):
    """A patch does not apply to its base; the message carries git's own words (the worker gets them back)."""


class SandboxUnavailable(CodeError):
    """code_mode.strict_sandbox is set and a layer of the sandbox cannot be had on this machine."""
