"""A mistake in the configuration file is reported with the file, the line and the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from sync_pipeline.config import ConfigError, load_config

# Line numbers below are this text's (the first line is line 1).
VALID = """\
entities:
  companies:
    natural_key: domain_name
    fields:
      name: {type: text, required: true}
      domain_name: {type: url}
  contacts:
    natural_key: email
    fields:
      full_name: {type: text}
      email: {type: email, required: true}
      company_id: {type: uuid, references: companies}
stores:
  supabase:
    entities:
      companies:
        table: {schema: public, name: accounts}
        columns: {name: name, domain_name: website}
      contacts:
        table: {schema: public, name: contacts}
        id: {column: id, type: bigint}
        columns:
          full_name: full_name
          email: email_address
          company_id: account_id
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == "\n".join(raised.value.problems)
    return [p.removeprefix(f"{path}:") for p in raised.value.problems]


def test_the_valid_file_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID))
    contacts = config.table_mapping("supabase", "contacts")
    assert contacts is not None and (contacts.table, contacts.id_type) == ("contacts", "bigint")
    assert config.source == str(tmp_path / "sync.yaml")


def test_an_unknown_field_in_columns(tmp_path: Path) -> None:
    text = VALID.replace("          email: email_address", "          emial: email_address")
    assert _problems(tmp_path, text) == [
        '24: stores.supabase.entities.contacts.columns.emial: no such field "emial" in contacts; '
        "its fields are full_name, email, company_id"]


def test_a_bad_type(tmp_path: Path) -> None:
    text = VALID.replace("full_name: {type: text}", "full_name: {type: string}")
    (problem,) = _problems(tmp_path, text)
    assert problem.startswith("10: entities.contacts.fields.full_name.type: Input should be 'uuid', 'text'")


def test_a_reference_to_an_entity_listed_later(tmp_path: Path) -> None:
    owner = "      owner_id: {type: uuid, references: contacts}"
    text = VALID.replace("      name: {type: text, required: true}",
                         "      name: {type: text, required: true}\n" + owner)
    assert _problems(tmp_path, text) == [
        '6: entities.companies.fields.owner_id.references: "contacts" is not listed before companies: '
        "a record may only reference entities listed before it (list the entities in dependency order)"]


def test_an_unknown_store(tmp_path: Path) -> None:
    text = VALID + "  hubspot:\n    entities: {}\n"
    assert _problems(tmp_path, text) == [
        '26: stores.hubspot: no such store "hubspot"; the stores are twenty, supabase, local_db, bigquery']


def test_a_natural_key_that_is_not_a_field(tmp_path: Path) -> None:
    text = VALID.replace("natural_key: email", "natural_key: email_address")
    assert _problems(tmp_path, text) == [
        '8: entities.contacts.natural_key: no such field "email_address" in contacts; '
        "its fields are full_name, email, company_id"]


def test_every_mistake_is_listed_in_line_order(tmp_path: Path) -> None:
    text = (VALID.replace("domain_name: website", "domain: website")
            .replace("natural_key: domain_name", "natural_key: domain"))
    assert _problems(tmp_path, text) == [
        '3: entities.companies.natural_key: no such field "domain" in companies; '
        "its fields are name, domain_name",
        '18: stores.supabase.entities.companies.columns.domain: no such field "domain" in companies; '
        "its fields are name, domain_name",
    ]


def test_a_missing_key_is_reported_on_its_parent(tmp_path: Path) -> None:
    text = VALID.replace("table: {schema: public, name: contacts}", "table: {schema: public}")
    assert _problems(tmp_path, text) == [
        "20: stores.supabase.entities.contacts.table.name: required key missing"]


def test_a_store_must_carry_what_its_references_point_at(tmp_path: Path) -> None:
    text = VALID.replace("""      companies:
        table: {schema: public, name: accounts}
        columns: {name: name, domain_name: website}
""", "")
    assert _problems(tmp_path, text) == [
        "22: stores.supabase.entities.contacts.columns.company_id: references companies, which supabase does "
        "not carry"]


def test_two_fields_in_one_column_and_an_unknown_key(tmp_path: Path) -> None:
    text = (VALID.replace("full_name: full_name", "full_name: email_address")
            .replace("id: {column: id, type: bigint}", "id: {column: id, type: bigint}\n        creat: true"))
    assert _problems(tmp_path, text) == [
        '22: stores.supabase.entities.contacts.creat: unknown key "creat"']
    text = VALID.replace("full_name: full_name", "full_name: email_address")
    assert _problems(tmp_path, text) == [
        '24: stores.supabase.entities.contacts.columns.email: column "email_address" already holds full_name']


def test_twenty_paths_and_an_enum_without_choices(tmp_path: Path) -> None:
    text = VALID.replace("full_name: {type: text}", "full_name: {type: enum}") + """\
  twenty:
    entities:
      contacts:
        object: people
        fields: {full_name: name.firstName, email: name, company_id: company.id}
"""
    assert _problems(tmp_path, text) == [
        "10: entities.contacts.fields.full_name.type: an enum needs its choices",
        '30: stores.twenty.entities.contacts.fields.full_name: "name" is mapped whole to another field: '
        "it cannot also be a composite",
        "30: stores.twenty.entities.contacts.fields.company_id: a reference maps to a join field such as "
        "companyId, not a sub-field",
        "30: stores.twenty.entities.contacts.fields.company_id: references companies, "
        "which twenty does not carry",
    ]


def test_yaml_mistakes(tmp_path: Path) -> None:
    misaligned = VALID.replace("  contacts:\n    natural_key", "  contacts:\n   natural_key")
    assert _problems(tmp_path, misaligned) == ["9: not valid YAML: mapping values are not allowed here"]
    duplicated = VALID.replace("      email: {type: email, required: true}",
                               "      email: {type: email, required: true}\n      email: {type: text}")
    assert _problems(tmp_path, duplicated) == [
        "12: entities.contacts.fields.email: duplicate key (first on line 11)"]
    assert _problems(tmp_path, "") == ["1: the file is empty"]
    assert _problems(tmp_path, "- entities\n") == [
        "1: Input should be a valid dictionary or instance of SyncConfig"]


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read the sync configuration: No such file"):
        load_config(tmp_path / "nowhere.yaml")


def test_names_and_twenty_paths_are_explained(tmp_path: Path) -> None:
    text = VALID.replace("full_name: {type: text}", "Full Name: {type: text}") + """\
  twenty:
    entities:
      companies: {object: companies, fields: {title: name.first.name}}
"""
    assert _problems(tmp_path, text) == [
        "10: entities.contacts.fields.Full Name: a name is lower-case letters, digits and underscores, "
        "starting with a letter",
        "28: stores.twenty.entities.companies.fields.title: a Twenty field (jobTitle, a custom field) or one "
        "composite sub-field (name.firstName)",
    ]
