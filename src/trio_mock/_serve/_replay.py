"""Replay: the stage that answers a request from the cassette, before any reply is planned.

Like a scripted rule (``_scripts``), a matching recording short-circuits the handler's plan;
the exchange then goes through the same rate limit, faults and pacing as a generated one.
A request no recording matches is generated as usual, or refused with a 404 in strict mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._openai._cassette import Cassette, CassetteError, parse_cassette
from .._openai._errors import OpenAIError
from .._openai._replay import ReplayedReply, recorded_error, replayed_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._config._settings import CassetteSettings
    from .._openai._cassette import Recording


def load_cassette(path: str, ignore: tuple[str, ...] = ()) -> Cassette:
    """A cassette file, read whole at start-up; a missing file is an empty cassette (a
    recording run creates it).

    Raises:
      CassetteError: an unreadable file, or a line that is not a recording (file and line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as error:
        raise CassetteError(f"{path}: cannot read the cassette: {error}") from None
    return Cassette(parse_cassette(text, path), ignore)


def unmatched(path: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"No recording in the cassette matches this {path} request (--replay-strict).",
        code="recording_not_found",
    )


class Replayer:
    """A cassette, replayed with one configuration's speed, ids and strictness."""

    def __init__(self, cassette: Cassette, settings: CassetteSettings) -> None:
        self.cassette = cassette
        self.speed = settings.replay_speed
        self.keep_ids = settings.replay_keep_ids
        self.strict = settings.replay_strict

    def take(self, path: str, data: Mapping[str, Any]) -> Recording | None:
        """The next recording for this request; None to generate the reply.

        Raises:
          OpenAIError: nothing matches, in strict mode.
        """
        recording = self.cassette.take(path, data)
        if recording is None and self.strict:
            raise unmatched(path)
        return recording

    def reply(self, recording: Recording, headers: list[tuple[bytes, bytes]]) -> ReplayedReply:
        """The recording as a reply, its headers added to the answer's.

        Raises:
          OpenAIError: the recording is an error answer (its headers included).
        """
        headers.append((b"x-mock-recording", recording.label.encode("utf-8", "replace")))
        if recording.status >= 400:
            raise recorded_error(recording)
        headers += replayed_headers(recording)
        return ReplayedReply(recording, self.speed, self.keep_ids)
