"""One error base: every user, input, config, model or storage error derives from
LearnsieveError, and the CLI turns any of them into one line with status 2; anything else is a
bug and keeps its traceback."""
import pytest

from learnsieve import cli
from learnsieve.errors import LearnsieveError


def test_every_one_line_error_derives_from_the_base():
    from learnsieve.config import ConfigError
    from learnsieve.core.output import OutputError
    from learnsieve.core.paths import InputError
    from learnsieve.core.remote import RemoteError
    from learnsieve.export import ExportError
    from learnsieve.flags import FlagError
    from learnsieve.models.checkpoint import CheckpointError
    from learnsieve.models.spec import OpenClipError
    from learnsieve.pipeline.rounds import TrainCommandError
    from learnsieve.pipeline.run import BadInputError
    for cls in (ConfigError, OutputError, InputError, RemoteError, ExportError, FlagError, CheckpointError,
                OpenClipError, TrainCommandError, BadInputError):
        assert issubclass(cls, LearnsieveError), cls


def test_the_cli_shows_a_learnsieve_error_in_one_line_and_a_bug_in_full(monkeypatch, capsys):
    class Mine(LearnsieveError):
        pass

    monkeypatch.setattr(cli, "_dispatch", lambda args, beam_args: (_ for _ in ()).throw(Mine("the shard is gone")))
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["learnsieve: error: the shard is gone"]
    monkeypatch.setattr(cli, "_dispatch", lambda args, beam_args: (_ for _ in ()).throw(KeyError("bug")))
    with pytest.raises(KeyError):
        cli.main(["models"])
