"""The fault suite (issue 14): each test breaks the sync one way and ends by comparing all four stores with
the hub's golden records (`helpers.assert_stores_match_hub`)."""
