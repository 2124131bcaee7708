"""The store layer: every module that writes SQL, and nothing else does.

``db`` (the SQLite connection and its transactions), ``migrations`` (the schema), ``layout`` (the
data directory's paths: runners import it without the database), and one module per subject:
``data``, ``plans`` (storage; validation is ``knitfab.planspec``), ``runs``, ``nominate``
(Data ↔ plan input), ``projection`` (new runs from nominations), ``jobs`` (the engine's queries),
``backup`` and ``imports``. Store modules import only leaf modules (errors, tags, times, status,
planspec, quantity, paging) and each other; never the engine, the runners or the API.
"""
