"""CRM adapters and caller lookup: the adapter contract, phone number normalisation,
the built-in CRM, Odoo, Bitrix24 and HTTP/JSON adapters, and the lookup service (cache,
single flight, time budget, circuit breakers). May import bridge.call_log (the database).
"""
