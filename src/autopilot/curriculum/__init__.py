"""The curriculum of a continual study: generated skill data with numbered levels that keep the champion learning.

    binary, syllo   the skills: generate(level, n, seed, exclude), key, answer, grade (exact), space, LEVELS
    held_out        the fixed held-out set of each level, the evaluation sets a run is measured on
    state           runs/<study>/curriculum.json: per skill its level and evaluations; advancing, forgetting
    batches         when the queue runs low, a batch per skill into inbox/, ingested like any other file
"""

from autopilot.curriculum import binary, syllo

SKILLS = {"binary": binary, "syllo": syllo}  # name -> module; the config schema lists the same names
