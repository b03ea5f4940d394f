"""Versioned migrations of the hub's `sync` schema, applied idempotently under an advisory lock."""

from __future__ import annotations

import psycopg
from psycopg.rows import DictRow

# Append only: a released migration is never edited, a change is a new entry.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "hub tables", """
create table sync.golden (
  entity             text        not null,
  record_id          uuid        not null,
  version            bigint      not null,
  data               jsonb,
  deleted            boolean     not null default false,
  content_hash       text        not null,
  origin_store       text        not null,
  origin_modified_at timestamptz not null,
  updated_at         timestamptz not null default now(),
  primary key (entity, record_id)
);
create index golden_entity_version on sync.golden (entity, version);

-- Every version the hub has held: the base snapshots for three-way merges and the change history.
create table sync.golden_history (
  entity             text        not null,
  record_id          uuid        not null,
  version            bigint      not null,
  data               jsonb,
  deleted            boolean     not null,
  content_hash       text        not null,
  origin_store       text        not null,
  origin_modified_at timestamptz not null,
  recorded_at        timestamptz not null default now(),
  run_id             text,
  primary key (entity, record_id, version)
);

-- What each store has seen of each record, and the store's own id for it (the id map).
create table sync.record_state (
  entity          text        not null,
  record_id       uuid        not null,
  store           text        not null,
  store_record_id text,
  seen_version    bigint      not null default 0,  -- the latest version the store holds or has sent us
  seen_hash       text,
  written_version bigint      not null default 0,  -- the latest version we wrote into the store
  updated_at      timestamptz not null default now(),
  primary key (entity, record_id, store)
);
create unique index record_state_store_id on sync.record_state (store, entity, store_record_id)
  where store_record_id is not null;
create index record_state_store_version on sync.record_state (store, entity, record_id, seen_version);

-- Captured changes and received webhooks waiting to be resolved. A webhook row is a hint
-- (kind 'webhook') until its record is re-read from the source and the row becomes a 'change'.
create table sync.inbox (
  id              bigserial   primary key,
  store           text        not null,
  entity          text        not null,
  event_key       text        not null,
  kind            text        not null check (kind in ('change', 'webhook')),
  record_id       uuid,
  store_record_id text,
  op              text        check (op in ('upsert', 'delete')),
  data            jsonb,
  base_version    bigint,     -- the version the store's row carried when edited; null: use record_state
  modified_at     timestamptz,
  payload         jsonb,
  received_at     timestamptz not null default now(),
  applied_at      timestamptz,
  run_id          text,
  unique (store, event_key)
);
create index inbox_pending on sync.inbox (entity, id) where applied_at is null;

create table sync.processed_events (
  store        text        not null,
  event_key    text        not null,
  run_id       text,
  processed_at timestamptz not null default now(),
  primary key (store, event_key)
);

create table sync.cursors (
  store      text        not null,
  entity     text        not null,
  position   jsonb       not null,
  updated_at timestamptz not null default now(),
  primary key (store, entity)
);

create table sync.conflicts (
  id               bigserial   primary key,
  detected_at      timestamptz not null default now(),
  run_id           text,
  entity           text        not null,
  record_id        uuid        not null,
  golden_version   bigint      not null,
  base_version     bigint      not null,
  incoming_store   text        not null,
  golden_store     text        not null,
  winner_store     text        not null,
  resolution       text        not null,
  result_version   bigint      not null,
  differing_fields text[]      not null,
  golden_side      jsonb       not null,
  incoming_side    jsonb       not null
);

create table sync.errors (
  id              bigserial   primary key,
  occurred_at     timestamptz not null default now(),
  run_id          text,
  store           text        not null,
  entity          text,
  record_id       text,
  operation       text        not null,
  attempt         int         not null default 1,
  error_class     text        not null,
  message         text        not null,
  payload_excerpt jsonb,
  resolved_at     timestamptz
);

