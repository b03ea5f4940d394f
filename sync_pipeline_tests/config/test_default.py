"""The shipped default configuration is today's sandbox schema, exactly."""

from __future__ import annotations

from sync_pipeline.config import DEFAULT_CONFIG_PATH, load_config
from sync_pipeline.model.entities import ENTITIES, ENTITY_NAMES, entity
from sync_pipeline.model.fields import Entity, Field, FieldType

_STAGES = ("NEW", "SCREENING", "MEETING", "PROPOSAL", "CUSTOMER")
# The registry as model/entities.py declared it before the configuration existed.
TODAYS_ENTITIES = (
    Entity(
        name="companies",
        description="Accounts: one row per company, matched across stores by its domain.",
        natural_key="domain_name",
        fields=(
            Field("name", FieldType.TEXT, required=True),
            Field("domain_name", FieldType.URL, description="Primary domain URL, lower-cased origin"),
            Field("employees", FieldType.INTEGER),
            Field("linkedin_url", FieldType.URL),
            Field("annual_recurring_revenue", FieldType.NUMERIC, description="In currency units"),
            Field("currency_code", FieldType.TEXT),
            Field("address_street", FieldType.TEXT),
            Field("address_city", FieldType.TEXT),
            Field("address_postcode", FieldType.TEXT),
            Field("address_country", FieldType.TEXT),
            Field("ideal_customer_profile", FieldType.BOOLEAN, required=True),
        ),
    ),
    Entity(
        name="people",
        description="Contacts: one row per person, matched across stores by primary e-mail.",
        natural_key="email",
        fields=(
            Field("first_name", FieldType.TEXT, required=True),
            Field("last_name", FieldType.TEXT),
            Field("email", FieldType.EMAIL, required=True, description="Primary e-mail, lower-cased"),
            Field("phone", FieldType.TEXT),
            Field("job_title", FieldType.TEXT),
            Field("city", FieldType.TEXT),
            Field("linkedin_url", FieldType.URL),
            Field("company_id", FieldType.UUID, references="companies"),
        ),
    ),
    Entity(
        name="opportunities",
        description="Deals in the sales pipeline.",
        fields=(
            Field("name", FieldType.TEXT, required=True),
            Field("amount", FieldType.NUMERIC, description="In currency units"),
            Field("currency_code", FieldType.TEXT),
            Field("close_date", FieldType.TIMESTAMP),
            Field("stage", FieldType.ENUM, required=True, choices=_STAGES),
            Field("company_id", FieldType.UUID, references="companies"),
            Field("point_of_contact_id", FieldType.UUID, references="people"),
        ),
    ),
)


def test_the_default_configuration_yields_todays_entities() -> None:
    assert load_config(DEFAULT_CONFIG_PATH).entities == TODAYS_ENTITIES
    assert ENTITIES == TODAYS_ENTITIES  # the registry runs on the default when SYNC_PIPELINE_CONFIG is unset
    assert ENTITY_NAMES == ("companies", "people", "opportunities")
    assert entity("people").references == {"company_id": "companies"}


def test_postgres_stores_hold_every_field_under_its_canonical_name() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    for store in ("supabase", "local_db"):
        assert config.adopt_wins(store) == "most_recent"
        for e in TODAYS_ENTITIES:
            table = config.table_mapping(store, e.name)
            assert table is not None
            assert (table.schema, table.table) == ("public", e.name)
            assert (table.id_column, table.id_type) == ("id", "uuid")
            assert table.columns == {name: name for name in e.field_names}
            assert (table.ignore_columns, table.create) == ((), True)


def test_twenty_and_the_warehouse_carry_every_entity() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    for e in TODAYS_ENTITIES:
        twenty = config.twenty_mapping(e.name)
        assert twenty is not None and twenty.object == e.name
        assert list(twenty.fields) == e.field_names
        assert config.warehouse_table(e.name) == e.name
    people = config.twenty_mapping("people")
    assert people is not None and people.fields["first_name"] == "name.firstName"
    assert config.carries("bigquery", "opportunities")
