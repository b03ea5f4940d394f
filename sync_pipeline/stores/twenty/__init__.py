"""Twenty CRM: its errors (`errors`), the paced, retrying HTTP transport (`transport`), the REST client
(`client`), the mapping to canonical records (`mapping`), the store (`store`) and its spec (`spec`)."""
