"""Code mode: an LLM or an agent CLI changes the study's own training code, one patch per run.

One job per module: `repo` (the git repository that holds the study's code and its worktrees), `patch` (apply a
diff, read back what changed), `diffguard` (the rules a patch must pass), `sandbox` (how patched code runs:
namespaces, read-only project, sealed paths, memory cgroup, allow-listed environment), `checks` (applies, compiles,
tests, smoke run), `evaluate` (the sealed evaluator), `history` (the code line, branch autopilot/<study>),
`approval` (patches parked for a person), `attempts` (the repair loop of one code run), `runs` (what the loop's
steps do for a code run).
"""
