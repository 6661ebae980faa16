"""`dcnviz app [STREAMLIT OPTIONS]`: serve the dcnviz app (the same app as `streamlit run app.py`).

Runs Streamlit on the app installed with the package, from any folder: no checkout needed (the demo
models and the synthetic sample travel with the package, see :mod:`dcnviz.resources`). The app's own
settings — the repository's ``.streamlit/config.toml``: upload limit, no usage statistics, no stack
traces to users, no file watcher — are passed to Streamlit as command-line options, so they apply
wherever the command is started. Options given here (``--server.port 8502``,
``--server.address=0.0.0.0``, ``--browser.serverAddress …``, any ``--section.option``
that ``streamlit run`` accepts) are passed through and win over the app's settings.

>>> streamlit_options(["--server.port", "8502", "--server.headless=true"])["server.port"]
'8502'
>>> streamlit_options([])["browser.gatherUsageStats"]
'false'
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from dcnviz.errors import ConfigError
from dcnviz.resources import PACKAGE_DIR, STREAMLIT_CONFIG

APP_SCRIPT = PACKAGE_DIR / "app" / "entry" / "streamlit_app.py"  # the router, as a script Streamlit can run
_OPTION = re.compile(r"^--([A-Za-z]+\.[A-Za-z][A-Za-z0-9_]*)(?:=(.*))?$", re.S)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "app",
        usage="%(prog)s [--section.option VALUE ...]",
        help="serve the dcnviz app in the browser (Streamlit; any --server.* / --browser.* option passes through)",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Examples: dcnviz app · dcnviz app --server.port 8502 · "
        "dcnviz app --server.headless true --server.address 0.0.0.0",
    )
    p.set_defaults(func=run, streamlit_args=[])


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def app_settings(path: Path = STREAMLIT_CONFIG) -> dict[str, str]:
    """The app's Streamlit settings (``section.option`` → value as a command-line string) from its config.toml."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the app's settings {path}: {e}") from None
    return {
        f"{section}.{key}": _toml_value(value)
        for section, options in data.items()
        if isinstance(options, dict)
        for key, value in options.items()
    }


def parse_streamlit_args(args: Sequence[str]) -> dict[str, str]:
    """``--section.option value`` / ``--section.option=value`` pairs → {option: value}; anything else is an error."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        m = _OPTION.match(args[i])
        if m is None:
            raise ConfigError(
                f"dcnviz app takes Streamlit options of the form --section.option VALUE "
                f"(e.g. --server.port 8502); got {args[i]!r}"
            )
        key, value = m.group(1), m.group(2)
        if value is None:
            if i + 1 >= len(args) or _OPTION.match(args[i + 1]):
                raise ConfigError(f"Streamlit option --{key} needs a value (e.g. --{key}=VALUE)")
            value = args[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


def streamlit_options(args: Sequence[str], *, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The app's settings overlaid with the user's options (the user's win)."""
    return {**(app_settings() if settings is None else settings), **parse_streamlit_args(args)}


def run(args: argparse.Namespace) -> int:
    import click
    from streamlit.web import cli as st_cli

    flags = [f"--{k}={v}" for k, v in streamlit_options(args.streamlit_args).items()]
    try:
        # Streamlit's own `run` command: these options go above its config files; it serves until stopped.
        st_cli.main.main(args=["run", str(APP_SCRIPT), *flags], prog_name="dcnviz app", standalone_mode=False)
    except click.UsageError as e:  # e.g. an option Streamlit does not have
        raise ConfigError(f"Streamlit refused the options: {e.format_message()}") from None
    return 0
