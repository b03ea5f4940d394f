"""Secrets are masked where the message is made. A store URL whose password is not valid percent-encoding
makes libpq quote the password bare (`invalid percent-encoded token: "pa%zzword"`); every place that
connects to Postgres (the local DB, Supabase, the hub) knows its password and masks it in the error and
its whole chain, so that it reaches neither the hub's tables, the warehouse nor Dagster's storage, while the
error still says what is wrong. A wrong Twenty key is never echoed either."""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster._serdes import serialize_value

from sync_pipeline.defs.resources import HubResource, LocalDbResource, SupabaseResource
from sync_pipeline.hub.hub import Hub
from sync_pipeline.model.entities import entity
from sync_pipeline.redaction import call_masked, dsn_secrets, redact_secret
from sync_pipeline.stores.base import SameIds
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.store import TwentyStore
from sync_pipeline_tests.fixtures.bigquery import emulator_client
from sync_pipeline_tests.fixtures.defs import defs_with
from sync_pipeline_tests.helpers import insert_person

PEOPLE = entity("people")
# Passwords a person may paste into a URL unencoded: a bare "%", an "@" or a "/" in the middle.
PASSWORDS = ["pa%zzword", "p@ss%zzword", "pa/ss%zzword", "s3cr%2"]


def _malformed(dsn: str, password: str) -> str:
    """The test server's URL (`postgresql://postgres@host:port/db`) with a password that breaks it."""
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


def _pieces(password: str) -> list[str]:
    """The password and the parts libpq may quote on their own when it cuts the URL at "@" or "/"."""
    return [password, *(p for p in re.split(r"[@/]", password) if len(p) >= 4)]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and every cause and context, suppressed or not."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending:
        e = pending.pop()
        if all(e is not s for s in seen):
            seen.append(e)
            pending += [c for c in (e.__cause__, e.__context__) if c is not None]
    return seen


def _everything_said(exc: BaseException) -> str:
    return "\n".join(["".join(traceback.format_exception(exc)),
                      *(f"{e}\n{e!r}\n{e.args!r}\n{vars(e)!r}" for e in _chain(exc))])


def _assert_masked(text: str, password: str) -> None:
    for piece in _pieces(password):
        assert piece not in text, f"{piece!r} in:\n{text}"


# -- the redaction itself --------------------------------------------------------------------------------


def test_the_password_of_a_malformed_url_is_known():
    assert dsn_secrets("postgresql://sync:pa%zzword@host/db") == ("pa%zzword",)
    assert set(dsn_secrets("postgresql://sync:p@ss%zzword@host/db")) >= {"p@ss%zzword", "ss%zzword"}
    assert dsn_secrets("postgresql://sync:pa%2Fss@host/db?application_name=a@b") == ("pa%2Fss", "pa/ss")
    assert dsn_secrets("host=h password='se cr%zz' dbname=x '") == ("se cr%zz",)
    assert dsn_secrets("postgresql://sync@host/db") == ()


def test_an_exception_and_its_chain_are_rewritten_in_place():
    secret = "".join(["pa%", "zzword"])  # not in this file's text, which a traceback quotes

    class Unshowable(Exception):
        def __str__(self) -> str:
            return f"holds {secret} for ever"

    def chained() -> None:
        try:
            raise KeyError(secret)
        except KeyError as inner:
            raise ValueError(f"token: {secret}", {"dsn": f"x:{secret}"}) from inner

    def unshowable() -> None:
        raise Unshowable()

    with pytest.raises(ValueError) as raised:
        call_masked(chained, secret)
    assert secret not in _everything_said(raised.value)
    assert str(raised.value).startswith("('token: ***'")
    assert isinstance(raised.value.__cause__, KeyError)
    with pytest.raises(RuntimeError) as replaced:
        call_masked(unshowable, secret)
    assert secret not in _everything_said(replaced.value)
    assert replaced.value.__context__ is None and "holds *** for ever" in replaced.value.args[0]
    assert redact_secret(f"a {secret} b", secret, None) == "a *** b"


# -- every place that connects to Postgres ---------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_malformed_password_is_masked_wherever_postgres_is_reached(topology, password):
    stores = [PostgresStore("local_db", _malformed(topology.local_dsn, password), connect_timeout=3),
              PostgresStore("supabase", _malformed(topology.supabase_dsn, password), sslmode="require",
                            connect_timeout=3)]
    for store in stores:
        with pytest.raises(psycopg.Error) as raised:
            store.capture(PEOPLE, None, 10)
        _assert_masked(_everything_said(raised.value), password)
        health = store.check()
        assert not health.ok
        _assert_masked(f"{health.message} {health.details}", password)
    with pytest.raises(psycopg.Error) as raised:
        Hub(_malformed(topology.local_dsn, password)).migrate()
    _assert_masked(_everything_said(raised.value), password)
    if password == "pa%zzword":  # the error still says what is wrong
        assert 'invalid percent-encoded token: "***"' in str(raised.value)


