"""Ingest: dataset files dropped into inbox/ become validated queue entries, and nothing is ever lost.

    specs.py     dataset specs (schemas/datasets/) and where each keeps its texts
    compiled.py  a spec's schema compiled into a fast predicate for the per-line loop
    checks.py    the line-by-line checks of levels quick, standard and deep
    inbox.py     reading the inbox: settle, copy, verify, publish into queue/<priority>/ or queue/failed/
"""
