"""Provider webhooks: events stored once and processed in one transaction (``events``), routed by (provider, event
type) (``routes``) to the handlers of each provider (``stripe_handlers``, ``creem_handlers``)."""