def test_a_wrong_twenty_key_is_never_echoed(twenty_standin):
    key = "wrong-twenty-k3y-0123456789"
    store = TwentyStore(TwentyClient(twenty_standin.base_url, key, backoff_initial=0.05, backoff_max=0.2), SameIds())
    health = store.check()
    assert not health.ok
    _assert_masked(f"{health.message} {health.details}", key)
    with pytest.raises(Exception) as raised:
        store.capture(PEOPLE, None, 10)
    _assert_masked(_everything_said(raised.value), key)


# -- through Dagster: the hub, the warehouse and Dagster's storage ---------------------------------------


def _hub_text(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return "\n".join(str(conn.execute(f"select * from sync.{table}").fetchall())  # noqa: S608 - fixed names
                         for table in ("errors", "record_outcomes", "quarantine", "runs"))


def _warehouse_text(bigquery_emulator, dataset: str) -> str:
    client = emulator_client(bigquery_emulator)
    try:
        rows = client.query(f"select * from `{client.project}.{dataset}.sync_record_outcomes`").result()
        return "\n".join(str(dict(r)) for r in rows)
    finally:
        client.close()


def _dagster_text(instance: dg.DagsterInstance, run_ids: list[str], storage: Path) -> str:
    said = [serialize_value(e) for run_id in run_ids for e in instance.all_logs(run_id)]
    said += [e.message or "" for run_id in run_ids for e in instance.all_logs(run_id)]
    # Every file Dagster wrote: its sqlite run, event and schedule storage and the compute logs.
    said += [p.read_bytes().decode("utf-8", "replace") for p in storage.rglob("*") if p.is_file()]
    return "\n".join(said)


def test_a_sync_with_malformed_passwords_leaves_them_nowhere(four_stores, topology, bigquery_emulator,
                                                             bigquery_store, monkeypatch, tmp_path):
    local_password, supabase_password, hub_password = "pa%zzword", "p@ss%zzSupa", "hub%zzsecret"
    monkeypatch.setenv("TEST_LOCAL_DATABASE_URL", _malformed(topology.local_dsn, local_password))
    monkeypatch.setenv("TEST_SUPABASE_DATABASE_URL", _malformed(topology.supabase_dsn, supabase_password))
    monkeypatch.setenv("TEST_HUB_DATABASE_URL", _malformed(topology.local_dsn, hub_password))
    with psycopg.connect(topology.supabase_dsn) as conn:
        insert_person(conn)
    resources: dict[str, Any] = {
        **four_stores.resources,
        "local_db": LocalDbResource(dsn=dg.EnvVar("TEST_LOCAL_DATABASE_URL")),
        "supabase": SupabaseResource(dsn=dg.EnvVar("TEST_SUPABASE_DATABASE_URL"), sslmode="disable"),
    }
    storage = tmp_path / "dagster"
    storage.mkdir()
    with dg.DagsterInstance.local_temp(str(storage)) as instance:
        run_ids = []
        # One run with the stores' passwords malformed, one with the hub's (the run cannot even start).
        for job_resources in (resources, {**resources, "hub": HubResource(dsn=dg.EnvVar("TEST_HUB_DATABASE_URL"))}):
            result = defs_with(job_resources).resolve_job_def("sync_job").execute_in_process(
                instance=instance, raise_on_error=False)
            assert not result.success
            run_ids.append(result.run_id)
        dagster_text = _dagster_text(instance, run_ids, storage)

    hub_text = _hub_text(topology.local_dsn)
    texts = {"hub": hub_text, "warehouse": _warehouse_text(bigquery_emulator, bigquery_store.dataset_id),
             "dagster": dagster_text}
    for where, text in texts.items():
        for password in (local_password, supabase_password, hub_password):
            for piece in _pieces(password):
                assert piece not in text, f"{piece!r} found in {where}"
    # the errors still say what went wrong, where it went wrong
    assert 'invalid percent-encoded token: \\"***\\"' in hub_text or 'invalid percent-encoded token: "***"' in hub_text
    assert "invalid percent-encoded token" in dagster_text
    assert "invalid percent-encoded token" in texts["warehouse"]
    assert any(p.suffix in (".err", ".out", ".complete") for p in storage.rglob("*")), "no compute logs"
