"""Knitfab in Python: a tag-based workflow engine with automatic lineage.

The model, in Knitfab's own words:

* **Data** is an immutable directory with a set of **Tags** (``key:value``). Every Data carries
  system tags: ``knit#id`` (its knitId), ``knit#timestamp`` (when its producing run finished)
  and, while it is not usable, ``knit#transient:processing`` or ``knit#transient:failed``.
* A **Plan** says what to run (an image, or a command for the local runner), which Data it takes
  (inputs: a mount path and the tags a Data must carry) and what it makes (outputs and an
  optional log, each with the tags its Data will get).
* **Nomination** links a Data to every plan input whose tags it satisfies. **Projection** turns
  every new combination of nominated Data into exactly one **Run** of the plan.
* A Run moves through ``waiting → ready → starting → running → completing → done`` (or
  ``aborting → failed``). When it is done its outputs are nominated in turn, so plans chain.
* Every Data knows the run that made it, every run its inputs, outputs and log: that is the
  **lineage**, which can be walked and drawn.

The engine (``knitfab.engine``) does one pass of its stages per ``tick()``: project, initialize,
start, watch, finish and collect garbage. Runs execute on a runner: the local bubblewrap
sandbox (``knitfab.runners.local``) or Kubernetes Jobs (``knitfab.runners.k8s``).
"""

from knit import __version__  # noqa: F401  (one version for the server and the client)
