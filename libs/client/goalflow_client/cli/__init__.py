"""``goalflow``: the command-line client of the config, tracker and export services.

Commands live one group per module (goals, events, conversions, report, export; accounts,
keys and token in ``accounts``); global
options become a ``session.Options``; failures become one line and an exit code
(``errors``); results are written by ``output``.
"""

from __future__ import annotations

import os
from typing import Any

import click
import grpc

from goalflow_client.cli.accounts import accounts, keys, token
from goalflow_client.cli.conversions import conversions
from goalflow_client.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, CliError, rpc_error
from goalflow_client.cli.events import events
from goalflow_client.cli.export import export
from goalflow_client.cli.goals import goals
from goalflow_client.cli.report import report
from goalflow_client.cli.session import Options
from goalflow_client.cli.simulate import simulate


class _Goalflow(click.Group):
    """Whatever a command raises ends as one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except grpc.RpcError as exc:  # a call no command labelled
            raise rpc_error("request failed", exc) from None
        except KeyboardInterrupt:
            raise CliError("interrupted", EXIT_INTERRUPTED) from None
        except Exception as exc:
            if os.environ.get("GOALFLOW_DEBUG"):
                raise
            raise CliError(
                f"unexpected {type(exc).__name__}: {exc} (GOALFLOW_DEBUG=1 shows where)",
                EXIT_FAILED,
            ) from None


@click.group(cls=_Goalflow, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--key", envvar="GOALFLOW_KEY", show_envvar=True,
              help="API key (gf_<id>_<secret>) or token (goalflow token mint); its role "
              "decides what may be called.")
@click.option("--config-address", envvar="GOALFLOW_CONFIG_ADDRESS", show_envvar=True,
              default="127.0.0.1:50051", show_default=True, help="Config service.")
@click.option("--tracker-address", envvar="GOALFLOW_TRACKER_ADDRESS", show_envvar=True,
              default="127.0.0.1:50052", show_default=True, help="Tracker service.")
@click.option("--export-address", envvar="GOALFLOW_EXPORT_ADDRESS", show_envvar=True,
              default="127.0.0.1:50053", show_default=True, help="Export service.")
@click.option("--timeout", envvar="GOALFLOW_TIMEOUT", show_envvar=True, default=30.0,
              show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each request may take.")
@click.option("--tls", is_flag=True, envvar="GOALFLOW_TLS", show_envvar=True,
              help="Connect with TLS, trusting the system's roots (or --tls-ca-file).")
@click.option("--tls-ca-file", envvar="GOALFLOW_TLS_CA_FILE", show_envvar=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Connect with TLS, trusting this PEM CA (implies --tls).")
@click.pass_context
def main(ctx: click.Context, key: str | None, config_address: str, tracker_address: str,
         export_address: str, timeout: float, tls: bool, tls_ca_file: str | None) -> None:
    """Talk to the goalflow services over gRPC: goals, events, conversions, reports, exports,
    and accounts, keys and tokens.

    The defaults are the addresses `make run` listens on; its keys are in .run/dev-keys.env.

    \b
    Exit codes:
      0  done
      1  the outcome is a failure (rejected events, a failed export)
      2  usage error (a bad flag or value)
      3  refused: invalid argument, not found, already exists, failed precondition,
         or a broken input file
      4  no key, a malformed or unknown key, or a role that may not do this
      5  a service is unavailable or did not answer in time
      6  any other server error
    """
    ctx.obj = Options(key, config_address, tracker_address, export_address, timeout,
                      tls or bool(tls_ca_file), tls_ca_file or "")


goals.add_command(simulate)
for _command in (goals, events, conversions, report, export, accounts, keys, token):
    main.add_command(_command)
