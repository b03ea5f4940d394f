"""Supabase as it really is (issue 11, part 6): the connection modes a Supabase project offers, for real.

TLS: a server of its own with a CA and a certificate for `localhost` made here; the hub and Supabase connect
and sync with `sslmode=require` and with `sslmode=verify-full&sslrootcert=<ca>`, and verify-full refuses a
server whose certificate is for another host or from another CA, with an error that holds no password.
The transaction pooler (port 6543): Debian's pgbouncer in transaction mode in front of the test server, which
hands a server connection to the next client unreset, so that session state (a prepared statement, a `set`)
leaks from one client to the next; the whole sync runs through it. And both at once, as Supabase's pooler is
reached: clients come to pgbouncer over TLS only, and verify-full checks its certificate.
"""

from __future__ import annotations

import datetime as dt
import itertools
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync_pipeline.defs.resources import SupabaseResource
from sync_pipeline.hub.connection import HubTimeouts, open_pool
from sync_pipeline.hub.hub import Hub
from sync_pipeline.safety import checks as safety
from sync_pipeline.safety.checks import Status
from sync_pipeline.sandbox.postgres import PostgresServer, ServerTls, run_postgres
from sync_pipeline.stores.postgres import PostgresStore
from sync_pipeline_tests.fixtures.pgbouncer import POOLER_PASSWORD, Pooler, run_pgbouncer
from sync_pipeline_tests.helpers import insert_person, people, sync_once

# The test server trusts loopback; libpq still carries the password, and must not tell it.
PASSWORD = "tls-Pa55w0rd-5432"
_tls_databases = itertools.count()


