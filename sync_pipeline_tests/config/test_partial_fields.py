"""A store that carries only some fields: the configuration names them, and its records are validated
and canonicalised on those fields alone (a field it does not carry is not read as an empty value)."""

from __future__ import annotations

from pathlib import Path

from sync_pipeline.config import DEFAULT_CONFIG_PATH, load_config
from sync_pipeline.model.canonical import canonical_record
from sync_pipeline.model.contracts import validate_records
from sync_pipeline.model.entities import entity

PEOPLE = entity("people")
PERSON_ID = "5f8a0c9e-1d2b-4c3a-9e8f-0a1b2c3d4e5f"


def test_carried_fields_follow_the_configuration(tmp_path: Path) -> None:
    default = load_config(DEFAULT_CONFIG_PATH)
    for store in ("twenty", "supabase", "local_db", "bigquery"):
        assert default.carried_fields(store, "people") == tuple(PEOPLE.field_names)

    text = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")
    text = text.replace("          phone: phones.primaryPhoneNumber\n", "").replace(
        "  local_db: *sandbox_tables\n",
        "  local_db:\n    entities:\n      people:\n        table: {name: contacts}\n"
        "        columns: {city: town, first_name: given_name, email: mail}\n")
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    # In the entity's order, whatever the file's.
    assert config.carried_fields("local_db", "people") == ("first_name", "email", "city")
    assert config.carried_fields("local_db", "companies") == ()
    assert "phone" not in config.carried_fields("twenty", "people")
    assert config.carried_fields("bigquery", "people") == tuple(PEOPLE.field_names)


def test_records_of_a_partial_store_hold_only_its_fields() -> None:
    carried = ("first_name", "city")  # not the required e-mail: a store without it still syncs names
    rows = [{"id": PERSON_ID, "first_name": "Ada", "city": "London", "email": "not read"},
            {"id": PERSON_ID, "first_name": "", "city": "Paris"}]
    result = validate_records(PEOPLE, rows, carried)
    assert [record for _, record in result.valid] == [
        {"id": PERSON_ID, "first_name": "Ada", "city": "London"}]
    assert [r.reason for r in result.rejected] == ["first_name: required field is empty"]
    assert canonical_record(PEOPLE, rows[0], carried) == {"first_name": "Ada", "city": "London"}

    everything = validate_records(PEOPLE, rows[:1])  # the same row against every field
    assert [r.reason for r in everything.rejected] == [
        "email: 'not read' is not a well-formed e-mail address"]
