"""The API layer: the Flask application served by ``knitfab serve``.

``app`` (``create_app()``: blueprints, request hooks, the one error handler), ``web`` (the leaf
module of request helpers), one module per resource (``data``, ``plans``, ``runs``, ``openapi``)
and ``extra`` (the extra API proxy). Resource modules call the store; none imports the engine or
the factory.
"""
