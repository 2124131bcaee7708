"""Container images: the OCI registry ``knitfab serve`` hosts, and the root filesystems the local
runner unpacks from it.

* ``blobs``: the content-addressed store under ``<data-dir>/registry/`` (blobs by digest, upload
  sessions, manifests and tags of each repository). Nothing becomes visible before its digest
  is verified.
* ``registry``: the distribution API (``/v2/``) as a Flask app on its own port.
* ``rootfs``: a streaming, symlink-safe unpacker of layers (whiteouts, opaque dirs, hardlinks).
* ``cache``: image references → config and layers → one read-only root filesystem per image,
  unpacked once, collected when the cache outgrows its bound.
* ``sandbox``: the bubblewrap arguments that run an image's config with that root as ``/``.
"""
