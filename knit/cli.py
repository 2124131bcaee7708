"""The ``knit`` command line: parsing, the shared context, and the one place errors become exit codes.

Exit codes are Knitfab's: 0 success, 1 an error (a one-line summary on stderr, the server's
message underneath), 2 a usage error (the message and the command's help on stderr). Results go
to stdout, logs and progress to stderr, ``-h`` prints help to stderr. Commands live in
``datacmds``, ``plancmds`` and ``runcmds``; each handler is ``cmd(ctx, args) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from . import __version__
from .context import GLOBAL_FLAGS, TYPE_CHECKING, Context, Parser, UsageError, command, group, split_globals

if TYPE_CHECKING:
    from typing import TextIO

# Only what every command needs is imported here: a command's module, the client, profiles,
# YAML, HTTP and the archive are imported when the command runs (issue 14: start-up < 100 ms;
# tests/test_knit_cli.py lists what `knit version` and `knit data find` may import).
GROUPS = {  # knit <group>: the module registering its commands, and its summary
    "data": ("datacmds", "push, find, pull and tag Data; draw their lineage"),
    "plan": ("plancmds", "write, register, find and change plans"),
    "run": ("runcmds", "find, watch, stop, retry and remove runs"),
    "image": ("imagecmds", "push images to the server's registry"),
}
# The errors that are the user's to fix (exit 1, one line), by module: a module never imported
# cannot have raised its error, so none of them is imported to catch it.
USER_ERRORS = {
    "knit.client": "KnitError",
    "knit.profiles": "ProfileError",
    "knit.extract": "ArchiveError",
    "knit.graphs": "Missing",
}

COMPLETION = "--print-completion"
SHELLS = ["bash", "zsh", "tcsh", "fish", "powershell"]  # shtab 1.13's: only --print-completion imports it


def build_parser(completion: bool = False, groups_used: set[str] | None = None) -> Parser:
    """The parser of every command; ``completion``: with shtab's action behind --print-completion
    (else a plain flag with the same help, so that start-up does not import shtab).
    ``groups_used``: only these groups get their commands (the others are listed in the help
    without them, so their modules are not imported); None: all."""
    common = Parser(add_help=False)
    common.add_argument("--profile", default=argparse.SUPPRESS, help="the knitprofile to use")
    common.add_argument("--profile-store", default=argparse.SUPPRESS, help="profile store (default ~/.knit/profile)")
    common.add_argument("--env", default=argparse.SUPPRESS, help="knitenv file (default: nearest knitenv upward)")
    common.add_argument(
        "--traceback", action="store_true", default=argparse.SUPPRESS, help="on an error, show the stack"
    )
    root = Parser(prog="knit", parents=[common], description="knit: the command line of Knitfab.")
    completion_help = "print a shell completion script (bash, zsh, tcsh)"
    if completion:
        import shtab

        shtab.add_argument_to(root, COMPLETION, help=completion_help)
    else:
        root.add_argument(COMPLETION, choices=SHELLS, default=None, help=completion_help)
    groups = root.add_subparsers(dest="group", metavar="COMMAND", parser_class=Parser)
    init = command(groups, common, "init", "store a knitprofile (handout) as the profile of this directory")
    init.add_argument("knitprofile", metavar="KNIT_PROFILE_FILE", help="the knitprofile your admin handed out")
    init.set_defaults(func=cmd_init)
    command(groups, common, "version", "print the version").set_defaults(func=cmd_version)
    command(groups, common, "license", "print the licenses of knit and what it uses").set_defaults(func=cmd_license)
    for name, (module, summary) in GROUPS.items():
        verbs = group(groups, common, name, summary)
        if groups_used is None or name in groups_used:
            _commands(module).register(verbs, common)
    return root


def _commands(module: str):
    import importlib

    return importlib.import_module(f"{__package__}.{module}")


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    extension = _extension(argv)
    if extension:
        return run_extension(extension, argv)
    completion = any(word.startswith(COMPLETION) for word in argv)
    parser = build_parser(completion, None if completion else set(split_globals(argv)[1]) & GROUPS.keys())
    try:
        with contextlib.redirect_stderr(stderr):  # argparse's -h writes to sys.stderr
            args = parser.parse_args(argv)
        if not hasattr(args, "func"):
            (getattr(args, "parser", None) or parser).print_help(stderr)
            return 2
        _defaults(args)
        ctx = Context(args, stdout, stderr)
        try:
            return args.func(ctx, args)
        finally:
            ctx.close()
    except SystemExit as e:  # -h/--help
        return int(e.code or 0)
    except UsageError as e:
        print(f"error: {e}\n", file=stderr)
        (e.parser or parser).print_help(stderr)
        return 2
    except Exception as e:
        if not _users(e):
            raise
        if "--traceback" in argv:
            import traceback

            traceback.print_exc(file=stderr)
        print(f"error: {e}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=stderr)
        return 130


def _users(error: Exception) -> bool:
    """Whether ``error`` is one of ``USER_ERRORS`` or an ``OSError`` (a file, the network)."""
    errors = [getattr(sys.modules[m], name) for m, name in USER_ERRORS.items() if m in sys.modules]
    return isinstance(error, (OSError, *errors))


def _defaults(args: argparse.Namespace) -> None:
    for flag in GLOBAL_FLAGS:
        name = flag[2:].replace("-", "_")
        if not hasattr(args, name):
            setattr(args, name, None)


# -- top-level commands -----------------------------------------------------------------------------


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .profiles import default_name, read_knitprofile, save_profile, store_path, write_marker

    profile = read_knitprofile(Path(args.knitprofile))
    name = args.profile or default_name()
    store = store_path(args.profile_store)
    save_profile(store, name, profile)
    write_marker(Path.cwd(), name)
    ctx.log(f"profile {name} is saved to {store}")
    return 0


def cmd_version(ctx: Context, args: argparse.Namespace) -> int:
    from .buildinfo import commit

    ctx.out(f"{__version__} (commit: {commit()})")
    return 0


def cmd_license(ctx: Context, args: argparse.Namespace) -> int:
    from importlib import metadata

    ctx.out("knit is part of Knitfab in Python (Apache-2.0). It uses:\n")
    for dist in ("requests", "PyYAML", "tqdm", "certifi", "urllib3", "idna", "charset-normalizer"):
        try:
            meta = metadata.metadata(dist)
        except metadata.PackageNotFoundError:
            continue
        licence = meta.get("License-Expression") or meta.get("License") or "see its distribution"
        ctx.out(f"  {meta['Name']} {meta['Version']}: {licence.splitlines()[0] if licence else ''}\n")
    return 0


# -- extension commands (spec §7.8) -------------------------------------------------------------------


def extensions() -> dict[str, str]:
    """``knit-*`` executables on PATH by sub-command name; the first one in PATH wins."""
    found: dict[str, str] = {}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        folder = folder or "."
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if name.startswith("knit-") and os.access(path, os.X_OK) and os.path.isfile(path):
                sub = name[5:]
                for suffix in (".exe", ".bat", ".cmd", ".com"):
                    sub = sub.removesuffix(suffix)
                found.setdefault(sub, path)
    return found


BUILTIN = {"init", "version", "license", *GROUPS}


def _extension(argv: list[str]) -> str | None:
    _, words = split_globals(argv)
    if not words or words[0] in BUILTIN or words[0].startswith("-"):
        return None
    return extensions().get(words[0])


def run_extension(path: str, argv: list[str]) -> int:
    """Run ``knit-<name>`` with the remaining arguments and ``KNIT_PROFILE``,
    ``KNIT_PROFILE_STORE`` and ``KNIT_ENV`` set; 0 when it succeeds, else 1."""
    import shutil
    import subprocess

    from .profiles import default_name, env_path, store_path

    values, words = split_globals(argv)
    env = dict(os.environ)
    env["KNIT_PROFILE"] = values.get("--profile") or default_name()
    env["KNIT_PROFILE_STORE"] = str(store_path(values.get("--profile-store")))
    env["KNIT_ENV"] = str(env_path(values.get("--env")))
    if shutil.which(path) is None:
        return 1
    return 0 if subprocess.run([path, *words[1:]], env=env).returncode == 0 else 1
