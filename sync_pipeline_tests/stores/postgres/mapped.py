"""App schemas that differ from the canonical one, as teams already have them, and the sync configuration
that maps the entities onto them.

- The local DB (a back office): `crm.accounts` and `crm.contacts`, bigint identity ids (`generated always`),
  other column names and narrower types (varchar, integer), a `phone_number` only this store carries, a
  column deliberately not synced (`internal_notes`, in ignore_columns) and one nobody mapped (`created_on`).
- Supabase (an app): `public.organisations` and `public.members`, text ids, other column names, row-level
  security on (a real Supabase app's tables have it), an unmapped `avatar_url`.
Neither carries opportunities.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import yaml

from sync_pipeline.config import DEFAULT_CONFIG_PATH, SyncConfig, parse_config
from sync_pipeline.hub.hub import Hub
from sync_pipeline.stores.postgres import PostgresStore

LOCAL_SCHEMA = """
create schema crm;
create table crm.accounts (
  account_id     bigint generated always as identity primary key,
  account_name   varchar(200) not null,
  website        text,
  headcount      integer,
  linkedin       text,
  arr            numeric,
  currency       varchar(3),
  street text, town text, postcode text, country text,
  is_icp         boolean not null default false,
  internal_notes text,
  created_on     timestamptz not null default now());
create table crm.contacts (
  contact_id     bigint generated always as identity primary key,
  given_name     text not null,
  family_name    text,
  email_address  text not null,
  phone_number   text,
  title          text,
  city           text,
  account_id     bigint,
  internal_notes text);
"""

SUPABASE_SCHEMA = """
create table public.organisations (
  id text primary key default gen_random_uuid()::text,
  org_name text not null, domain text, employees bigint, linkedin_url text, arr numeric, currency_code text,
  address_street text, address_city text, address_postcode text, address_country text,
  ideal boolean not null default false);
alter table public.organisations enable row level security;
create table public.members (
  id text primary key default gen_random_uuid()::text,
  first text not null, last text, mail text not null, job text, town text, linkedin text, org_id text,
  avatar_url text);
alter table public.members enable row level security;
"""

LOCAL_TABLES = {
    "companies": {
        "table": {"schema": "crm", "name": "accounts"}, "id": {"column": "account_id", "type": "bigint"},
        "columns": {"name": "account_name", "domain_name": "website", "employees": "headcount",
                    "linkedin_url": "linkedin", "annual_recurring_revenue": "arr", "currency_code": "currency",
                    "address_street": "street", "address_city": "town", "address_postcode": "postcode",
                    "address_country": "country", "ideal_customer_profile": "is_icp"},
        "ignore_columns": ["internal_notes"]},
    "people": {
        "table": {"schema": "crm", "name": "contacts"}, "id": {"column": "contact_id", "type": "bigint"},
        "columns": {"first_name": "given_name", "last_name": "family_name", "email": "email_address",
                    "phone": "phone_number", "job_title": "title", "city": "city", "company_id": "account_id"},
        "ignore_columns": ["internal_notes"]},
}
SUPABASE_TABLES = {
    "companies": {
        "table": {"schema": "public", "name": "organisations"}, "id": {"column": "id", "type": "text"},
        "columns": {"name": "org_name", "domain_name": "domain", "employees": "employees",
                    "linkedin_url": "linkedin_url", "annual_recurring_revenue": "arr",
                    "currency_code": "currency_code", "address_street": "address_street",
                    "address_city": "address_city", "address_postcode": "address_postcode",
                    "address_country": "address_country", "ideal_customer_profile": "ideal"}},
    "people": {
        "table": {"schema": "public", "name": "members"}, "id": {"column": "id", "type": "text"},
        "columns": {"first_name": "first", "last_name": "last", "email": "mail", "job_title": "job",
                    "city": "town", "linkedin_url": "linkedin", "company_id": "org_id"}},
}


def mapped_config(local: dict[str, Any] | None = None, supabase: dict[str, Any] | None = None) -> SyncConfig:
    """The shipped configuration's entities, with the two Postgres stores mapped onto the app schemas
    above (or the tables given) and no other store."""
    with open(DEFAULT_CONFIG_PATH) as f:
        data = yaml.safe_load(f)
    data["stores"] = {"local_db": {"entities": copy.deepcopy(local or LOCAL_TABLES)},
                      "supabase": {"entities": copy.deepcopy(supabase or SUPABASE_TABLES)}}
    return parse_config(yaml.safe_dump(data, sort_keys=False), "mapped-test.yaml")


@dataclass
class Mapped:
    hub: Hub
    local_db: PostgresStore
    supabase: PostgresStore
    local_dsn: str
    supabase_dsn: str

    @property
    def stores(self) -> list[PostgresStore]:
        return [self.supabase, self.local_db]


def run_sql(dsn: str, statements: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=psycopg.rows.dict_row) as conn:
        cur = conn.execute(statements, params)
        return cur.fetchall() if cur.description else []


def new_email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"
