"""Shared pytest configuration: hooks first, fixtures below."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator


def only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Return the sole leaf exception of ``group``, searching nested groups.

    Returns:
      The one non-group exception if ``group`` (recursively) holds exactly one, else None.
    """
    if len(group.exceptions) != 1:
        return None
    (member,) = group.exceptions
    if isinstance(member, BaseExceptionGroup):
        return only_leaf(member)
    return member


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Unwrap the one-leaf group that pytest-trio 0.8 makes of every test failure.

    Since trio 0.25 each test body runs in a strict nursery, so without this a failure
    shows as an ExceptionGroup, ``xfail(raises=...)`` fails and ``pytest.skip`` loses
    its reason (STYLE.md section 6).
    """
    try:
        return (yield)
    except (pytest.skip.Exception, pytest.xfail.Exception) as outcome:
        # pytest-trio 0.8 turns a lone Skipped/XFailed leaf into a bare pytest.skip() or
        # pytest.xfail(), dropping its reason; the group it caught is the implicit context.
        context = outcome.__context__
        leaf = only_leaf(context) if isinstance(context, BaseExceptionGroup) else None
        if isinstance(leaf, type(outcome)):
            raise leaf from None
        raise
    except BaseExceptionGroup as group:  # pytest-trio 0.8 on trio >= 0.25
        leaf = only_leaf(group)
        if leaf is None:
            raise
        raise leaf from None


# Fixtures go below.
