"""The BigQuery resource: dagster-gcp's `BigQueryResource`, plus an emulator endpoint and the sync dataset."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Optional

import dagster as dg
from dagster_gcp import BigQueryResource
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from pydantic import Field, PrivateAttr

from sync_pipeline.hub.hub import Hub
from sync_pipeline.stores.base import StoreUnavailable
from sync_pipeline.stores.bigquery import BigQueryStore


class BigQueryStoreResource(BigQueryResource):
    """BigQuery for the sync: dagster-gcp's client unchanged, or an emulator's when `api_endpoint` is set.

    Environment variables the definitions read (through `dg.EnvVar`):
      - `BIGQUERY_PROJECT`: the GCP project (`project`).
      - `BIGQUERY_DATASET`: the dataset holding the sync's tables (`dataset`, default `crm_sync`).
      - `BIGQUERY_LOCATION`: the dataset location, e.g. `EU` (`location`, optional).
      - `BIGQUERY_EMULATOR_URL`: an emulator's REST base URL, e.g. `http://127.0.0.1:9050` (`api_endpoint`,
        optional); the client then uses anonymous credentials.
    Credentials: dagster-gcp's `gcp_credentials` (base64 service-account JSON) or Application Default
    Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, workload identity).
    """

    api_endpoint: Optional[str] = Field(
        default=None, description="REST endpoint of a BigQuery emulator; unset for real BigQuery."
    )
    dataset: str = Field(default="crm_sync", description="Dataset holding the sync's tables.")

    @contextmanager
    def get_client(self) -> Iterator[bigquery.Client]:
        if self.api_endpoint:
            yield bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.api_endpoint},
            )
        else:
            with super().get_client() as client:
                yield client

    # The client's context (dagster-gcp may write temporary credentials) stays open for the run.
    _contexts: ExitStack = PrivateAttr(default_factory=ExitStack)

    def get_object_to_set_on_execution_context(self) -> "BigQueryStoreResource":
        # dagster-gcp hands ops a client generator; the asset factory needs the resource itself.
        return self

    @property
    def configured(self) -> bool:
        return bool(self.project)

    @property
    def misconfiguration(self) -> str | None:
        if self.api_endpoint and not self.project:
            return "an emulator endpoint is set but no project (BIGQUERY_EMULATOR_URL, BIGQUERY_PROJECT)"
        return None

    # Whether BigQuery answered when this run first asked: an outage costs one probe per run, not every
    # step's retries (the client's default is ten minutes per call).
    _probed: bool = PrivateAttr(default=False)
    _unreachable: Optional[str] = PrivateAttr(default=None)

    def store(self, hub: Hub | None) -> BigQueryStore:
        """A `BigQueryStore` on this resource's client and dataset (BigQuery keeps canonical ids); raises
        `StoreUnavailable` for the rest of the run once BigQuery did not answer."""
        if self._unreachable:
            raise StoreUnavailable(self._unreachable)
        client = self._contexts.enter_context(self.get_client())
        self._contexts.callback(client.close)
        store = BigQueryStore(client, self.dataset, location=self.location)
        if not self._probed:
            self._probed = True
            self._unreachable = store.unreachable()
            if self._unreachable:
                raise StoreUnavailable(self._unreachable)
        return store

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._contexts.close()
