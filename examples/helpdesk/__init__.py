"""A helpdesk's schema (polymorphic threads and attachments, a legal-hold table)."""