create table sync.quarantine (
  id              bigserial   primary key,
  quarantined_at  timestamptz not null default now(),
  run_id          text,
  store           text        not null,
  entity          text        not null,
  record_id       text,
  event_key       text        not null,
  reason          text        not null,
  failures        jsonb       not null,
  payload         jsonb       not null,
  resolved_at     timestamptz,
  unique (store, entity, event_key)
);

create table sync.runs (
  run_id      text        primary key,
  started_at  timestamptz not null default now(),
  finished_at timestamptz,
  status      text        not null default 'running',
  trigger     text,
  counts      jsonb       not null default '{}'
);

create table sync.record_outcomes (
  id        bigserial   primary key,
  run_id    text,
  store     text        not null,
  entity    text        not null,
  record_id text,
  event_key text,
  stage     text        not null check (stage in ('capture', 'resolve', 'publish', 'reconcile')),
  outcome   text        not null,
  version   bigint,
  detail    text,
  at        timestamptz not null default now()
);
create index record_outcomes_run on sync.record_outcomes (run_id);
"""),
    (2, "natural key lookups", """
create index golden_people_email on sync.golden ((data->>'email')) where entity = 'people' and not deleted;
create index golden_companies_domain on sync.golden ((data->>'domain_name'))
  where entity = 'companies' and not deleted;
"""),
    (3, "repeated webhook deliveries", """
-- A delivery received again is recorded (outcome 'duplicate' at capture) so that the UI can show it.
create index record_outcomes_duplicates on sync.record_outcomes (store, entity, at)
  where stage = 'capture' and outcome = 'duplicate';
"""),
    (4, "bookkeeping that tells the truth", """
-- A quarantined record is one open row however often it is seen: later sightings update it.
alter table sync.quarantine add column last_seen_at timestamptz not null default now(),
                            add column times_seen   int         not null default 1;
update sync.quarantine set last_seen_at = quarantined_at;
-- Collapse the open rows of a record into its latest (reason and payload as last seen), first seen kept.
with open_rows as (
  select id, first_value(id) over w as keep, count(*) over w as n,
         min(quarantined_at) over w as first_seen, max(quarantined_at) over w as last_seen
  from sync.quarantine where resolved_at is null and record_id is not null
  window w as (partition by store, entity, record_id order by quarantined_at desc, id desc
               rows between unbounded preceding and unbounded following)),
kept as (
  update sync.quarantine q set times_seen = o.n, quarantined_at = o.first_seen, last_seen_at = o.last_seen
  from open_rows o where q.id = o.id and o.id = o.keep and o.n > 1)
delete from sync.quarantine q using open_rows o where q.id = o.id and o.id <> o.keep;
create unique index quarantine_open_record on sync.quarantine (store, entity, record_id)
  where resolved_at is null and record_id is not null;

-- A failed batch names all its records (the payload is a redacted excerpt cut at 20 items), so it closes once
-- they all landed. Older errors are taken over only where their excerpt cannot have been cut.
alter table sync.errors add column record_ids text[];
update sync.errors
  set record_ids = array(select jsonb_array_elements_text(payload_excerpt->'payload'->'record_ids'))
  where record_id is null and jsonb_typeof(payload_excerpt->'payload'->'record_ids') = 'array'
    and jsonb_array_length(payload_excerpt->'payload'->'record_ids') < 20;
-- The open errors of a store are what the checks and the closing statements read.
create index errors_open on sync.errors (store, entity) where resolved_at is null;
"""),
    (5, "what the hub last read of a record", """
-- Before writing to Twenty, the publish looks up the latest change captured from it for each record.
create index inbox_store_record on sync.inbox (store, entity, store_record_id) where kind = 'change';
"""),
    (6, "what each store has not seen yet, kept as it changes", """
-- The stores that publish an entity (registered, and filled from a scan, by their first publish), and per
-- store the records whose golden version it has not seen: publishing reads this, never the whole hub.
create table sync.publish_targets (
  store         text        not null,
  entity        text        not null,
  registered_at timestamptz not null default now(),
  primary key (store, entity)
);
create table sync.publish_pending (
  store     text   not null,
  entity    text   not null,
  record_id uuid   not null,
  version   bigint not null,  -- the golden version the store has not seen
  primary key (store, entity, record_id)
);

