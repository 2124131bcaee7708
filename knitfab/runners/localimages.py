"""Which way a local run executes its plan's image (docs/images.md): from the server's registry
(the image's unpacked root, ``SandboxCommands._image_sandbox``), as a folder the operator mapped
(``--local-image``), or in host mode (the entrypoint over the host's system); and the advice a
plan gets at ``plan apply`` when none of them can run it. A mixin of the ``LocalRunner``."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from pathlib import Path

from ..errors import BadRequest
from ..images.blobs import StorageError
from ..images.rootfs import LayerError
from ..images.sandbox import ImageConfigError
from ..store.layout import Layout
from .protocol import Job, RunnerError
from .workdirs import Workdirs

log = logging.getLogger("knitfab.local")


class ImageModes:
    """The image side of the ``LocalRunner`` (which sets these attributes and the sandboxes)."""

    layout: Layout
    workdir: Workdirs
    images: dict[str, Path]
    image_cache: object
    host_mode: bool

    def use_images(self, cache, host_mode: bool = True) -> None:
        """Run plans whose image is in ``cache``'s registry from that image; others in host mode
        (their entrypoint over the host's system) unless ``host_mode`` is off."""
        self.image_cache, self.host_mode = cache, host_mode
        cache.in_use = self._rootfs_in_use

    def check_plan(self, image: str, version: str, entrypoint: list[str] | None) -> None:
        """Refuse at ``plan apply`` a plan this runner could never start (raises ``BadRequest``)."""
        reference = f"{image}:{version}"
        try:
            found = self._find_image(reference)
            if found is not None:
                threading.Thread(target=self._warm, args=(found,), daemon=True).start()
            if reference in self.images or found is not None:
                return
        except LayerError as e:
            raise BadRequest(f"the image {reference} in this server's registry cannot be run: {e}") from None
        if entrypoint and self.host_mode:
            return
        raise BadRequest(self._push_advice(reference, entrypoint), "image not found")

    def _command(self, job: Job) -> tuple[list[str], str]:
        """The sandbox command of a run and a note for the first line of its log."""
        try:
            image = self._find_image(job.image)
            if image is not None:
                return self._image_sandbox(job, image), ""
        except (LayerError, ImageConfigError, StorageError) as e:
            shutil.rmtree(self.workdir(job.run_id), ignore_errors=True)
            raise RunnerError(f"cannot run the image {job.image}: {e}") from None
        if not job.entrypoint or not self.host_mode:
            raise RunnerError(self._push_advice(job.image, job.entrypoint))
        if self.image_cache is None:
            note = ""  # a runner without a registry has no other mode to tell of
        elif job.image in self.images:
            note = f"knitfab: host mode: {job.image} is the folder {self.images[job.image]} at /work\n"
        else:
            note = (
                f"knitfab: host mode: {job.image} is not in this server's registry, so the plan's entrypoint runs"
                f" over the host's system (read-only). To run the image, push it: {self._push_command(job.image)}\n"
            )
        return self.sandbox(job), note

    def _warm(self, image) -> None:
        """Unpack a plan's image when it is applied, so its first run does not wait for it."""
        try:
            self.image_cache.rootfs(image)
        except Exception as e:  # the run's start reports it; here it only costs the head start
            log.warning("cannot unpack %s: %s", image.reference, e)

    def _find_image(self, reference: str):
        return self.image_cache.find(reference) if self.image_cache is not None else None

    def _push_command(self, reference: str) -> str:
        host = self.image_cache.push_host if self.image_cache is not None else "localhost:30503"
        found = self.image_cache.repository(reference) if self.image_cache is not None else None
        if found:
            return f"docker push {host}/{found[0]}:{found[1]}"
        ours = f"{host}/{reference.partition('/')[2]}"  # the plan names another registry
        return f"docker tag {reference} {ours} && docker push {ours}` with the plan's image set to `{ours}"

    def _push_advice(self, reference: str, entrypoint: list[str] | None) -> str:
        why = "host mode is off on this server" if entrypoint else "the plan has no entrypoint to run in host mode"
        advice = (
            f"the image {reference} is not in this server's registry and {why}: push the image first,"
            f" `{self._push_command(reference)}` (or `knit image push IMAGE.tar`)"
        )
        if self.host_mode:
            advice += ', or add e.g. `entrypoint: ["python", "-u", "main.py"]` to the plan to run it in host mode'
        return advice

    def _rootfs_in_use(self) -> set[str]:
        keys = set()
        for workdir in self.workdir.all():
            with contextlib.suppress(FileNotFoundError):  # a host-mode run's, or one cleaned up meanwhile
                keys.add((workdir / "rootfs").read_text())
        return keys
