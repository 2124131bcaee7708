"""What a plan gets when it does not say: shared by ``knit plan template`` and the server's plan
validation. Dependency-free (the server imports it: see ``knit/__init__``)."""

DEFAULT_RESOURCES = {"cpu": "1", "memory": "1Gi"}  # Knitfab's defaults for a plan's resources
