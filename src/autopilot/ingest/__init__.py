"""Ingest: dataset files dropped into inbox/ become validated queue entries, and nothing is ever lost.

    specs.py     dataset specs (schemas/datasets/) and where each keeps its texts
    compiled.py  a spec's schema compiled into a fast predicate for the per-line loop
    checks.py    the line-by-line checks of levels quick, standard and deep
    inbox.py     reading the inbox: settle, claim, copy, verify, publish into queue/<priority>/ or queue/failed/
    claim_area.py  inbox/.ingesting/: files are renamed there before they are read, and given back to wait
    files.py     opening dropped files: once, no links, no FIFOs, bounded reads; is another process writing it
    sidecar.py   <name>.meta.yaml: bounded, YAML without aliases or deep nesting, the schema
    recovery.py  completing or undoing an ingest killed half way
"""
