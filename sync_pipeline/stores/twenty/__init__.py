"""Twenty CRM: the REST client (`client`) and the mapping to canonical records (`mapping`)."""
