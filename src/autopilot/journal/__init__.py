"""Journal: labbook.md for people and history.jsonl for programs, one entry per finished run (`record`)."""
