"""Judge: is a run better than the incumbent? `stats` is the statistics, `verdicts` the stage that writes
verdict.json from the seeds on disk."""
