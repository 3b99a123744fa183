"""Local working copies for the ``s3://`` locations that a job's command line names.

The library and the ``drasclr`` command line work on local paths. A job entry point first takes
the location options out of its argument list, stages every remote one with
:func:`drasclr.uri.local_cache` (inputs downloaded; outputs uploaded with the completion marker
when the job succeeds), and hands the command line the local copies:

    with staged_argv(sys.argv[1:], reads=("--inputs", "--atlas"), writes=("--store",)) as argv:
        main(["preprocess", *argv])

Staging happens on the node that runs the driver, under ``DRASCLR_SCRATCH`` (or the system temp
dir). Subject workers on other nodes read the staged inputs by path, so on a multi-node cluster
with remote inputs ``DRASCLR_SCRATCH`` must be a file system that every node mounts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager

from drasclr import uri

__all__ = ["run_staged", "staged_argv", "warn_if_scratch_not_shared"]


def _split(argv: Sequence[str], options: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Take ``--opt value`` / ``--opt=value`` for each of ``options`` out of ``argv``."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for opt in options:
        parser.add_argument(opt, dest=opt, default=None)
    known, rest = parser.parse_known_args(list(argv))
    found = {opt: value for opt, value in vars(known).items() if value is not None}
    return found, rest


@contextmanager
def staged_argv(
    argv: Sequence[str],
    *,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    overwrite_flag: str = "--overwrite",
) -> Iterator[list[str]]:
    """``argv`` with every remote location option replaced by a local working copy.

    Args:
        argv: the job's arguments (without the program name).
        reads: options naming inputs (``"--inputs"``): a remote file or prefix is downloaded
            (a prefix needs no completion marker: inputs may be uploaded by any tool).
        writes: options naming outputs (``"--store"``): a remote prefix is downloaded first when
            it exists, so the stage resumes (it must then be complete: carry its marker), and
            uploaded with its marker when the block exits without an error. With
            ``overwrite_flag`` in ``argv`` nothing is downloaded.
        overwrite_flag: the flag that tells the stage to replace its output.

    Yields:
        The rewritten argument list; local locations are passed through unchanged.

    Raises:
        drasclr.uri.RemoteError: a remote output exists but has no completion marker (an upload
            was interrupted); re-run with ``overwrite_flag`` to replace it.
        FileNotFoundError: a remote input does not exist.
    """
    values, rest = _split(argv, [*reads, *writes])
    overwrite = overwrite_flag in rest
    with ExitStack() as stack:
        out = list(rest)
        for opt in [*reads, *writes]:
            if opt not in values:
                continue
            loc = values[opt]
            if uri.is_remote(loc):
                if opt in writes:
                    mode: uri.Mode = "w" if overwrite else "rw"
                    local = stack.enter_context(uri.local_cache(loc, mode, require_complete=True))
                else:
                    local = stack.enter_context(uri.local_cache(loc, "r"))
                print(f"staged {opt} {loc} -> {local}", file=sys.stderr, flush=True)
                out += [opt, str(local)]
            else:
                out += [opt, loc]
        yield out


def warn_if_scratch_not_shared(argv: Sequence[str], reads: Sequence[str]) -> None:
    """Warn when remote inputs are staged node-locally while the cluster has several nodes."""
    values, _ = _split(argv, reads)
    if not any(uri.is_remote(v) for v in values.values()) or os.environ.get("DRASCLR_SCRATCH"):
        return
    import ray

    if ray.is_initialized() and sum(1 for n in ray.nodes() if n.get("Alive")) > 1:
        print("warning: remote inputs are staged on the driver's node only; set DRASCLR_SCRATCH "
              "to a file system every node mounts, or workers on other nodes cannot read them",
              file=sys.stderr, flush=True)


def run_staged(
    prog: str,
    argv: Sequence[str],
    call: Callable[[list[str]], int],
    *,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
) -> int:
    """Stage ``argv``'s remote locations, run ``call`` on the local argument list, publish.

    Outputs are uploaded only when ``call`` returns 0 (a failure leaves a remote output as it
    was). Returns the exit status; a remote-storage problem prints ``<prog>: error: ...`` and
    returns 2.
    """
    try:
        with staged_argv(argv, reads=reads, writes=writes) as local_argv:
            status = call(local_argv)
            if status != 0:  # raising leaves a remote output as it was
                raise SystemExit(status)
    except (uri.RemoteError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # credentials / endpoint problems of the object store client
        if not type(err).__module__.startswith(("botocore", "aiobotocore", "s3fs")):
            raise
        print(f"{prog}: error: object storage: {type(err).__name__}: {err} (check the AWS_* "
              "credentials and AWS_ENDPOINT_URL)", file=sys.stderr)
        return 2
    return 0
