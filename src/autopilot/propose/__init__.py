"""Propose: the next run's overrides, rationale and hypothesis, from the study's history.

`decide` picks the policy and falls back when a proposal breaks a guard rule; `policies/` holds the built-in
policies (TPE, random, manual, LLM, hybrid); `prompt`, `answers`, `mentor` and `workpad` are the LLM's side;
`llm/` is the transport underneath (an OpenAI-compatible endpoint or an agent CLI), which knows no study.
"""
