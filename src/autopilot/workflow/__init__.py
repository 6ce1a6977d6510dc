"""What the Snakefile asks of the package: the plan of new runs (parse time) and the start/end hooks."""
