"""The getting-started tutorial with real images (``make demo-images``): as ``make demo``, but
the plans are the tutorial's images, built from its Dockerfiles without a Docker engine
(build_images.py: Debian bookworm + python3 + torch + the scripts, the Dockerfiles' ENTRYPOINT and
CMD), and run from ``knitfab serve``'s registry by the local runner, with host mode off.

1. builds the two images (cached under ``--cache``);
2. starts ``knitfab serve --no-host-mode`` with its registry on a free port;
3. for each plan, as the guide: pushes the image to ``localhost:PORT/knitfab-first-*:v1.0``
   (skopeo), saves it as a ``docker save`` archive, makes the plan with ``knit plan template``,
   and applies it with the tutorial's tags and no ``entrypoint:`` or ``args:``: the image's own
   ENTRYPOINT and CMD run; tutorial 1 trains, tutorial 2 validates the model;
4. tutorial 3: pulls the model and draws the lineage, as ``make demo``.

    python examples/first-knitfab/demo_images.py [--out demo-images-out] [--cache .cache/images]

Needs root (debootstrap), the Debian mirror, skopeo and bubblewrap.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import time
from pathlib import Path

import build_images
import demo
import yaml


class ImageDemo(demo.Demo):
    """The tutorial's server and plans, with the images of ``layout`` instead of host mode."""

    def __init__(self, out: Path, layout: Path):
        super().__init__(out)
        self.layout = layout

    def serve_options(self) -> list[str]:
        return ["--registry-port", str(self.port), "--no-host-mode"]  # only images run

    def registry(self) -> str:
        return f"localhost:{self.port}"

    @functools.cached_property
    def port(self) -> int:
        """A free port for the registry (30503 may be taken; ``--registry-port 0`` turns it off)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def apply(self, plan_file: Path, epochs: int | None = None) -> dict:
        """The guide's steps for the image of ``plan_file`` (``train.plan.yaml`` → tag train):
        push, ``docker save`` archive, ``knit plan template``, then the tutorial's plan with the
        template's image and without entrypoint and args. ``epochs`` is the image's CMD's."""
        tag = plan_file.name.split(".")[0]
        example = yaml.safe_load(plan_file.read_text())
        reference = f"{self.registry()}/{example['image']}"
        demo.say(f"  skopeo copy oci:{self.layout}:{tag} docker://{reference}")
        skopeo("copy", "--dest-tls-verify=false", f"oci:{self.layout}:{tag}", f"docker://{reference}")
        archive = self.project / f"{tag}.image.tar"
        skopeo("copy", f"oci:{self.layout}:{tag}", f"docker-archive:{archive}:{reference}")
        template = self.knit("plan", "template", "-i", str(archive))
        archive.unlink()  # a GB: the template needed only its config
        (self.project / f"{tag}.template.plan.yaml").write_text(template)
        plan = {**example, "image": yaml.safe_load(template)["image"]}
        plan.pop("entrypoint", None), plan.pop("args", None)
        (self.project / f"{tag}.image.plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
        demo.say(f"  knit plan apply {tag}.image.plan.yaml (image {plan['image']}, no entrypoint)")
        return self.knit_json("plan", "apply", f"{tag}.image.plan.yaml")


def skopeo(*args: str) -> None:
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"skopeo {' '.join(args)} failed:\n{result.stderr}")


def main() -> int:
    parser = demo.options()
    parser.add_argument("--cache", default=".cache/images", help="build_images.py's cache (root, layers)")
    parser.set_defaults(out="demo-images-out")
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    started = time.monotonic()
    build_images.build(cache, cache / "layout")
    demo.say(f"the images are built in {time.monotonic() - started:.0f} s (OCI layout {cache / 'layout'})")
    return demo.main(args, lambda out: ImageDemo(out, cache / "layout"))


if __name__ == "__main__":
    sys.exit(main())