-- Kept by the statements that change a golden record or what a store holds, whoever runs them, so no
-- writer can forget it. A target being registered waits for these (the shared lock) and they for it.
create function sync.pending_after_golden() returns trigger language plpgsql as $$
begin
  perform pg_advisory_xact_lock_shared(1937337955, 6);
  insert into sync.publish_pending as p (store, entity, record_id, version)
  select t.store, n.entity, n.record_id, n.version
  from changed n
  join sync.publish_targets t on t.entity = n.entity
  left join sync.record_state s on s.entity = n.entity and s.record_id = n.record_id and s.store = t.store
  where coalesce(s.seen_version, 0) < n.version
  order by t.store, n.entity, n.record_id
  on conflict (store, entity, record_id) do update set version = greatest(p.version, excluded.version);
  return null;
end $$;
create trigger golden_inserted_pending after insert on sync.golden
  referencing new table as changed for each statement execute function sync.pending_after_golden();
create trigger golden_updated_pending after update on sync.golden
  referencing new table as changed for each statement execute function sync.pending_after_golden();

create function sync.pending_after_state() returns trigger language plpgsql as $$
begin
  perform pg_advisory_xact_lock_shared(1937337955, 6);
  delete from sync.publish_pending p using changed n
  where p.store = n.store and p.entity = n.entity and p.record_id = n.record_id
    and p.version <= n.seen_version;
  -- A store found to hold less than the hub has (an adoption's link, a conflict the hub won).
  insert into sync.publish_pending as p (store, entity, record_id, version)
  select n.store, n.entity, n.record_id, g.version
  from changed n
  join sync.publish_targets t on t.store = n.store and t.entity = n.entity
  join sync.golden g on g.entity = n.entity and g.record_id = n.record_id
  where n.seen_version < g.version
  order by n.store, n.entity, n.record_id
  on conflict (store, entity, record_id) do update set version = greatest(p.version, excluded.version);
  return null;
end $$;
create trigger record_state_inserted_pending after insert on sync.record_state
  referencing new table as changed for each statement execute function sync.pending_after_state();
create trigger record_state_updated_pending after update on sync.record_state
  referencing new table as changed for each statement execute function sync.pending_after_state();
"""),
    (7, "statistics on the natural keys", """
-- The planner keeps no statistics for a partial index's expression: it took a resolve batch's natural key
-- lookup (`data->>'email' = any(...)`) to match most of the table and scanned all of it, per batch (a first
-- sync's resolve grew with batches x records). Expression statistics (Postgres 14 and later) fix the estimate.
do $$
begin
  if current_setting('server_version_num')::int >= 140000 then
    execute 'create statistics sync.golden_email_stats on ((data->>''email'')) from sync.golden';
    execute 'create statistics sync.golden_domain_stats on ((data->>''domain_name'')) from sync.golden';
  end if;
end $$;
"""),
    (8, "what each check has passed over", """
-- A run a window check has evaluated clean once the run had finished: its later evaluations skip it, so a
-- sync's checks cost what changed since they last passed, not the latest runs (a bulk first sync among them).
create table sync.check_clearances (
  check_key  text        not null,
  run_id     text        not null,
  cleared_at timestamptz not null default now(),
  primary key (check_key, run_id)
);
create index runs_started on sync.runs (started_at desc);
"""),
    (9, "a run's outcomes by entity and stage", """
-- The conflict rate and the checks' windows count a run's resolve outcomes of one entity: found through the
-- run alone, a bulk first sync's millions of capture and publish outcomes were read for every entity, by every
-- sync while the run stayed among the latest ten. The run's prefix still serves what looks a run up.
create index record_outcomes_run_stage on sync.record_outcomes (run_id, entity, stage, outcome);
drop index sync.record_outcomes_run;
"""),
    (10, "a run's conflicts", """
-- The gate reads the conflicts of the runs in its window, and a plan those of its run: found through the run,
-- not by a scan of every conflict ever recorded.
create index conflicts_run on sync.conflicts (run_id, entity);
"""),
    (11, "pending kept at the cost of the rows changed", """
-- The stores' states of a batch's golden versions were joined as a hash of every record state, read whole
-- per batch (67 of 75 ms for a batch of 2,000 at 96k records, growing with the hub until the planner turns);
-- each is now looked up on its key. An upsert fires both the insert and the update statement triggers, one
-- of them over no rows: a statement that changed nothing returns at once.
create or replace function sync.pending_after_golden() returns trigger language plpgsql as $$
begin
  if not exists (select from changed) then
    return null;
  end if;
  perform pg_advisory_xact_lock_shared(1937337955, 6);
  insert into sync.publish_pending as p (store, entity, record_id, version)
  select t.store, n.entity, n.record_id, n.version
  from changed n
  join sync.publish_targets t on t.entity = n.entity
  where coalesce((select s.seen_version from sync.record_state s
                  where s.entity = n.entity and s.record_id = n.record_id and s.store = t.store), 0) < n.version
  order by t.store, n.entity, n.record_id
  on conflict (store, entity, record_id) do update set version = greatest(p.version, excluded.version);
  return null;
end $$;

create or replace function sync.pending_after_state() returns trigger language plpgsql as $$
begin
  if not exists (select from changed) then
    return null;
  end if;
  perform pg_advisory_xact_lock_shared(1937337955, 6);
  delete from sync.publish_pending p using changed n
  where p.store = n.store and p.entity = n.entity and p.record_id = n.record_id
    and p.version <= n.seen_version;
  -- A store found to hold less than the hub has (an adoption's link, a conflict the hub won).
  insert into sync.publish_pending as p (store, entity, record_id, version)
  select n.store, n.entity, n.record_id, g.version
  from changed n
  join sync.publish_targets t on t.store = n.store and t.entity = n.entity
  join sync.golden g on g.entity = n.entity and g.record_id = n.record_id
  where n.seen_version < g.version
  order by n.store, n.entity, n.record_id
  on conflict (store, entity, record_id) do update set version = greatest(p.version, excluded.version);
  return null;
end $$;
"""),
    (12, "the id map of the records held under an id of their own", """
-- Most records are held in every store under their canonical id; the id map only has to answer for those held
-- under another (linked by natural key, a bigint or text key). Looked up in the indexes of all record states, a
-- page of ids cost a read per id of an index larger than the server's buffers: 31 s of a 1M first sync's
-- publish (a parallel scan of every state per page at 100k). These hold only the others.
create index record_state_own_ids on sync.record_state (store, entity, record_id) include (store_record_id)
  where store_record_id <> record_id::text;
create index record_state_own_store_ids on sync.record_state (store, entity, store_record_id) include (record_id)
  where store_record_id <> record_id::text;
"""),
]

# Taken exclusively while a publish target is registered and its pending records filled from a scan, and
# shared by the triggers that keep them (migration 6), so that no change falls between the two.
PENDING_LOCK_KEY = (0x73796E63, 6)

_LOCK_KEY = 0x73796E63  # "sync": one migrator at a time per database


def migrate(conn: psycopg.Connection[DictRow]) -> list[int]:
    """Apply the migrations this database has not had yet; returns the versions applied now."""
    applied_now = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("create schema if not exists sync")
        conn.execute("""create table if not exists sync.schema_migrations (
                          version int primary key, name text not null,
                          applied_at timestamptz not null default now())""")
        done = {row["version"] for row in conn.execute("select version from sync.schema_migrations")}
        for version, name, ddl in MIGRATIONS:
            if version in done:
                continue
            conn.execute(ddl)
            conn.execute("insert into sync.schema_migrations (version, name) values (%s, %s)", (version, name))
            applied_now.append(version)
    return applied_now
