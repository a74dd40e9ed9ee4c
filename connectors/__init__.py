"""Pure connectors to external systems (event buses, landing store, payout, CRM, documents): no Dagster here."""
