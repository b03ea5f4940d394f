"""The Twenty mapping follows the configuration: a custom field, and a Twenty that carries only some
fields, pure and through the stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipeline.config import SyncConfig, load_config, parse_config
from sync_pipeline.model.canonical import canonical_record
from sync_pipeline.sandbox.twenty.server import run_standin
from sync_pipeline.stores.twenty.client import TwentyClient
from sync_pipeline.stores.twenty.mapping import (
    MappingError,
    ObjectMapping,
    build_mapping,
    carries,
    object_mapping,
)

CONFIG = """\
entities:
  companies:
    natural_key: domain
    fields:
      title: {type: text, required: true}
      domain: {type: url}
  contacts:
    natural_key: email_address
    fields:
      given_name: {type: text, required: true}
      email_address: {type: email, required: true}
      mobile: {type: text}
      mobile_prefix: {type: text}
      lead_score: {type: numeric}
      role: {type: text}
      employer_id: {type: uuid, references: companies}
  deals:
    fields:
      label: {type: text, required: true}
      value: {type: numeric}
      phase: {type: enum, choices: [NEW, CUSTOMER]}
stores:
  twenty:
    entities:
      companies:
        object: companies
        fields: {title: name, domain: domainName.primaryLinkUrl}
      contacts:
        object: people
        fields:
          given_name: name.firstName
          email_address: emails.primaryEmail
          mobile: phones.primaryPhoneNumber
          mobile_prefix: phones.primaryPhoneCallingCode
          lead_score: leadScore
          employer_id: companyId
      deals:
        object: opportunities
        fields: {label: name, value: amount.amountMicros, phase: stage}
"""


def same_ids(entity_name: str, canonical_id: str) -> str:
    return canonical_id


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> SyncConfig:
    path = Path(tmp_path_factory.mktemp("config")) / "sync.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


def _mapping(config: SyncConfig, name: str) -> ObjectMapping:
    mapping = object_mapping(next(e for e in config.entities if e.name == name), config)
    spec = config.twenty_mapping(name)
    assert spec is not None and mapping == build_mapping(mapping.entity, spec)
    return mapping


def test_twenty_carries_what_the_configuration_gives_it(config: SyncConfig) -> None:
    assert [carries(e, config) for e in config.entities] == [True, True, True]
    without_deals = parse_config(CONFIG[:CONFIG.index("      deals:\n        object")])
    deals = without_deals.entities[2]
    assert not carries(deals, without_deals)
    with pytest.raises(KeyError, match="Twenty does not carry 'deals'"):
        object_mapping(deals, without_deals)


def test_only_configured_fields_are_read_and_written(config: SyncConfig) -> None:
    contacts = _mapping(config, "contacts")
    assert contacts.object == "people"
    assert contacts.columns() == ["given_name", "email_address", "mobile", "mobile_prefix", "lead_score",
                                  "employer_id"]  # `role` is not carried by Twenty
    company = str(uuid.uuid4())
    payload = contacts.to_twenty(
        {"given_name": "Ada", "email_address": "ada@example.com", "mobile": "612345678",
         "mobile_prefix": "+33", "lead_score": "42.5", "role": "CTO", "employer_id": company}, same_ids)
    assert payload == {
        "name": {"firstName": "Ada"},  # lastName is not carried: Twenty keeps its own
        "emails": {"primaryEmail": "ada@example.com"},
        "phones": {"primaryPhoneNumber": "612345678", "primaryPhoneCallingCode": "+33"},
        "leadScore": 42.5,
        "companyId": company,
    }
    twenty_person = {"id": "p1", "name": {"firstName": "Ada", "lastName": "Lovelace"}, "jobTitle": "CTO",
                     "emails": {"primaryEmail": "ada@example.com"}, "leadScore": 7, "companyId": None,
                     "phones": {"primaryPhoneNumber": "612345678", "primaryPhoneCallingCode": "+33"}}
    assert contacts.to_canonical(twenty_person) == {
        "id": "p1", "given_name": "Ada", "email_address": "ada@example.com", "mobile": "612345678",
        "mobile_prefix": "+33", "lead_score": 7, "employer_id": None}


def test_a_currency_amount_alone_and_a_custom_number_refuse_what_they_cannot_hold(config: SyncConfig) -> None:
    deals = _mapping(config, "deals")
    assert deals.to_twenty({"value": "12500.5", "phase": None}, same_ids) == {
        "amount": {"amountMicros": 12500500000}}  # the currency code is not carried; a null stage is left out
    assert deals.to_canonical({"id": "d", "amount": {"amountMicros": 1, "currencyCode": "EUR"}}) == {
        "id": "d", "label": None, "value": "0.000001", "phase": None}
    with pytest.raises(MappingError, match="finer than the micros"):
        deals.to_twenty({"value": "0.0000001"}, same_ids)
    too_fine = "0.1000000000000000000001"
    with pytest.raises(MappingError, match=f"lead_score: {too_fine} has no exact representation"):
        _mapping(config, "contacts").to_twenty({"lead_score": too_fine}, same_ids)


@pytest.fixture(scope="module")
def twenty() -> Iterator[TwentyClient]:
    with run_standin(rate_limit_per_minute=100_000, rate_limit_per_second=10_000) as server:
        with TwentyClient(server.base_url, server.api_key, requests_per_minute=60_000) as client:
            yield client


def test_a_custom_field_and_a_partial_mapping_through_the_standin(config: SyncConfig,
                                                                  twenty: TwentyClient) -> None:
    companies, contacts = _mapping(config, "companies"), _mapping(config, "contacts")
    contacts_entity = contacts.entity
    tag = uuid.uuid4().hex[:8]
    company = {"id": str(uuid.uuid4()), "title": f"Acme {tag}", "domain": f"https://acme-{tag}.com"}
    twenty.create("companies", companies.to_twenty(company, same_ids), upsert=True)
    person = {"id": str(uuid.uuid4()), "given_name": "Ada", "email_address": f"ada.{tag}@example.com",
              "mobile": "2079460000", "mobile_prefix": "+44", "lead_score": "42.5", "role": "CTO",
              "employer_id": company["id"]}
    stored = twenty.create("people", contacts.to_twenty(person, same_ids), upsert=True)
    assert stored["leadScore"] == 42.5 and stored["jobTitle"] is None  # `role` never reaches Twenty

    # A field Twenty does not carry is left alone: someone's job title in Twenty survives our update.
    twenty.update("people", stored["id"], {"jobTitle": "Countess", "name": {"lastName": "Lovelace"}})
    twenty.update("people", stored["id"], contacts.to_twenty({"lead_score": "50", "given_name": "Augusta"},
                                                             same_ids))
    fetched = twenty.get("people", stored["id"])
    assert fetched["jobTitle"] == "Countess"
    assert fetched["name"] == {"firstName": "Augusta", "lastName": "Lovelace"}
    read = canonical_record(contacts_entity, contacts.to_canonical(fetched))
    assert read == {"given_name": "Augusta", "email_address": f"ada.{tag}@example.com",
                    "mobile": "2079460000", "mobile_prefix": "+44", "lead_score": "50", "role": None,
                    "employer_id": company["id"]}
