"""The ``cschat`` command: run the server and manage groups, agents and tokens.

Every command takes ``--config FILE`` and may run while the server runs: it
opens the same SQLite file, and the server notices changes to groups and
agents within a second. Errors go to stderr with exit status 1 (2 for a bad
command line or configuration).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from cschat import __version__, protocol
from cschat.app import Server, make_tokens, open_store
from cschat.auth import UID_MAX_LENGTH, hash_password, is_web_url
from cschat.demo import Demo, prepare_demo, retire_demo
from cschat.settings import ConfigError, Settings, load_settings
from cschat.store import Store, StoreError

ROLES = ("agent", "admin")

log = logging.getLogger("cschat")


class CommandError(Exception):
    """A command that cannot be carried out; its message is shown to the user."""


def _parser() -> argparse.ArgumentParser:
    config_help = "INI configuration file (default: embedded defaults)"
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand without --config keeps one given before the subcommand.
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=config_help)
    parser = argparse.ArgumentParser(prog="cschat", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="FILE", help=config_help)
    parser.add_argument("--version", action="version", version=f"cschat {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent, name: str, handler: Callable, help_text: str) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    run = command(commands, "run", _run, "serve until SIGTERM or SIGINT")
    run.add_argument("--demo", action="store_true",
                     help="also set up a demo group, two agents and a demo shop page at /demo/")
    command(commands, "init", _init, "create or migrate the database and exit")

    group = commands.add_parser("group", help="manage groups of agents").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    command(group, "add", _group_add, "add a group; prints its id").add_argument("name")
    command(group, "list", _group_list, "list groups")
    for action, enabled in (("disable", False), ("enable", True)):
        command(group, action, _group_enable(enabled), f"{action} a group").add_argument(
            "id", type=int)

    agent = commands.add_parser("agent", help="manage agents").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    add = command(agent, "add", _agent_add, "add an agent; prints its admin_id")
    add.add_argument("--group", type=int, required=True, metavar="ID")
    add.add_argument("--name", required=True)
    add.add_argument("--avatar", default="", metavar="URL")
    add.add_argument("--username", metavar="U")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (a prompt on a terminal)")
    add.add_argument("--role", choices=ROLES, default="agent",
                     help="an admin may also manage the installation from the console")
    command(agent, "list", _agent_list, "list agents")
    role = command(agent, "role", _agent_role, "make an agent an admin, or an agent again")
    role.add_argument("id", type=int)
    role.add_argument("role", choices=ROLES)
    for action, enabled in (("disable", False), ("enable", True)):
        command(agent, action, _agent_enable(enabled), f"{action} an agent").add_argument(
            "id", type=int)
    command(agent, "password", _agent_password,
            "set an agent's password, read from standard input (a prompt on a terminal); "
            "signs the agent out everywhere").add_argument("id", type=int)
    command(agent, "signout", _agent_signout,
            "sign an agent out everywhere: revoke every token cschat minted for it"
            ).add_argument("id", type=int)

    token = commands.add_parser("token", help="mint tokens").add_subparsers(
        dest="kind", required=True, metavar="KIND")
    agent_token = command(token, "agent", _token_agent, "print an agent token")
    agent_token.add_argument("admin_id", type=int)
    agent_token.add_argument("--ttl", type=int, metavar="S", help="lifetime in seconds")
    guest_token = command(token, "guest", _token_guest, "print a guest token")
    guest_token.add_argument("uid")
    guest_token.add_argument("--group", type=int, required=True, metavar="ID")
    guest_token.add_argument("--name", default="")
    guest_token.add_argument("--ttl", type=int, metavar="S", help="lifetime in seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"cschat: configuration error: {error}", file=sys.stderr)
        return 2
    try:
        return args.handler(settings, args) or 0
    except (CommandError, StoreError) as error:
        print(f"cschat: {error}", file=sys.stderr)
        return 1


async def _open(settings: Settings) -> Store:
    try:
        return await open_store(settings)
    except OSError as error:
        raise CommandError(f"cannot open the database: {error}") from None


def _in_store(settings: Settings, work: Callable) -> Any:
    async def run():
        store = await _open(settings)
        try:
            return await work(store)
        finally:
            await store.close()
    return asyncio.run(run())


# -- commands ------------------------------------------------------------------------------

def _run(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve():
        demo = None
        store = await _open(settings)
        try:
            if args.demo:
                demo = await prepare_demo(store)
            else:
                await retire_demo(store)
        finally:
            await store.close()
        server = Server(settings, demo.group_id if demo else None)
        try:
            await server.start()
        except OSError as error:
            raise CommandError(f"cannot listen on {settings.server['host']}:"
                               f"{settings.server['port']}: {error.strerror}") from None
        if demo:
            _print_demo(server, demo)
        _tune_garbage_collection()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        await server.stop()
    with asyncio.Runner(loop_factory=_new_event_loop) as runner:
        runner.run(serve())
    return 0


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop with the [fast] extra installed (the benchmark found it ~10 %
    faster under load), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        uvloop = None
    found = [name for name, module in (("uvloop", uvloop), ("orjson", protocol.orjson)) if module]
    log.info("speed-ups: %s", ", ".join(found) or
             "none (pip install 'cschat[fast]' adds uvloop and orjson)")
    return uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()


def _tune_garbage_collection() -> None:
    """Make full collections rare and small: they stop every connection while they run.

    What exists after start-up lives as long as the process, so it is frozen out
    of the collector's view; a larger first generation makes collections rarer.
    Seen without this: 20-50 ms pauses with 1000 guests connected.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _print_demo(server: Server, demo: Demo) -> None:
    base = f"http://{server.settings.server['host']}:{server.port}"
    print(f"cschat demo is ready\n  agent console:  {base}/console/")
    for username, password in demo.credentials:
        print(f"    sign in as    {username} / {password}")
    print(f"  demo shop page: {base}/demo/  (chat as a visitor there)", flush=True)


