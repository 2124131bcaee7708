"""What every ``knit`` command module shares: the parser class, ``Context``, ``command``/``group``,
``UsageError``, Go's JSON and the global flags. A leaf module: it imports no command module and
not ``cli``, so the command modules and ``cli`` (the factory that registers them) import it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up < 100 ms)
if TYPE_CHECKING:  # imported by the properties that use them: `knit version` loads neither
    from typing import TextIO

    from .client import KnitClient
    from .profiles import KnitEnv

GLOBAL_FLAGS = ("--profile", "--profile-store", "--env")


class UsageError(Exception):
    """A command called the wrong way: exit 2 with the help of ``parser`` (the command's)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None):
        super().__init__(message)
        self.parser = parser


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, sized to the terminal as argparse does but without importing ``shutil`` (and
    zlib, bz2, lzma with it): argparse makes a formatter for every argument it adds."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


def _columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


class Parser(argparse.ArgumentParser):
    """argparse as Knitfab's CLI behaves: help on stderr, usage errors exit 2 with the help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def print_help(self, file: TextIO | None = None) -> None:
        super().print_help(file or sys.stderr)

    def error(self, message: str) -> None:
        raise UsageError(message, self)


class Context:
    """What a command handler needs: its arguments, output streams, and a lazy client and env."""

    def __init__(self, args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.args, self.stdout, self.stderr = args, stdout or sys.stdout, stderr or sys.stderr
        self._client: KnitClient | None = None

    @property
    def command(self) -> str:
        return self.args.command_name

    @property
    def client(self) -> KnitClient:
        if self._client is None:
            from .client import KnitClient
            from .profiles import load_profile

            _, profile = load_profile(self.args.profile, self.args.profile_store)
            self._client = KnitClient.from_profile_object(profile)
        return self._client

    def close(self) -> None:
        """Close the client's connections, if the command made one."""
        if self._client is not None:
            self._client.close()

    @property
    def env(self) -> KnitEnv:
        from .profiles import env_path, load_env

        return load_env(env_path(self.args.env))

    def log(self, message: str) -> None:
        """Knitfab's log lines: ``[knit data push] 2024/03/06 09:25:16 message`` on stderr."""
        print(f"[{self.command}] {time.strftime('%Y/%m/%d %H:%M:%S')} {message}", file=self.stderr, flush=True)

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    @property
    def is_terminal(self) -> bool:
        return self.stderr.isatty()


def go_json(value: object, indent: int = 4) -> str:
    """JSON as Go's encoder writes it: UTF-8, and ``<``, ``>``, ``&`` escaped (only strings can
    hold them, so replacing them everywhere is safe)."""
    import json

    text = json.dumps(value, indent=indent, ensure_ascii=False)
    for char in "&<>\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def command(parent, common: Parser, words: str, summary: str, **kwargs) -> Parser:
    """The sub-command ``knit <words>``, taking the global flags anywhere on its command line."""
    name = words.rsplit(" ", 1)[-1]
    parser = parent.add_parser(name, parents=[common], help=summary, description=summary, **kwargs)
    parser.set_defaults(parser=parser, command_name=f"knit {words}")
    return parser


def group(parent, common: Parser, name: str, summary: str):
    parser = command(parent, common, name, summary)
    return parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=Parser)


def split_globals(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """The global flags' values (``--profile X`` or ``--profile=X``) and the other words."""
    values: dict[str, str] = {}
    words, pending = [], None
    for word in argv:
        if pending:
            values[pending], pending = word, None
        elif word in GLOBAL_FLAGS:
            pending = word
        elif word.startswith(tuple(f + "=" for f in GLOBAL_FLAGS)):
            flag, _, value = word.partition("=")
            values[flag] = value
        else:
            words.append(word)
    return values, words
