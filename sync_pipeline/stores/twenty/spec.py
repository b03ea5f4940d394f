"""Twenty CRM as the sync knows it."""

from sync_pipeline.stores.base import StoreSpec
from sync_pipeline.stores.twenty.errors import TwentyRateLimited
from sync_pipeline.stores.twenty.store import STORE_NAME, TwentyStore

# Twenty is the system of record for the sales team: it wins a tie on modification time. Publish batches
# are the sync's own (None); the client splits them into Twenty's batches of at most 60.
TWENTY = StoreSpec(key=STORE_NAME, label="Twenty CRM", kinds=frozenset({"twenty", "api"}),
                   store_class=TwentyStore, priority=1, rate_limited_errors=(TwentyRateLimited.__name__,))
