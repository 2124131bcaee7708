"""What every ``knit`` command module shares: the parser class, ``Context``, ``command``/``group``,
``UsageError``, Go's JSON and the global flags. A leaf module: it imports no command module and
not ``cli``, so the command modules and ``cli`` (the factory that registers them) import it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from .client import KnitClient
from .profiles import KnitEnv, env_path, load_env, load_profile

GLOBAL_FLAGS = ("--profile", "--profile-store", "--env")


class UsageError(Exception):
    """A command called the wrong way: exit 2 with the help of ``parser`` (the command's)."""

    def __init__(self, message: str, parser: argparse.ArgumentParser | None = None):
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """argparse as Knitfab's CLI behaves: help on stderr, usage errors exit 2 with the help."""

    def print_help(self, file: TextIO | None = None) -> None:
        super().print_help(file or sys.stderr)

    def error(self, message: str) -> None:
        raise UsageError(message, self)


@dataclass
class Context:
    """What a command handler needs: its arguments, output streams, and a lazy client and env."""

    args: argparse.Namespace
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    _client: KnitClient | None = None

    @property
    def command(self) -> str:
        return self.args.command_name

    @property
    def client(self) -> KnitClient:
        if self._client is None:
            _, profile = load_profile(self.args.profile, self.args.profile_store)
            self._client = KnitClient.from_profile_object(profile)
        return self._client

    @property
    def env(self) -> KnitEnv:
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
