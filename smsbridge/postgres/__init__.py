"""The store on PostgreSQL, for several bridges on one database (SMSBRIDGE_DATABASE=
`postgresql://...`): `store` (PgStore, the same API as smsbridge/store.py), `connection` (what a
job sees), `schema` (the PostgreSQL twin of each migration), `url` (a URL shown without its
password). Importing this package imports nothing: psycopg is loaded by `connection` and `store`
only, when a PostgreSQL URL is opened."""
