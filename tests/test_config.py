"""build_config: one run's settings from option names, checked in the order that reports the
cheapest mistake first, with the words both shells show."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from uploader.config import (
    DEFAULT_MAX_RETRY_TIME,
    DEFAULT_STATE,
    Destination,
    Outputs,
    RunConfig,
    Sending,
    build_config,
)
from uploader.errors import ConfigError, ExposedKeyWarning, InputError
from uploader.options import Options
from uploader.sandbox import Sandbox
from uploader.target import DEFAULT_BASE_URL, Credentials, Target

CSV = "ts,event,sku,user_id\n2024-05-02T14:38:24Z,view,S1,u1\n"
SOURCE_ID = "7301234567890123456"
ENV = {
    "INTEMPT_ORG": "acme",
    "INTEMPT_PROJECT": "shop",
    "INTEMPT_SOURCE_ID": SOURCE_ID,
    "INTEMPT_API_KEY": "pk_live.s3cr3t",
}
MISSING = {
    "org": "org (give --org ORG or INTEMPT_ORG)",
    "project": "project (give --project NAME or INTEMPT_PROJECT)",
    "source": "source id (give --source ID or INTEMPT_SOURCE_ID)",
    "key": "API key (give INTEMPT_API_KEY or --api-key-file FILE)",
}
VALIDATE_KNOWN = (
    "batch_size, catalog, catalog_mode, config, decimal, delimiter, duplicates, encoding, "
    "event, event_column, event_map, "
    "keep_duplicates, mapping, max_request_bytes, no_timestamp, rejects, report, "
    "timestamp_format, timestamp_unit, timezone"
)


@pytest.fixture
def csv_path(write_csv) -> Path:
    return write_csv(CSV)


def refused(message: str, error: type[Exception] = ConfigError):
    return pytest.raises(error, match=f"^{re.escape(message)}$")


def missing(*names: str) -> str:
    listed = "; ".join(MISSING[n] for n in names)
    return f"missing {listed}. Or use --sandbox to rehearse against the built-in local API"


# --- option names --------------------------------------------------------------------------


def test_upload_options_given_to_validate_are_named_with_a_hint(csv_path):
    with refused(
        "unknown option concurrency, org (upload options: validate sends nothing); "
        f"known options: {VALIDATE_KNOWN}"
    ):
        build_config(csv_path, command="validate", org="acme", concurrency=2)


def test_a_misspelt_option_gets_no_hint(csv_path):
    with refused(f"unknown option colour, concurrency; known options: {VALIDATE_KNOWN}"):
        build_config(csv_path, command="validate", concurrency=2, colour="red")


def test_upload_lists_every_option_it_knows(csv_path):
    with pytest.raises(ConfigError) as caught:
        build_config(csv_path, command="upload", eventmap={}, env=ENV)
    assert str(caught.value) == (
        "unknown option eventmap; known options: api_key, api_key_file, base_url, batch_size, "
        "catalog, catalog_mode, concurrency, config, decimal, delimiter, duplicates, encoding, "
        "event, event_column, event_map, force, "
        "keep_duplicates, mapping, max_request_bytes, max_retry_time, no_timestamp, org, project, "
        "rate, rejects, report, restart, sandbox, source_id, state, timestamp_format, "
        "timestamp_unit, timezone, wait"
    )


# --- what a validation gets ----------------------------------------------------------------


def test_a_validate_config_has_no_destination_and_default_sending(csv_path, tmp_path):
    config = build_config(
        [csv_path],
        command="validate",
        rejects=tmp_path / "rejects.csv",
        report=tmp_path / "report.json",
        batch_size=10,
        keep_rejects=5,
    )
    assert config.destination is None
    assert config.sending == Sending()
    assert config.mapping == Options(batch_size=10)
    assert config.outputs == Outputs(
        rejects=str(tmp_path / "rejects.csv"),
        report=str(tmp_path / "report.json"),
        keep_rejects=5,
    )
    (source,) = config.inputs
    assert source.name == str(csv_path)
    assert source.columns == ("ts", "event", "sku", "user_id")


def test_options_given_as_none_are_not_given(csv_path):
    config = build_config(
        csv_path, command="upload", env=ENV, batch_size=None, state=None, concurrency=None
    )
    assert config.mapping.batch_size == 2000
    assert config.sending.state == DEFAULT_STATE
    assert config.sending.concurrency is None  # adaptive
    assert config.sending.max_retry_time == DEFAULT_MAX_RETRY_TIME


def test_a_run_needs_an_input():
    with refused("no input given: name one or more CSV or Parquet files or folders"):
        RunConfig((), Options())
    with refused("no input given: name one or more CSV or Parquet files or folders", InputError):
        build_config([], command="validate")


# --- the order of the checks ---------------------------------------------------------------


def test_a_bad_mapping_is_reported_before_the_inputs_are_looked_at(tmp_path):
    absent = tmp_path / "absent.csv"
    with refused("--batch-size must be at least 1, not 0"):
        build_config(absent, command="validate", batch_size=0)
    fields = "productId, eventId, userId, profileId, anotherUserId, accountId, sessionId"
    with refused(f"--map colour=c: unknown field; map one of {fields}, timestamp, data.<key>"):
        build_config(absent, command="upload", mapping=["colour=c"], env={})


def test_sending_limits_are_checked_before_the_inputs(tmp_path):
    with refused("--concurrency must be at least 1, not 0"):
        build_config(tmp_path / "absent.csv", command="upload", concurrency=0, env={})


def test_the_inputs_are_found_before_the_target_is_resolved(tmp_path):
    absent = tmp_path / "absent.csv"
    with refused(f"{absent}: no such file or folder", InputError):
        build_config(absent, command="upload", env={})


# --- the target ----------------------------------------------------------------------------


def test_every_missing_target_setting_is_named_at_once(csv_path):
    with refused(missing("org", "project", "source", "key")):
        build_config(csv_path, command="upload", env={})


def test_only_the_settings_still_missing_are_named(csv_path):
    with refused(missing("source", "key")):
        build_config(csv_path, command="upload", org="acme", env={"INTEMPT_PROJECT": "shop"})


def test_the_intempt_environment_gives_the_target_and_key(csv_path):
    config = build_config(csv_path, command="upload", env=ENV)
    destination = config.destination
    assert destination is not None
    assert destination.target == Target(DEFAULT_BASE_URL, "acme", "shop", SOURCE_ID)
    assert destination.credentials == Credentials("pk_live", "s3cr3t")
    assert destination.sandbox is None


def test_given_settings_win_over_the_environment(csv_path):
    env = {**ENV, "INTEMPT_BASE_URL": "http://env.test"}
    config = build_config(
        csv_path,
        command="upload",
        env=env,
        org="other",
        source_id=" 42 ",
        api_key="pk_given.secret2",
        base_url="https://given.test",
    )
    assert config.destination is not None
    assert config.destination.target == Target("https://given.test", "other", "shop", "42")
    assert config.destination.credentials == Credentials("pk_given", "secret2")


def test_the_base_url_comes_from_the_environment_when_not_given(csv_path):
    config = build_config(csv_path, command="upload", env={**ENV, "INTEMPT_BASE_URL": "http://h:1"})
    assert config.destination is not None
    assert config.destination.target is not None
    assert config.destination.target.track_url == (
        f"http://h:1/v1/acme/projects/shop/sources/{SOURCE_ID}/track"
    )


def test_the_key_file_wins_over_the_environment_and_its_newline_is_dropped(csv_path, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("pk_file.from-file\n")
    key_file.chmod(0o600)
    config = build_config(csv_path, command="upload", env=ENV, api_key_file=key_file)
    assert config.destination is not None
    assert config.destination.credentials == Credentials("pk_file", "from-file")


def test_a_key_file_others_can_read_gets_a_warning_that_does_not_quote_it(csv_path, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("pk_file.from-file\n")
    key_file.chmod(0o644)
    with pytest.warns(ExposedKeyWarning) as caught:
        build_config(csv_path, command="upload", env=ENV, api_key_file=key_file)
    (warning,) = caught
    assert str(warning.message) == (
        f"--api-key-file {key_file} can be read by other users (mode -rw-r--r--); keep it to "
        f"yourself: chmod 600 {key_file}"
    )
    assert "from-file" not in str(warning.message)


def test_the_key_and_a_key_file_exclude_each_other(csv_path, tmp_path):
    with refused("give the API key or a file holding it (--api-key-file), not both"):
        build_config(
            csv_path, command="upload", env=ENV, api_key="a.b", api_key_file=tmp_path / "key"
        )


def test_an_unreadable_key_file_is_named(csv_path, tmp_path):
    with refused(f"--api-key-file {tmp_path / 'none'}: cannot read (No such file or directory)"):
        build_config(csv_path, command="upload", env=ENV, api_key_file=tmp_path / "none")
    with refused(f"--api-key-file {tmp_path}: cannot read (Is a directory)"):
        build_config(csv_path, command="upload", env=ENV, api_key_file=tmp_path)


def test_an_api_key_that_is_not_text_is_refused(csv_path):
    with refused("api_key must be a string, the key PREFIX.SECRET"):
        build_config(csv_path, command="upload", env=ENV, api_key=12345)


def test_the_secret_never_shows_in_the_configs_repr(csv_path):
    config = build_config(csv_path, command="upload", env=ENV)
    assert "s3cr3t" not in repr(config)
    assert "pk_live" not in repr(config)  # the credentials are left out of the repr whole


def test_a_destination_is_a_target_with_its_key_or_a_sandbox():
    with refused("give a target (org, project, source id and key) or a sandbox"):
        Destination()
    with refused("a target needs its API key"):
        Destination(Target(DEFAULT_BASE_URL, "acme", "shop", SOURCE_ID))


# --- the sandbox ---------------------------------------------------------------------------


def test_sandbox_true_needs_no_credentials_and_ignores_the_environment(csv_path):
    config = build_config(csv_path, command="upload", sandbox=True, env=ENV)
    assert config.destination == Destination(sandbox=True)


def test_sandbox_false_means_a_real_target(csv_path):
    with refused(missing("org", "project", "source", "key")):
        build_config(csv_path, command="upload", sandbox=False, env={})


def test_the_sandbox_refuses_target_settings_and_names_them(csv_path):
    with refused("sandbox= uploads to the local sandbox; leave out org, source_id, api_key"):
        build_config(
            csv_path, command="upload", sandbox=True, api_key="a.b", org="acme", source_id="1"
        )


def test_a_running_sandbox_is_the_destination(csv_path):
    with Sandbox() as sb:
        config = build_config(csv_path, command="upload", sandbox=sb)
    assert config.destination is not None
    assert config.destination.sandbox is sb


def test_a_sandbox_that_is_not_running_is_refused(csv_path):
    message = "sandbox=: this Sandbox is not running; use `with Sandbox() as sb:` or sb.start()"
    with refused(message):
        build_config(csv_path, command="upload", sandbox=Sandbox())
    with Sandbox() as stopped:
        pass
    with refused(message):
        build_config(csv_path, command="upload", sandbox=stopped)


def test_sandbox_takes_true_or_a_sandbox(csv_path):
    with refused("sandbox= takes True or a running Sandbox; got 'yes'"):
        build_config(csv_path, command="upload", sandbox="yes")


# --- sending -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"concurrency": 0}, "--concurrency must be at least 1, not 0"),
        ({"concurrency": 2.0}, "--concurrency must be at least 1, not 2.0"),
        ({"concurrency": True}, "--concurrency must be at least 1, not True"),
        ({"rate": 0}, "--rate must be above 0, not 0"),
        ({"rate": -1.5}, "--rate must be above 0, not -1.5"),
        ({"rate": float("inf")}, "--rate must be above 0, not inf"),
        ({"rate": "2"}, "--rate must be above 0, not '2'"),
        ({"concurrency": "3"}, "--concurrency must be at least 1, not '3'"),
        ({"max_retry_time": 0}, "max_retry_time must be a number of seconds above 0; got 0"),
        (
            {"max_retry_time": float("nan")},
            "max_retry_time must be a number of seconds above 0; got nan",
        ),
        ({"max_retry_time": "10"}, "max_retry_time must be a number of seconds above 0; got '10'"),
    ],
)
def test_sending_limits_are_checked(csv_path, given, message):
    with refused(message):
        build_config(csv_path, command="upload", sandbox=True, **given)


def test_sending_settings_are_kept(csv_path, tmp_path):
    config = build_config(
        csv_path,
        command="upload",
        sandbox=True,
        state=tmp_path / "state.db",
        concurrency=8,
        rate=2.5,
        max_retry_time=30,
        force=True,
        restart=1,
    )
    assert config.sending == Sending(str(tmp_path / "state.db"), 8, 2.5, 30, True, True)
