"""The one idiom for a library error inside an asset: ``with library_errors("where"):`` turns
the library's ``ValueError`` (a bad input or config value; the library's message names it), and
any other exception types given, into a dagster ``Failure`` that says where it happened: one
clear line in the UI instead of a traceback."""

from contextlib import contextmanager
from typing import Iterator

from dagster import Failure


@contextmanager
def library_errors(where: str | None = None, *also: type[BaseException], hint: str = "") -> Iterator[None]:
    try:
        yield
    except (ValueError, *also) as err:
        raise Failure(f"{where}: {err}{hint}" if where else f"{err}{hint}") from None
