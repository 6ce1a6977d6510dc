"""Code mode: an LLM or an agent CLI changes the study's own training code, one patch per run.

One job per module: `repo` (the git repository that holds the study's code and its worktrees), `patch` (apply a
diff, read back what changed), `diffguard` (the rules a patch must pass), `sandbox` (how patched code runs:
namespaces, read-only project, sealed paths, memory cgroup, allow-listed environment), `checks` (applies, compiles,
tests, smoke run), `evaluate` (the sealed evaluator), `history` (the code line, branch autopilot/<study>),
`approval` (patches parked for a person), `runs` (what the guard and the journal ask of it). The stages use it: the
repair loop of a code run is autopilot.propose.patches, a sandboxed seed autopilot.train.sandboxed, the commands
people use autopilot.ops.code_review.
"""