# -- certificates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server's certificate (Supabase's prod-ca-2021.crt plays this part)
    other_ca: Path  # a CA that signed nothing the server holds
    server: ServerTls  # for DNS:localhost only: 127.0.0.1 is another host to verify-full


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, hosts: tuple[str, ...] = ()
                 ) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                                         critical=False)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    root = tmp_path_factory.mktemp("tls")
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    (root / "ca.pem").write_bytes(_pem(_certificate("Test Supabase CA", ca_key, "Test Supabase CA", ca_key,
                                                    ca=True)))
    (root / "other_ca.pem").write_bytes(_pem(_certificate("Another CA", other_key, "Another CA", other_key,
                                                          ca=True)))
    (root / "server.pem").write_bytes(_pem(_certificate("localhost", server_key, "Test Supabase CA", ca_key,
                                                        ca=False, hosts=("localhost",))))
    (root / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return Certificates(root / "ca.pem", root / "other_ca.pem",
                        ServerTls(root / "server.pem", root / "server.key"))


@contextmanager
def _hub_on_a_pool(dsn: str) -> Iterator[Hub]:
    """The hub on the pool its Dagster resource opens for a run: each connection serves many transactions."""
    with open_pool(dsn, HubTimeouts(), max_size=4) as pool:
        yield Hub(dsn, pool=pool)


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[PostgresServer]:
    with run_postgres(durable=False, tls=certificates.server) as server:
        yield server


def _url(server: PostgresServer, database: str, host: str = "localhost", **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    url = f"postgresql://postgres:{PASSWORD}@{host}:{server.port}/{database}"
    return f"{url}?{query}" if query else url


def _on_tls(conn: psycopg.Connection[Any]) -> bool:
    """What the server says of this connection (the client's view could be a setting, not the wire)."""
    return conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() in (
        (True,), {"ssl": True})


@pytest.fixture
def tls_databases(tls_server: PostgresServer) -> Iterator[tuple[str, str]]:
    n = next(_tls_databases)
    names = (f"tls_local_{n}", f"tls_supabase_{n}")
    for name in names:
        tls_server.create_database(name)
    yield names
    for name in names:
        tls_server.drop_database(name)


# -- TLS ------------------------------------------------------------------------------------------------


@pytest.fixture(params=["require", "verify-full"])
def tls_params(request: pytest.FixtureRequest, certificates: Certificates) -> dict[str, str]:
    """A TLS mode's URL parameters: verify-full names the CA to verify with."""
    if request.param == "verify-full":
        return {"sslmode": "verify-full", "sslrootcert": str(certificates.ca)}
    return {"sslmode": request.param}


@pytest.fixture
def tls_hub(tls_server: PostgresServer, tls_databases: tuple[str, str], tls_params: dict[str, str]
            ) -> Iterator[Hub]:
    with _hub_on_a_pool(_url(tls_server, tls_databases[0], **tls_params)) as hub:
        hub.migrate()
        yield hub


def test_supabase_and_the_hub_sync_over_tls(tls_server, tls_databases, tls_params, tls_hub):
    local, supabase_db = tls_databases
    hub = tls_hub
    # As the code location builds it: the resource's own sslmode (`require` by default) is the default, the
    # URL's sslmode (verify-full with its CA) is kept.
    supabase = SupabaseResource(dsn=_url(tls_server, supabase_db, **tls_params)).store(hub)
    local_db = PostgresStore("local_db", tls_server.dsn(local), id_map=hub.id_map("local_db"))
    for store in (supabase, local_db):
        store.install()
    with hub.connect() as conn:
        assert _on_tls(conn)
    with supabase.connect() as conn:
        assert _on_tls(conn)
        assert conn.info.get_parameters()["sslmode"] == tls_params["sslmode"]

    _both_ways(hub, supabase, local_db, tls_server.dsn(supabase_db), tls_server.dsn(local))


def _both_ways(hub: Hub, supabase: PostgresStore, local_db: PostgresStore, app_dsn: str, local_dsn: str) -> None:
    """A person the app inserts into Supabase (through `app_dsn`) reaches the local DB; an edit there comes
    back; the connection check passes."""
    with psycopg.connect(app_dsn, prepare_threshold=None) as conn:
        pid = insert_person(conn, first_name="Grace", email="grace@navy.mil")
    sync_once(hub, [supabase, local_db])
    assert [p["email"] for p in people(local_db)] == ["grace@navy.mil"]
    with psycopg.connect(local_dsn) as conn:
        conn.execute("update people set job_title = 'Rear Admiral' where id = %s", (pid,))
    sync_once(hub, [supabase, local_db])
    assert people(supabase) == people(local_db)
    assert people(supabase)[0]["job_title"] == "Rear Admiral"
    assert safety.connection(supabase).status is Status.PASS


@pytest.mark.parametrize("host, root", [("127.0.0.1", "ca"), ("localhost", "other_ca")],
                         ids=["certificate for another host", "certificate from another CA"])
def test_verify_full_refuses_a_server_it_cannot_verify(host, root, tls_server, certificates):
    url = _url(tls_server, "postgres", host=host, sslmode="verify-full",
               sslrootcert=str(getattr(certificates, root)))
    supabase = SupabaseResource(dsn=url).store(Hub(tls_server.dsn()))
    with pytest.raises(psycopg.OperationalError) as raised:
        with supabase.connect():
            pass
    message = str(raised.value)
    expected = 'does not match host name "127.0.0.1"' if host == "127.0.0.1" else "certificate verify failed"
    assert expected in message, message
    assert PASSWORD not in message
    verdict = safety.connection(supabase)
    assert verdict.status is Status.FAIL and expected in verdict.reason, verdict
    assert PASSWORD not in f"{verdict.reason} {verdict.metadata}"


# -- the transaction pooler -----------------------------------------------------------------------------


def _database(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


def test_the_pooler_hands_a_server_connection_on_with_its_session_state(pgbouncer, topology):
    # What the tests below rely on: pgbouncer in transaction mode, handing the server connection a client
    # has released (the last one released first) to the next client without resetting it.
    database = _database(topology.supabase_dsn)
    with psycopg.connect(pgbouncer.dsn(database), autocommit=True, prepare_threshold=None) as conn:
        conn.execute("select set_config('sync_pipeline.writer', 'sync', false)")  # a session setting
    with psycopg.connect(pgbouncer.dsn(database), autocommit=True, prepare_threshold=None) as conn:
        leaked = conn.execute("select current_setting('sync_pipeline.writer', true)").fetchone()
    assert leaked == ("sync",)
    # So psycopg's automatic prepared statements (after 5 executions; at once here) collide: each client
    # names its first one _pg3_0.
    with psycopg.connect(pgbouncer.dsn(database), autocommit=True, prepare_threshold=0) as conn:
        conn.execute("select 1")
    with psycopg.connect(pgbouncer.dsn(database), autocommit=True, prepare_threshold=0) as conn:
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            conn.execute("select 1")


def test_store_and_hub_connections_prepare_no_statement(topology):
    with PostgresStore("supabase", topology.supabase_dsn).connect() as conn:
        assert conn.prepare_threshold is None
    with topology.hub.connect() as conn:
        assert conn.prepare_threshold is None


@pytest.fixture
def pooled_hub(pgbouncer: Pooler, topology) -> Iterator[Hub]:
    """The hub behind the pooler on a pool, each server connection passing between the pool's clients. (A
    connection per unit of work meets the same trouble, only slower: a statement psycopg prepared stays on
    the server connection for its next client.)"""
    with _hub_on_a_pool(pgbouncer.dsn(_database(topology.local_dsn))) as hub:
        yield hub


def test_a_full_sync_with_supabase_and_the_hub_behind_the_transaction_pooler(pgbouncer, topology, pooled_hub):
    t, hub = topology, pooled_hub
    supabase_db = _database(t.supabase_dsn)
    hub.migrate()
    supabase = SupabaseResource(dsn=pgbouncer.dsn(supabase_db), sslmode="disable").store(hub)
    local_db = PostgresStore("local_db", t.local_dsn, id_map=hub.id_map("local_db"))
    supabase.install()  # DDL under the install's transaction-level advisory lock
    assert safety.connection(supabase).status is Status.PASS

    with psycopg.connect(t.supabase_dsn) as conn:
        grace_id = insert_person(conn, first_name="Grace", email="grace@navy.mil")
        alan_id = insert_person(conn, first_name="Alan", email="alan@bletchley.uk")
    with psycopg.connect(t.local_dsn) as conn:
        insert_person(conn, first_name="Katherine", email="katherine@nasa.gov")
    sync_once(hub, [supabase, local_db])
    emails = {"grace@navy.mil", "alan@bletchley.uk", "katherine@nasa.gov"}
    assert {p["email"] for p in people(supabase)} == emails
    assert people(supabase) == people(local_db)

    # Edits and a delete in Supabase, made by the app through the pooler, one transaction each: none may
    # run with the sync's writer tag left behind on a server connection, or its trigger would skip it.
    for statement, args in (("update people set job_title = 'Rear Admiral' where id = %s", (grace_id,)),
                            ("update people set city = 'Arlington' where id = %s", (grace_id,)),
                            ("delete from people where id = %s", (alan_id,))):
        with psycopg.connect(pgbouncer.dsn(supabase_db), prepare_threshold=None) as conn:
            conn.execute(statement, args)
    stats = sync_once(hub, [supabase, local_db])
    assert stats[("capture", "supabase", "people")].read == 3
    rows = people(local_db)
    assert rows == people(supabase)
    assert {r["email"] for r in rows} == emails - {"alan@bletchley.uk"}
    grace = next(r for r in rows if r["email"] == "grace@navy.mil")
    assert (grace["job_title"], grace["city"]) == ("Rear Admiral", "Arlington")

    # An edit and a delete in the local DB reach Supabase through the pooler: a staged write (binary COPY
    # into a temp table dropped at commit, the version-guarded update) and a guarded delete.
    with psycopg.connect(t.local_dsn) as conn:
        conn.execute("update people set city = 'Hampton' where email = 'katherine@nasa.gov'")
        conn.execute("delete from people where id = %s", (grace_id,))
    sync_once(hub, [supabase, local_db])
    assert [(r["email"], r["city"]) for r in people(supabase)] == [("katherine@nasa.gov", "Hampton")]
    assert people(supabase) == people(local_db)

    # None of the sync's own writes into Supabase (Katherine's insert and edit, Grace's delete) was logged
    # there: the writer tag held for each write's transaction. So one more run moves nothing.
    with psycopg.connect(t.supabase_dsn) as conn:
        logged = conn.execute("select count(*) from sync_cdc.change_log where row_data->>'email' = "
                              "'katherine@nasa.gov' or (op = 'D' and pk = %s)", (grace_id,)).fetchone()
    assert logged == (0,)
    stats = sync_once(hub, [supabase, local_db])
    assert all(s.read == 0 for key, s in stats.items() if key[0] in ("capture", "publish"))


def test_a_pooler_error_holds_no_password(pgbouncer, topology):
    url = pgbouncer.dsn(_database(topology.supabase_dsn)).replace(POOLER_PASSWORD, "wrong-" + POOLER_PASSWORD)
    verdict = safety.connection(SupabaseResource(dsn=url, sslmode="disable").store(topology.hub))
    assert verdict.status is Status.FAIL and "authentication failed" in verdict.reason, verdict
    assert POOLER_PASSWORD not in f"{verdict.reason} {verdict.metadata}"


# -- TLS to the transaction pooler ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pooler(tls_server: PostgresServer, certificates: Certificates) -> Iterator[Pooler]:
    """pgbouncer in front of the TLS server, taking clients over TLS only, with the server's certificate."""
    with run_pgbouncer(tls_server, tls=certificates.server) as pooler:
        yield pooler


def test_supabase_syncs_over_tls_through_the_transaction_pooler(tls_pooler, tls_server, tls_databases,
                                                                 certificates):
    local, supabase_db = tls_databases
    verified = {"sslmode": "verify-full", "sslrootcert": str(certificates.ca)}
    with _hub_on_a_pool(_url(tls_server, local, **verified)) as hub:
        hub.migrate()
        supabase = SupabaseResource(dsn=tls_pooler.dsn(supabase_db, host="localhost", **verified)).store(hub)
        local_db = PostgresStore("local_db", tls_server.dsn(local), id_map=hub.id_map("local_db"))
        for store in (supabase, local_db):
            store.install()
        with supabase.connect() as conn:
            assert conn.pgconn.ssl_in_use and conn.info.get_parameters()["sslmode"] == "verify-full"
        _both_ways(hub, supabase, local_db, tls_pooler.dsn(supabase_db), tls_server.dsn(local))  # the app, pooled


def test_the_pooler_over_tls_refuses_plain_clients_and_verify_full_an_unknown_ca(tls_pooler, tls_server,
                                                                                certificates):
    hub = Hub(tls_server.dsn())
    plain = SupabaseResource(dsn=tls_pooler.dsn("postgres", sslmode="disable"), sslmode="disable").store(hub)
    other = tls_pooler.dsn("postgres", host="localhost", sslmode="verify-full",
                           sslrootcert=str(certificates.other_ca))
    for store, expected in ((plain, "SSL required"),
                            (SupabaseResource(dsn=other).store(hub), "certificate verify failed")):
        verdict = safety.connection(store)
        assert verdict.status is Status.FAIL and expected in verdict.reason, verdict
        assert POOLER_PASSWORD not in f"{verdict.reason} {verdict.metadata}"