def _init(settings: Settings, args: argparse.Namespace) -> None:
    _in_store(settings, lambda store: store.ping())
    print(settings.database["path"])


def _group_add(settings: Settings, args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not name:
        raise CommandError("a group needs a name")
    print(_in_store(settings, lambda store: store.add_group(name)))


def _group_list(settings: Settings, args: argparse.Namespace) -> None:
    for group in _in_store(settings, lambda store: store.list_groups()):
        state = "enabled" if group["enabled"] else "disabled"
        print(f"{group['id']}\t{state}\t{group['name']}")


def _group_enable(enabled: bool) -> Callable:
    def handler(settings: Settings, args: argparse.Namespace) -> None:
        _in_store(settings, lambda store: store.set_group_enabled(args.id, enabled))
    return handler


def _agent_add(settings: Settings, args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not name:
        raise CommandError("an agent needs a name")
    if (args.username is None) == args.password_stdin:
        raise CommandError("--username and --password-stdin go together")
    if args.username is not None and not args.username.strip():
        raise CommandError("the username cannot be empty")
    if not is_web_url(args.avatar):
        raise CommandError("--avatar must be an http(s) URL")
    password_hash = hash_password(_read_password(settings)) if args.password_stdin else None
    print(_in_store(settings, lambda store: store.add_agent(
        args.group, name, args.avatar, args.username, password_hash, args.role)))


def _agent_list(settings: Settings, args: argparse.Namespace) -> None:
    for agent in _in_store(settings, lambda store: store.list_agents()):
        state = "enabled" if agent["enabled"] else "disabled"
        print(f"{agent['admin_id']}\t{agent['group_id']}\t{state}\t{agent['role']}\t"
              f"{agent['username'] or '-'}\t{agent['name']}")


def _agent_role(settings: Settings, args: argparse.Namespace) -> None:
    _in_store(settings, lambda store: store.update_agent(args.id, {"role": args.role}))


def _agent_enable(enabled: bool) -> Callable:
    def handler(settings: Settings, args: argparse.Namespace) -> None:
        _in_store(settings, lambda store: store.set_agent_enabled(args.id, enabled))
    return handler


def _agent_password(settings: Settings, args: argparse.Namespace) -> None:
    password_hash = hash_password(_read_password(settings))
    _in_store(settings, lambda store: store.set_agent_password(args.id, password_hash))


def _agent_signout(settings: Settings, args: argparse.Namespace) -> None:
    _in_store(settings, lambda store: store.sign_out_agent(args.id))


def _read_password(settings: Settings) -> str:
    """A new password: typed twice at a prompt on a terminal, else the first line of stdin.

    Never a command-line argument, which shell history and ``ps`` would show.
    Refused when shorter than ``[auth] min_password_length``.
    """
    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("The same again: ") != password:
            raise CommandError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password given on standard input")
    shortest = settings.auth["min_password_length"]
    if len(password) < shortest:
        raise CommandError(f"the password must have at least {shortest} characters "
                           "([auth] min_password_length)")
    return password


def _check_ttl(ttl: int | None) -> None:
    if ttl is not None and ttl < 1:
        raise CommandError("--ttl must be at least 1 second")


def _token_agent(settings: Settings, args: argparse.Namespace) -> None:
    _check_ttl(args.ttl)

    async def mint(store: Store) -> str:
        agent = await store.agent(args.admin_id)
        if agent is None:
            raise CommandError(f"no agent {args.admin_id}")
        return (await make_tokens(settings, store)).mint_agent(
            args.admin_id, agent["token_version"], args.ttl)
    print(_in_store(settings, mint))


def _token_guest(settings: Settings, args: argparse.Namespace) -> None:
    _check_ttl(args.ttl)
    if not 0 < len(args.uid) <= UID_MAX_LENGTH:
        raise CommandError(f"the uid must have 1 to {UID_MAX_LENGTH} characters")

    async def mint(store: Store) -> str:
        if await store.group(args.group) is None:
            raise CommandError(f"no group {args.group}")
        tokens = await make_tokens(settings, store)
        return tokens.mint_guest(args.uid, args.group, args.name, ttl=args.ttl)
    print(_in_store(settings, mint))
